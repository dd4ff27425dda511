"""PNG plots for `make bench` (matplotlib, installed into .cache/venv by bench/run.py)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import benchlib as bl  # noqa: E402


def plots(r: dict, out: Path, labels: dict[str, str], fio_devices: list[str],
          workload_names: dict[str, str]) -> list[Path]:
    made = []
    date = r.get("meta", {}).get("date", "")
    all_runs = r.get("pgbench") or []
    workloads = list(dict.fromkeys(x.get("workload", "tpcb") for x in all_runs))
    if all_runs:
        profiles = list(dict.fromkeys(x["profile"] for x in all_runs))
        fig, axes = plt.subplots(len(workloads), len(profiles),
                                 figsize=(max(8.0, 5.2 * len(profiles)), 3.8 * len(workloads)), squeeze=False)
        for row, wl in zip(axes, workloads):
            runs = [x for x in all_runs if x.get("workload", "tpcb") == wl]
            summ = bl.pgbench_summary(runs)
            clients = sorted({int(x["clients"]) for x in runs})
            e_prof = next((x["profile"] for x in runs if x["config"] == "e"), profiles[0])
            for ax, prof in zip(row, profiles):
                for c, label in labels.items():
                    p = e_prof if c == "e" else prof
                    ys = [summ.get((p, c, n), float("nan")) for n in clients]
                    if all(y != y for y in ys):
                        continue
                    ax.plot(clients, ys, marker="o", label=f"({c}) {label}")
                ax.set_xscale("log", base=2)
                ax.set_xticks(clients, [str(n) for n in clients])
                ax.set_yscale("log")
                ax.set_xlabel("pgbench clients")
                ax.set_ylabel("TPS (median)")
                ax.set_title(f"{workload_names.get(wl, wl)}; WAL disk {prof}", fontsize=9)
                ax.grid(True, which="both", alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"PostgreSQL pgbench, QEMU TCG ({date}): ratios matter, not absolute numbers", fontsize=9)
        fig.tight_layout()
        p = out / "tps_vs_clients.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        made.append(p)
    fio = r.get("fio") or {}
    if fio:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for dev in fio_devices:
            d = fio.get(dev, {}).get("qd1")
            if not d or not d.get("sync_lat"):
                continue
            pts = sorted((float(k), v) for k, v in d["sync_lat"].items())
            w = {float(k): v for k, v in d["write_lat"].items()}
            ax.plot([v + w.get(k, 0.0) for k, v in pts], [k for k, _ in pts], marker=".", label=dev)
        ax.set_xscale("log")
        ax.set_xlabel("4 KiB write + fsync latency, µs (write + fsync percentile)")
        ax.set_ylabel("percentile")
        ax.set_title(f"fio QD1 write+fsync latency CDF, QEMU TCG ({date})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / "fsync_cdf.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        made.append(p)
    return made
