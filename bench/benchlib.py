"""Parsers, statistics and tables for `make bench` (Python stdlib only).

Everything here is pure: it turns the text the guest printed (fio JSON,
pgbench and pg_test_fsync output, /sys/block/*/stat lines) into numbers and
the numbers into tables and CSV rows. bench/run.py drives the guest;
tests/host/test_bench.py tests this module without QEMU.
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import dataclass, field

# Percentiles fio reports (at most 20; enough points for a latency CDF).
FIO_PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9)
FIO_PERCENTILE_ARG = ":".join(f"{p:g}" for p in FIO_PERCENTILES)


# --- fio ----------------------------------------------------------------------------------
@dataclass
class FioResult:
    """One fio job: write IOPS and latency percentiles in microseconds.

    write_lat: total latency of the writes (submission + completion: fio
    --lat_percentiles=1); sync_lat: latency of the fsync/fdatasync calls
    (empty when the job issued none)."""
    name: str
    iops: float
    ios: int
    write_lat: dict[float, float]
    sync_lat: dict[float, float] = field(default_factory=dict)
    sync_ios: int = 0

    def commit_lat(self, pct: float) -> float:
        """Latency of one write + its sync at this percentile: the sum of the
        two phases' percentiles (exact for a constant phase, an upper bound
        for the tail otherwise)."""
        return self.write_lat.get(pct, float("nan")) + self.sync_lat.get(pct, 0.0)


def _fio_json_text(text: str) -> str:
    """fio may print warnings before the JSON document; keep from the first '{'."""
    i = text.find("{")
    if i < 0:
        raise ValueError("no JSON object in fio output: " + text[:200])
    return text[i:]


def _percentiles_us(lat: dict) -> dict[float, float]:
    pct = lat.get("percentile") or {}
    return {float(k): v / 1000.0 for k, v in pct.items()}


def parse_fio_json(text: str) -> list[FioResult]:
    """All jobs of a fio --output-format=json run (one per job, in order)."""
    doc = json.loads(_fio_json_text(text))
    out = []
    for job in doc["jobs"]:
        w = job["write"]
        lat = w.get("lat_ns") or {}
        if not lat.get("percentile"):
            lat = w.get("clat_ns") or {}
        s = job.get("sync") or {}
        slat = s.get("lat_ns") or {}
        out.append(FioResult(
            name=job["jobname"], iops=float(w["iops"]), ios=int(w.get("total_ios", 0)),
            write_lat=_percentiles_us(lat), sync_lat=_percentiles_us(slat),
            sync_ios=int(s.get("total_ios") or slat.get("N") or 0)))
    return out


# --- pgbench and pg_test_fsync -------------------------------------------------------------
@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    latency_ms: float | None
    failed: int = 0


def parse_pgbench(text: str) -> PgbenchResult:
    """pgbench's summary: tps (without initial connection time), number of
    transactions processed, average latency."""
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    if not m:  # older pgbench: "tps = X (excluding connections establishing)"
        m = re.search(r"^tps = ([0-9.]+) \(excluding", text, re.M)
    if not m:
        raise ValueError("no tps line in pgbench output:\n" + text[-1000:])
    n = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    return PgbenchResult(tps=float(m.group(1)), transactions=int(n.group(1)) if n else 0,
                         latency_ms=float(lat.group(1)) if lat else None,
                         failed=int(failed.group(1)) if failed else 0)


def parse_pg_test_fsync(text: str) -> dict[str, tuple[float, float]]:
    """Methods of pg_test_fsync's "one 8kB write" section:
    {method: (ops/sec, usecs/op)}. Methods the platform lacks ("n/a") are
    left out."""
    sec = re.search(r"Compare file sync methods using one 8kB write:(.*?)(?:\n\s*\n\S|\Z)", text, re.S)
    if not sec:
        raise ValueError("no 'one 8kB write' section in pg_test_fsync output:\n" + text[:1000])
    out = {}
    for m in re.finditer(r"^\s+(\S+)(?: \*)?\s+([0-9.]+) ops/sec\s+([0-9.]+) usecs/op", sec.group(1), re.M):
        out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    if not out:
        raise ValueError("no method results in pg_test_fsync's 8kB section:\n" + sec.group(1))
    return out


# --- /sys/block/*/stat ---------------------------------------------------------------------
@dataclass
class DiskStat:
    writes: int  # write requests completed
    sectors: int  # 512-byte sectors written
    flushes: int  # flush requests completed (0 on kernels without the field)


def parse_diskstat(line: str) -> DiskStat:
    """One /sys/block/NAME/stat line (Documentation/block/stat.rst: field
    5 write I/Os, 7 sectors written, 16 flush requests)."""
    f = [int(x) for x in line.split()]
    if len(f) < 11:
        raise ValueError(f"short /sys/block stat line: {line!r}")
    return DiskStat(writes=f[4], sectors=f[6], flushes=f[15] if len(f) >= 16 else 0)


def diskstat_delta(before: DiskStat, after: DiskStat) -> DiskStat:
    return DiskStat(after.writes - before.writes, after.sectors - before.sectors,
                    after.flushes - before.flushes)


def writeback_efficiency(delta: DiskStat, transactions: int) -> dict[str, float]:
    """Disk writes per committed transaction and average write size (KiB)."""
    return {
        "writes_per_txn": delta.writes / transactions if transactions else float("nan"),
        "avg_write_kib": delta.sectors * 512 / 1024 / delta.writes if delta.writes else float("nan"),
        "kib_per_txn": delta.sectors * 512 / 1024 / transactions if transactions else float("nan"),
        "flushes_per_txn": delta.flushes / transactions if transactions else float("nan"),
    }


# --- disk image ------------------------------------------------------------------------------
def mbr(partitions: list[tuple[int, int]]) -> bytes:
    """A 512-byte MBR with primary Linux partitions [(start LBA, sectors)]
    (the log disk is cut on the host: the rootfs has no sfdisk)."""
    if len(partitions) > 4:
        raise ValueError("an MBR holds 4 primary partitions")
    sec = bytearray(512)
    for i, (start, count) in enumerate(partitions):
        e = 446 + 16 * i
        # No CHS addressing: 0xfe/0xff/0xff, as partitioners write beyond 8 GiB.
        sec[e:e + 16] = (bytes([0, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF]) +
                         start.to_bytes(4, "little") + count.to_bytes(4, "little"))
    sec[510:512] = b"\x55\xaa"
    return bytes(sec)


# --- statistics and tables -------------------------------------------------------------------
def median(xs) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def fmt(x: float, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, '-' for missing."""
    if x is None or x != x:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits - 1}g}"


def fmt_ratio(x: float) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table; text columns left-aligned, numbers right."""
    cells = [header] + rows
    w = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    num = [i > 0 and all(re.match(r"^[-0-9.,]+x?$", str(r[i])) for r in rows) for i in range(len(header))]
    def line(r):
        return "| " + " | ".join(str(c).rjust(w[i]) if num[i] else str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join(("-" * (w[i] + 1) + ":") if num[i] else ("-" * (w[i] + 2)) for i in range(len(header))) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    for r in rows:
        wr.writerow(["" if (isinstance(x, float) and x != x) else x for x in r])
    return buf.getvalue()


def fio_table(results: dict[str, dict[str, FioResult]], devices: list[str], ref: str = "brd") -> tuple[str, list[list]]:
    """results[device]["qd1"|"qd32"] -> (markdown table, CSV rows).

    QD1: write+fsync latency (sum of the phases' percentiles, see
    FioResult.commit_lat) and commits/s. QD32: write latency and IOPS.
    Ratios are to `ref` (latency: device/ref, so >1 is slower; IOPS:
    device/ref)."""
    header = ["device", "QD1 p50 µs", "QD1 p99 µs", "QD1 IOPS", "QD1 p50 / brd", "QD1 IOPS / brd",
              "QD32 p50 µs", "QD32 p99 µs", "QD32 IOPS", "QD32 p50 / brd", "QD32 IOPS / brd"]
    rows, csv_rows = [], []
    r = results.get(ref, {})
    for dev in devices:
        if dev not in results:
            continue
        d = results[dev]
        cells, raw = [dev], [dev]
        for qd in ("qd1", "qd32"):
            x, b = d.get(qd), r.get(qd)
            if x is None:
                cells += ["-"] * 5
                raw += [float("nan")] * 5
                continue
            lat = x.commit_lat if qd == "qd1" else (lambda p, x=x: x.write_lat.get(p, float("nan")))
            blat = (b.commit_lat if qd == "qd1" else (lambda p, b=b: b.write_lat.get(p, float("nan")))) if b else None
            p50, p99 = lat(50.0), lat(99.0)
            r50 = ratio(p50, blat(50.0)) if blat else float("nan")
            riops = ratio(x.iops, b.iops) if b else float("nan")
            cells += [fmt(p50), fmt(p99), fmt(x.iops), fmt_ratio(r50), fmt_ratio(riops)]
            raw += [p50, p99, x.iops, r50, riops]
        rows.append(cells)
        csv_rows.append(raw)
    return markdown_table(header, rows), [header] + csv_rows


def pgbench_summary(runs: list[dict]) -> dict[tuple[str, str, int], float]:
    """Median TPS per (profile, config, clients) over repetitions.
    runs: dicts with keys profile, config, clients, tps."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r["profile"], r["config"], int(r["clients"])), []).append(float(r["tps"]))
    return {k: median(v) for k, v in groups.items()}


def pgbench_table(summary: dict[tuple[str, str, int], float], profile: str, configs: list[str],
                  clients: list[int], sync: str = "a", async_: str = "b",
                  shared: dict[str, str] | None = None) -> tuple[str, list[list]]:
    """TPS per client count for each configuration, with the ratios of every
    other configuration to `sync` (a) and to `async_` (b).
    shared: {config: profile} for configurations measured once for every
    profile (brd does not depend on the disk)."""
    shared = shared or {}
    def tps(c, n):
        return summary.get((shared.get(c, profile), c, n), float("nan"))
    others = [c for c in configs if c not in (sync, async_)]
    header = ["clients"] + [f"({c}) TPS" for c in configs] + \
        [f"{c}/{sync}" for c in others] + [f"{c}/{async_}" for c in others]
    rows, csv_rows = [], []
    for n in clients:
        vals = [tps(c, n) for c in configs]
        ra = [ratio(tps(c, n), tps(sync, n)) for c in others]
        rb = [ratio(tps(c, n), tps(async_, n)) for c in others]
        rows.append([str(n)] + [fmt(v) for v in vals] + [fmt_ratio(x) for x in ra + rb])
        csv_rows.append([profile, n] + vals + ra + rb)
    return markdown_table(header, rows), [["profile"] + header] + csv_rows


def spread(xs) -> dict[str, float]:
    """min, median, max of repetitions and their spread: the largest
    distance of one repetition from the median, relative to it (0.08 means
    every repetition is within +-8 % of the median)."""
    xs = sorted(float(x) for x in xs if x == x)
    if not xs:
        nan = float("nan")
        return {"n": 0, "min": nan, "median": nan, "max": nan, "spread": nan}
    med = median(xs)
    return {"n": len(xs), "min": xs[0], "median": med, "max": xs[-1],
            "spread": max(abs(xs[0] - med), abs(xs[-1] - med)) / med if med else float("nan")}


def rank_summary(runs: list[dict]) -> dict[tuple[str, int], dict[str, float]]:
    """spread() of the TPS per (config, clients) over repetitions.
    runs: dicts with keys config, clients, tps."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r["config"], int(r["clients"])), []).append(float(r["tps"]))
    return {k: spread(v) for k, v in groups.items()}


def rank_table(summary: dict[tuple[str, int], dict[str, float]], configs: list[str], clients: list[int],
               subject: str, refs: list[str]) -> tuple[str, list[list]]:
    """Per client count: each configuration's median TPS with its min-max
    and spread, then subject/ref for each ref (ratio of the medians)."""
    header = ["clients"] + [f"({c}) TPS median [min-max] +-%" for c in configs] + \
        [f"{subject}/{r}" for r in refs]
    csv_header = ["clients"] + [f"({c}) {k}" for c in configs for k in ("min", "median", "max", "spread")] + \
        [f"{subject}/{r}" for r in refs]
    rows, csv_rows = [], []
    nan = {"n": 0, "min": float("nan"), "median": float("nan"), "max": float("nan"), "spread": float("nan")}
    for n in clients:
        cells, raw = [str(n)], [n]
        for c in configs:
            s = summary.get((c, n), nan)
            cells.append(f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}] "
                         f"{fmt(100 * s['spread'], 2)}%")
            raw += [s["min"], s["median"], s["max"], s["spread"]]
        rs = [ratio(summary.get((subject, n), nan)["median"], summary.get((r, n), nan)["median"]) for r in refs]
        cells += [fmt_ratio(x) for x in rs]
        raw += rs
        rows.append(cells)
        csv_rows.append(raw)
    return markdown_table(header, rows), [csv_header] + csv_rows


def rank_verdict(summary: dict[tuple[str, int], dict[str, float]], clients: list[int], subject: str,
                 targets: dict[str, float], labels: dict[str, str], tolerance: float = 0.10) -> list[str]:
    """Lines that say whether the table ranks (every configuration's
    repetitions within +-tolerance of their median) and whether the subject
    meets each target ratio (subject/ref >= target) at every client count."""
    points = sorted(summary)
    wide = [(c, n, s["spread"]) for (c, n), s in summary.items() if not s["spread"] <= tolerance]
    reps = sorted({s["n"] for s in summary.values()})
    lines = [f"Repetitions ({'/'.join(map(str, reps))} per point) within +-{100 * tolerance:.0f} % of their median: "
             f"{len(points) - len(wide)} of {len(points)} points"
             + ("" if not wide else "; wider: " + ", ".join(
                 f"({c}) {n} clients +-{fmt(100 * sp, 2)} %" for c, n, sp in sorted(wide)))
             + (": the table ranks." if not wide else ": those points do not rank.")]
    for ref, target in targets.items():
        rs = [(n, ratio(summary.get((subject, n), {}).get("median", float("nan")),
                        summary.get((ref, n), {}).get("median", float("nan")))) for n in clients]
        worst = min(rs, key=lambda x: x[1] if x[1] == x[1] else -1.0)
        met = all(x == x and x >= target for _, x in rs)
        lines.append(f"{labels.get(subject, subject)} / {labels.get(ref, ref)}: "
                     + ", ".join(f"{n}: {fmt_ratio(x)}" for n, x in rs)
                     + f" (target >= {target:.2f}x at every client count: "
                     + ("met" if met else f"not met, lowest {fmt_ratio(worst[1])} at {worst[0]} clients") + ")")
    return lines


def rank_paired(runs: list[dict], subject: str, refs: list[str]) -> dict[tuple[str, int], dict[str, float]]:
    """spread() over rounds of subject/ref TPS per (ref, clients), each
    ratio taken within one round (key `rep`): a round runs every
    configuration at a client count back to back, so a drift of the host's
    load that slows the whole round cancels in its ratios."""
    tps = {(r["config"], int(r["clients"]), r.get("rep")): float(r["tps"]) for r in runs}
    out: dict[tuple[str, int], list[float]] = {}
    for (config, n, rep), t in tps.items():
        if config != subject:
            continue
        for ref in refs:
            if (ref, n, rep) in tps:
                out.setdefault((ref, n), []).append(ratio(t, tps[(ref, n, rep)]))
    return {k: spread(v) for k, v in out.items()}


def rank_paired_lines(paired: dict[tuple[str, int], dict[str, float]], clients: list[int], subject: str,
                      refs: list[str], labels: dict[str, str], tolerance: float = 0.10) -> list[str]:
    """One line per ref: the per-round ratios' median [min-max] per client
    count, and whether every point's ratios are within +-tolerance."""
    lines = []
    for ref in refs:
        pts = [(n, paired[(ref, n)]) for n in clients if (ref, n) in paired]
        if not pts:
            continue
        wide = [n for n, s in pts if not s["spread"] <= tolerance]
        lines.append(f"{labels.get(subject, subject)} / {labels.get(ref, ref)} within each round, median [min-max]: "
                     + ", ".join(f"{n}: {fmt_ratio(s['median'])} [{fmt_ratio(s['min'])}-{fmt_ratio(s['max'])}]"
                                 for n, s in pts)
                     + (f" (every point's ratios within +-{100 * tolerance:.0f} % of their median)" if not wide else
                        f" (wider than +-{100 * tolerance:.0f} % at " + ", ".join(map(str, wide)) + " clients)"))
    return lines


def parse_proc_stat_cpu(text: str) -> tuple[int, int]:
    """(busy, idle) jiffies of /proc/stat's first "cpu" line; idle counts
    idle and iowait."""
    m = re.search(r"^cpu\s+(.*)$", text, re.M)
    if not m:
        raise ValueError("no cpu line in /proc/stat:\n" + text[:500])
    f = [int(x) for x in m.group(1).split()]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f[:8]) - idle, idle


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy share of the CPU between two parse_proc_stat_cpu() readings."""
    busy, idle = after[0] - before[0], after[1] - before[1]
    return busy / (busy + idle) if busy + idle > 0 else float("nan")


def icount_pg_table(runs: list[dict], devices: list[str], refs: tuple[str, ...] = ("brd", "dm-writecache")
                    ) -> tuple[str, list[list]]:
    """Per device: guest ns per transaction under -icount (pgbench's mean
    latency), the busy share of the guest's CPU over the run, and busy ns
    per transaction (= guest instructions executed per transaction), also
    counting the drain of the cache after the run, as the median of the
    runs, with ratios to each ref."""
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["device"], []).append(r)
    keys = ("ns_per_tx", "busy", "insns_per_tx", "insns_per_tx_with_writeback")
    med = {d: {k: median([float(x.get(k, float("nan"))) for x in xs]) for k in keys} for d, xs in by.items()}
    header = ["device", "runs", "guest ns per transaction", "busy %", "instructions per transaction"] + \
        [f"/ {r}" for r in refs] + ["with writeback"] + [f"/ {r}" for r in refs]
    rows, csv_rows = [], []
    for d in devices:
        if d not in med:
            continue
        m = med[d]
        rs = [ratio(m["insns_per_tx"], med[r]["insns_per_tx"]) if r in med else float("nan") for r in refs]
        ws = [ratio(m["insns_per_tx_with_writeback"], med[r]["insns_per_tx_with_writeback"]) if r in med
              else float("nan") for r in refs]
        rows.append([d, str(len(by[d])), fmt(m["ns_per_tx"]), fmt(100 * m["busy"], 3), fmt(m["insns_per_tx"])]
                    + [fmt_ratio(x) for x in rs] + [fmt(m["insns_per_tx_with_writeback"])]
                    + [fmt_ratio(x) for x in ws])
        csv_rows.append([d, len(by[d]), m["ns_per_tx"], m["busy"], m["insns_per_tx"]] + rs
                        + [m["insns_per_tx_with_writeback"]] + ws)
    return markdown_table(header, rows), [header] + csv_rows


def fsync_table(results: dict[tuple[str, str], dict[str, tuple[float, float]]], order: list[tuple[str, str]],
                ref: tuple[str, str], method: str = "fdatasync") -> tuple[str, list[list]]:
    """pg_test_fsync's `method` (8 kB write + fdatasync) per (profile, device),
    latency ratio to `ref` (brd)."""
    header = ["profile", "device", f"{method} ops/s", "µs/op", "latency / brd"]
    base = results.get(ref, {}).get(method)
    rows, csv_rows = [], []
    for key in order:
        m = results.get(key, {}).get(method)
        if not m:
            continue
        r = ratio(m[1], base[1]) if base else float("nan")
        rows.append([key[0], key[1], fmt(m[0]), fmt(m[1]), fmt_ratio(r)])
        csv_rows.append([key[0], key[1], m[0], m[1], r])
    return markdown_table(header, rows), [header] + csv_rows


# --- instruction cost (QEMU -icount shift=0,sleep=off) ------------------------------------
# Under `-icount shift=0` the guest's clock advances by one nanosecond per
# executed guest instruction (and, with sleep=off, jumps straight to the next
# timer when every vCPU is idle). fio's latencies are read from that clock, so
# a mean latency in ns is a mean number of guest instructions.
@dataclass
class IcountJob:
    """One fio job run under -icount: means in ns of the icount clock
    (= guest instructions).

    write_ns: mean latency of the writes (fio's `lat_ns`: from fio's start
    stamp of the I/O to its completion; for psync the pwrite() call plus a
    few hundred instructions of fio's own preparation, clock reads included);
    write_clat_ns: fio's `clat_ns` mean (the pwrite() call alone; psync has
    no submission latency, slat N=0);
    sync_ns: mean latency of the fsync() calls (0 without any);
    write_min_ns, sync_min_ns: the smallest of each (the steady path)."""
    name: str
    bs: int
    writes: int
    syncs: int
    write_ns: float
    sync_ns: float
    write_min_ns: float = float("nan")
    sync_min_ns: float = float("nan")
    write_clat_ns: float = float("nan")

    @property
    def per_write_ns(self) -> float:
        """Instructions per write + fsync: the two phases' means added (each
        write is followed by one fsync, fio --fsync=1)."""
        return self.write_ns + (self.sync_ns if self.syncs else 0.0)


def parse_fio_icount(text: str) -> list[IcountJob]:
    """Mean latencies of each job of a fio --output-format=json run (for the
    -icount section); the block size is io_bytes / total_ios."""
    doc = json.loads(_fio_json_text(text))
    out = []
    for job in doc["jobs"]:
        w = job["write"]
        lat = w.get("lat_ns") or {}
        if not lat.get("N"):
            lat = w.get("clat_ns") or {}
        s = (job.get("sync") or {}).get("lat_ns") or {}
        ios = int(w.get("total_ios") or lat.get("N") or 0)
        if not ios:
            raise ValueError(f"fio job {job.get('jobname')!r} did no write")
        out.append(IcountJob(
            name=job["jobname"], bs=int(w.get("io_bytes", 0)) // ios, writes=ios,
            syncs=int((job.get("sync") or {}).get("total_ios") or s.get("N") or 0),
            write_ns=float(lat.get("mean", float("nan"))), sync_ns=float(s.get("mean", 0.0)),
            write_min_ns=float(lat.get("min", float("nan"))), sync_min_ns=float(s.get("min", float("nan"))),
            write_clat_ns=float((w.get("clat_ns") or {}).get("mean", float("nan")))))
    return out


def _mean(xs) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def icount_table(runs: list[dict], devices: list[str], jobs: list[tuple[str, str]],
                 refs: tuple[str, ...] = ("brd", "dm-writecache")) -> tuple[str, list[list]]:
    """Instructions per write + fsync, one row per (device, job).

    runs: dicts with device, job, rep (1, 2, ...), write_ns, sync_ns (as
    IcountJob); jobs: [(job name, label)]. Columns: the write and the fsync
    (means over the repetitions), write + fsync of each repetition (the
    determinism check), and the ratio of the repetitions' mean to each
    reference device's for the same job; last, clat + fsync: the write's
    clat (the pwrite() call alone, without fio's own preparation that lat
    includes) plus the fsync, mean over the repetitions."""
    reps = sorted({int(r["rep"]) for r in runs}) or [1]
    def sel(dev, job):
        return [r for r in runs if r["device"] == dev and r["job"] == job]
    def total(r):
        return float(r["write_ns"]) + float(r["sync_ns"])
    header = (["device", "job", "write", "fsync"] + [f"write+fsync run {i}" for i in reps] +
              [f"/ {ref}" for ref in refs] + ["clat+fsync"])
    rows, csv_rows = [], []
    for job, label in jobs:
        ref_mean = {ref: _mean(total(r) for r in sel(ref, job)) for ref in refs}
        for dev in devices:
            rs = sel(dev, job)
            if not rs:
                continue
            w, s = _mean(float(r["write_ns"]) for r in rs), _mean(float(r["sync_ns"]) for r in rs)
            per_rep = [_mean(total(r) for r in rs if int(r["rep"]) == i) for i in reps]
            m = _mean(total(r) for r in rs)
            rat = [ratio(m, ref_mean[ref]) for ref in refs]
            clat = _mean(float(r.get("write_clat_ns", float("nan"))) + float(r["sync_ns"]) for r in rs)
            rows.append([dev, label, fmt_int(w), fmt_int(s)] + [fmt_int(x) for x in per_rep] +
                        [fmt_ratio(x) for x in rat] + [fmt_int(clat)])
            csv_rows.append([dev, label, w, s] + per_rep + rat + [clat])
    return markdown_table(header, rows), [header] + csv_rows


def fmt_int(x: float) -> str:
    """A count (instructions): rounded, thousands separated; '-' for missing."""
    return "-" if x is None or x != x else f"{x:,.0f}"


def icount_spread(runs: list[dict]) -> float:
    """Largest relative difference between repetitions of one (device, job)
    in write + fsync instructions (0 when deterministic)."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["device"], r["job"]), []).append(float(r["write_ns"]) + float(r["sync_ns"]))
    worst = 0.0
    for xs in groups.values():
        if len(xs) > 1 and min(xs) > 0:
            worst = max(worst, (max(xs) - min(xs)) / min(xs))
    return worst


# --- queue-depth scaling -------------------------------------------------------------------
def scaling_ratios(fio: dict[str, dict], devices: list[str]) -> dict[str, float]:
    """QD32 IOPS / QD1 IOPS per device, from fio results
    {device: {"qd1": FioResult or dict, "qd32": ...}} (devices missing either
    job are left out)."""
    def iops(x):
        return float(x["iops"] if isinstance(x, dict) else x.iops)
    out = {}
    for dev in devices:
        d = fio.get(dev) or {}
        if d.get("qd1") is not None and d.get("qd32") is not None:
            out[dev] = ratio(iops(d["qd32"]), iops(d["qd1"]))
    return out


def scaling_rounds(rounds: list[dict[str, dict]], devices: list[str]) -> dict[str, dict[str, float]]:
    """scaling_ratios() of each round of fio jobs, summarised per device by
    spread() (min, median, max of the rounds' ratios)."""
    per = [scaling_ratios(r, devices) for r in rounds]
    return {dev: spread([p[dev] for p in per if dev in p]) for dev in devices if any(dev in p for p in per)}


def median_round(rounds: list[dict[str, dict]], dev: str, job: str = "qd1") -> dict | None:
    """The device's results of the round whose `job` IOPS is the median (the
    lower middle one for an even count): the round the fio table shows."""
    have = [r[dev] for r in rounds if (r.get(dev) or {}).get(job) is not None]
    if not have:
        return None
    def iops(x):
        return float(x[job]["iops"] if isinstance(x[job], dict) else x[job].iops)
    return sorted(have, key=iops)[(len(have) - 1) // 2]


def scaling_line(ratios: dict[str, float | dict], subject: str = "rapilog window",
                 refs: tuple[str, ...] = ("dm-writecache", "brd")) -> str:
    """One line: each device's QD32/QD1 IOPS ratio, and the subject's ratio
    relative to each reference's. A ratio given as a spread() (several
    rounds) shows its median and range, and the relative ratios use the
    medians."""
    def med(x):
        return x["median"] if isinstance(x, dict) else x
    def show(x):
        if not isinstance(x, dict) or x.get("n", 1) < 2:
            return fmt_ratio(med(x))
        return f"{fmt_ratio(x['median'])} [{fmt_ratio(x['min'])}-{fmt_ratio(x['max'])}]"
    rounds = max((x.get("n", 1) for x in ratios.values() if isinstance(x, dict)), default=1)
    parts = ", ".join(f"{dev} {show(x)}" for dev, x in ratios.items())
    rel = "; ".join(f"{subject} / {ref}: {fmt(ratio(med(ratios.get(subject, float('nan'))), med(ratios[ref])))}"
                    for ref in refs if ref in ratios)
    how = "same boot" if rounds < 2 else f"same boot, median [min-max] of {rounds} rounds"
    return (f"QD32/QD1 IOPS scaling (emulated: QEMU TCG wall clock, {how}): {parts}"
            + (f"; {rel}" if rel else "") + ".")


# --- drain bandwidth ----------------------------------------------------------------------------
def fio_write_bw(text: str) -> float:
    """Write bandwidth of the first job of a fio JSON run, bytes/s."""
    doc = json.loads(_fio_json_text(text))
    w = doc["jobs"][0]["write"]
    if "bw_bytes" in w:
        return float(w["bw_bytes"])
    return float(w["bw"]) * 1024  # older fio: KiB/s


def json_doc(text: str) -> dict:
    """The JSON document in a command's output (from the first '{')."""
    i = text.find("{")
    if i < 0:
        raise ValueError("no JSON document in: " + text[:300])
    return json.loads(text[i:])


def drain_summary(raw_bw: dict[int, float], flush: dict, wall_s: float | None = None) -> dict:
    """The drain-bandwidth comparison.

    raw_bw: {queue depth: bytes/s} of fio's sequential 1 MiB writes on the
    raw partition; flush: `rapilogctl flush --json` (rapilogctl.flush:
    written_back_bytes, duration_us, dirty_before); wall_s: the flush
    command's own wall time (process start and exit included)."""
    best_qd = max(raw_bw, key=lambda q: raw_bw[q]) if raw_bw else None
    best = raw_bw[best_qd] if best_qd is not None else float("nan")
    b, us = float(flush.get("written_back_bytes") or 0), float(flush.get("duration_us") or 0)
    drain = b / (us / 1e6) if us else float("nan")
    return {"raw_best_qd": best_qd, "raw_best_bytes_per_s": best, "raw_bytes_per_s": dict(raw_bw),
            "drain_bytes": b, "drain_us": us, "drain_bytes_per_s": drain,
            "dirty_before": flush.get("dirty_before"),
            "drain_wall_bytes_per_s": (float(flush.get("dirty_before") or 0) / wall_s) if wall_s else float("nan"),
            "ratio": ratio(drain, best)}


def drain_line(s: dict, bound: dict | None = None) -> str:
    """The drain-bandwidth line (MB = 10^6 bytes), and the dirty bound line
    when `bound` (status' power_fail: dirty_bound_bytes, writeback_bandwidth,
    holdup_ms) is given."""
    mb = 1e6
    per_qd = ", ".join(f"QD{q} {fmt(v / mb)}" for q, v in sorted((int(k), v) for k, v in s["raw_bytes_per_s"].items()))
    text = (f"Drain bandwidth (emulated: QEMU TCG wall clock, unthrottled log disk partition): raw partition, "
            f"fio 1 MiB sequential writes, best {fmt(s['raw_best_bytes_per_s'] / mb)} MB/s at QD{s['raw_best_qd']} "
            f"({per_qd} MB/s); rapilog drain (`rapilogctl flush` of {fmt(s['drain_bytes'] / (1 << 20))} MiB) "
            f"{fmt(s['drain_bytes_per_s'] / mb)} MB/s in {fmt(s['drain_us'] / 1000)} ms; "
            f"drain / raw best: {fmt(s['ratio'])}.")
    if bound:
        text += (f"\nDirty bound (`rapilogctl status`, powerfail=nmi, holdup_ms={bound.get('holdup_ms')}): "
                 f"{fmt(float(bound.get('dirty_bound_bytes') or 0) / (1 << 20))} MiB at the module's writeback "
                 f"bandwidth estimate {fmt(float(bound.get('writeback_bandwidth') or 0) / mb)} MB/s.")
    return text
