"""Per-function instruction profile of the 4 KiB write + fsync job
(`bench/run.py --only profile`, issue 17 item 1).

The icount boot of `run.py` (same guest, devices and fio job), with the QEMU
TCG plugin `bench/profile/insn_profile.c` loaded: it counts executed guest
instructions per translation block. For each device the plugin's counts are
taken over two fio jobs of different lengths (SHORT and LONG 4 KiB writes,
each followed by an fsync), and the difference divided by LONG - SHORT is
the cost of one write + fsync: fio's start-up, the agent's shell and
everything else that does not grow with the number of writes cancel out.
Blocks are attributed to the symbol (guest /proc/kallsyms, read after the
device is up, so rapilog's own functions are named) that holds their first
instruction; user-space blocks are one line, "[user]".

Output: profile.md (tables), profile.json, and the plugin's raw dumps, in
the run's output directory; the tables on stdout.
"""
from __future__ import annotations

import bisect
import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
QEMU_VERSION = "10.0.2"
QEMU_ORIG = f"qemu_{QEMU_VERSION}+ds.orig.tar.xz"
QEMU_ORIG_URL = f"http://deb.debian.org/debian/pool/main/q/qemu/{QEMU_ORIG}"
SHORT, LONG = 500, 2500
KERNEL_BASE = 0xFFFF800000000000
TOP = 30


def cache_dir() -> Path:
    return Path(os.environ.get("RAPILOG_CACHE") or HERE.parent / ".cache")


def build_plugin() -> Path:
    """bench/profile/insn_profile.so, built against qemu-plugin.h of the host's
    QEMU version (from Debian's source tarball, unpacked under the cache)."""
    src = cache_dir() / "qemu-src"
    inc = src / f"qemu-{QEMU_VERSION}" / "include" / "qemu"
    if not (inc / "qemu-plugin.h").exists():
        src.mkdir(parents=True, exist_ok=True)
        tar = src / QEMU_ORIG
        if not tar.exists():
            subprocess.run(["curl", "-sSfo", str(tar) + ".part", QEMU_ORIG_URL], check=True)
            os.rename(str(tar) + ".part", tar)
        subprocess.run(["tar", "-C", str(src), "-xJf", str(tar), f"qemu-{QEMU_VERSION}/include/qemu/qemu-plugin.h"],
                       check=True)
    if subprocess.run(["pkg-config", "--exists", "glib-2.0"]).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "libglib2.0-dev"], check=True, stdout=subprocess.DEVNULL)
    glib = subprocess.run(["pkg-config", "--cflags", "glib-2.0"], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.split()
    so = cache_dir() / "bench-profile" / "insn_profile.so"
    so.parent.mkdir(parents=True, exist_ok=True)
    c = HERE / "profile" / "insn_profile.c"
    if not so.exists() or so.stat().st_mtime < c.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", *glib, f"-I{inc}", str(c), "-o", str(so),
                        "-lpthread"], check=True)
    return so


class Plugin:
    """The plugin's control FIFO."""

    def __init__(self, d: Path):
        self.dir = d
        self.fifo = d / "insn_profile.fifo"
        self.fifo.unlink(missing_ok=True)
        os.mkfifo(self.fifo)

    def qemu_args(self, so: Path) -> list[str]:
        return ["-plugin", f"{so},fifo={self.fifo}"]

    def cmd(self, line: str) -> None:
        with open(self.fifo, "w") as f:
            f.write(line + "\n")

    def dump(self, name: str) -> dict[int, int]:
        path = self.dir / name
        path.unlink(missing_ok=True)
        self.cmd(f"dump {path}")
        for _ in range(600):
            if path.exists():
                break
            time.sleep(0.05)
        counts: dict[int, int] = defaultdict(int)
        for line in path.read_text().splitlines():
            a, n, e = line.split()
            counts[int(a, 16)] += int(n) * int(e)
        return counts


class Symbols:
    """Text symbols of the guest's /proc/kallsyms."""

    def __init__(self, text: str):
        syms = []
        for line in text.splitlines():
            p = line.split()
            if len(p) >= 3 and p[1] in "tTwW":
                name = p[2] + (f" {p[3]}" if len(p) > 3 else "")
                syms.append((int(p[0], 16), name))
        syms.sort()
        self.addrs = [a for a, _ in syms]
        self.names = [n for _, n in syms]

    def name(self, addr: int) -> str:
        if addr < KERNEL_BASE:
            return "[user]"
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 else "[kernel ?]"


def per_function(short: dict[int, int], long: dict[int, int], syms: Symbols, n: int) -> dict[str, float]:
    funcs: dict[str, float] = defaultdict(float)
    for a in set(short) | set(long):
        funcs[syms.name(a)] += (long.get(a, 0) - short.get(a, 0)) / n
    return dict(funcs)


def short_name(sym: str) -> str:
    """A readable name for a Rust (v0-mangled) symbol: its path without the
    crate, e.g. `sys::bio::copy_segment [rapilog]` (crate hashes and
    generic arguments dropped); other symbols as they are."""
    name, _, module = sym.partition(" ")
    if not name.startswith("_R"):
        return sym
    idents, i = [], 2
    while i < len(name):
        if name.startswith("Cs", i) or name[i] in "Bs":  # crate hash, back-reference, disambiguator
            j = name.find("_", i)
            i = j + 1 if j > 0 else len(name)
            continue
        digits = len(name[i:]) - len(name[i:].lstrip("0123456789"))
        if digits and i + digits < len(name):
            n = int(name[i:i + digits])
            start = i + digits + (name[i + digits] == "_")
            idents.append(name[start:start + n])
            i = start + n
        else:
            i += 1
    path = [x for x in idents if x not in ("rapilog_blk", "core", "kernel")]
    return "::".join(path) + (f" {module}" if module else "")


def table(profiles: dict[str, dict[str, float]], top: int = TOP) -> str:
    labels = list(profiles)
    keys: set[str] = set()
    for p in profiles.values():
        keys |= {k for k, _ in sorted(p.items(), key=lambda kv: -kv[1])[:top]}
    keys.discard("[user]")
    first = labels[-1] if "rapilog window" not in labels else "rapilog window"
    order = sorted(keys, key=lambda k: -max(p.get(k, 0) for p in profiles.values()))
    order = sorted(order, key=lambda k: -profiles[first].get(k, 0))
    head = "| function | " + " | ".join(labels) + " |\n|---|" + "---:|" * len(labels) + "\n"
    rows = []
    for k in order:
        rows.append(f"| `{short_name(k)}` | " + " | ".join(f"{profiles[lb].get(k, 0):,.0f}" for lb in labels) + " |")
    for name, f in (("other kernel functions", lambda p: sum(v for k, v in p.items()
                                                             if k not in keys and k != "[user]")),
                    ("kernel total", lambda p: sum(v for k, v in p.items() if k != "[user]")),
                    ("user (fio)", lambda p: p.get("[user]", 0)),
                    ("total", lambda p: sum(p.values()))):
        rows.append(f"| **{name}** | " + " | ".join(f"{f(profiles[lb]):,.0f}" for lb in labels) + " |")
    return head + "\n".join(rows) + "\n"


def run_profile_boot(bench_mod, out: Path, results: dict, ko: str, ctl: str) -> str:
    """One -icount boot with the plugin: brd, dm-writecache, rapilog window
    and off; returns the report (also written to profile.md)."""
    from rapilog_harness import LOG_ROOT, Disk, Guest, scaled
    so = build_plugin()
    plug = Plugin(out)
    img = out / "profile-log.img"
    bench_mod.make_log_image(img)
    profiles: dict[str, dict[str, float]] = {}
    t = time.monotonic()
    try:
        with Guest("bench-profile", krel=bench_mod.KREL, mem="2G", smp=bench_mod.ICOUNT_SMP,
                   memmap=bench_mod.REGION_BOOT, append=f"memmap={bench_mod.PMEM_BOOT}",
                   disks=[Disk(img, serial="rl-log")], rootfs=["postgresql"],
                   files={bench_mod.KO_GUEST: ko, bench_mod.CTL_GUEST: ctl},
                   qemu_args=bench_mod.ICOUNT_QEMU_ARGS + plug.qemu_args(so),
                   log_dir=LOG_ROOT / "bench-profile", boot_timeout=scaled(900)) as g:
            g.boot()
            bench_mod.log(f"profile guest booted in {g.ready_times[-1]:.1f} s")
            b = bench_mod.Bench(g, out, results)
            b.throttled = False
            b.setup_icount()
            # khugepaged collapses page-cache pages at its own times (seen
            # as memcpy-sized noise in copy_mc/clear_highpages): off here.
            b.sh("echo never > /sys/kernel/mm/transparent_hugepage/enabled; "
                 "echo never > /sys/kernel/mm/transparent_hugepage/defrag")
            for label, kind, protect in bench_mod.ICOUNT_DEVICES:
                dev = b.attach(kind, protect or "window")
                syms = Symbols(b.sh("cat /proc/kallsyms"))
                dumps = {}
                fio_ns = {}
                # A first job, not counted: the device's first direct
                # writes after setup drop page-cache pages (brd's seen as
                # xas_store, filemap_remove_folio, ... in the first job only).
                b.settle(kind)
                b.sh(f"fio --output-format=json --name=warm --filename={dev} --rw=write --bs=4096 "
                     f"--size={SHORT * 4096} --ioengine=psync --iodepth=1 --direct=1 --fsync=1", timeout=900)
                for n in (SHORT, LONG):
                    b.settle(kind)
                    cmd = (f"fio --output-format=json --name=w4k --filename={dev} --rw=write --bs=4096 "
                           f"--size={n * 4096} --ioengine=psync --iodepth=1 --direct=1 --fsync=1 "
                           "--clocksource=clock_gettime")
                    plug.cmd("reset")
                    fio_out = b.sh(cmd, timeout=900)
                    dumps[n] = plug.dump(f"profile-{label.replace(' ', '_')}-{n}.txt")
                    [j] = bench_mod.bl.parse_fio_icount(fio_out)
                    fio_ns[n] = j.per_write_ns
                profiles[label] = per_function(dumps[SHORT], dumps[LONG], syms, LONG - SHORT)
                kern = sum(v for k, v in profiles[label].items() if k != "[user]")
                bench_mod.log(f"profile {label}: {sum(profiles[label].values()):,.0f} instructions per write + fsync "
                              f"({kern:,.0f} in the kernel); fio says {fio_ns[LONG]:,.0f}")
                results.setdefault("profile", {})[label] = {"functions": profiles[label], "fio_per_write_ns": fio_ns}
                b.save()
                b.detach(kind, 0)
    finally:
        img.unlink(missing_ok=True)
        plug.fifo.unlink(missing_ok=True)
    report = ("### Instruction profile: 4 KiB write + fsync at QD1, guest instructions per write by function\n\n"
              f"QEMU `-icount shift=0,sleep=off` with the TCG plugin bench/profile/insn_profile.c; per write = "
              f"(counts over {LONG} writes - counts over {SHORT}) / {LONG - SHORT}; a translation block counts "
              f"for the symbol of its first instruction. Boot {time.monotonic() - t:.0f} s.\n\n"
              + table(profiles))
    (out / "profile.md").write_text(report)
    (out / "profile.json").write_text(json.dumps(results.get("profile", {}), indent=1))
    return report
