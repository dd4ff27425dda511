#!/usr/bin/env python3
"""`make bench`: rapilog against the real alternatives, in one QEMU guest boot.

  bench/run.py                 full run (both disk profiles, 3 repetitions)
  QUICK=1 bench/run.py         quick run (200-IOPS profile, 1 repetition, short runs)
  bench/run.py --report DIR    tables and plots again from DIR/results.json
  RAPILOG_KO=path bench/run.py use that rapilog.ko instead of building the tree's

One guest (stock Debian kernel, QEMU TCG, Debian trixie rootfs with fio and
PostgreSQL) boots with two disks: the log disk (throttled by QEMU: a number
of requests per second, each request up to 1 MiB counting as one, plus
150 MB/s: a disk that seeks, not a 4 KiB pipe) and an unthrottled data disk.
Reserved memory: 128 MiB for rapilog (memmap=128M$0x64000000) and a 128 MiB
legacy pmem region (memmap=128M!0x70000000 -> /dev/pmem0) for dm-writecache.

1. fio (issue 4 item 9), 200-IOPS profile: 4 KiB sequential write + fsync
   at queue depth 1 (psync, direct, fsync=1), and 4 KiB random writes at
   queue depth 32 (libaio, direct, fdatasync=32: 32 writes in flight, and
   after each 32 fio drains the queue and issues an fdatasync - a group
   commit of 32 log writes). The QD32 job writes a fixed span once (16 MiB,
   8 MiB in QUICK mode), which fits the rapilog region and dm-writecache's
   cache: it measures the write path, not the disk's sustained random-write
   rate (both caches fall back to that rate once full). Devices: the raw
   throttled disk, rapilog protect=window and protect=off (rmmod/insmod
   between), dm-writecache (pmem mode) and brd.
2. PostgreSQL (issue 8) for each disk profile (200 IOPS, 600 IOPS): WAL
   (pg_wal) on an ext4 file system on the device under test, data on the
   data disk. (a) raw disk, synchronous_commit=on; (b) raw disk,
   synchronous_commit=off; (c) rapilog over the same disk, on; (d)
   dm-writecache (pmem mode) over the same disk, on; (e) brd, on (measured
   once: it does not depend on the disk). On each device pg_test_fsync, then
   pgbench (TPC-B-like, -M prepared, CHECKPOINT before each run) at 1, 2, 4,
   8, 16 clients, the repetitions interleaved. The log disk's
   /sys/block/*/stat before and after each run (+ a settle time longer than
   rapilog's writeback delay) gives writes per transaction and write size.

Output: .cache/bench/<date>/<quick|full>/ (results.json, *.csv, results.md,
*.png) and the tables on stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "lib"))
sys.path.insert(0, str(HERE))

import benchlib as bl  # noqa: E402

KREL = os.environ.get("KREL") or "7.3.4+deb13-amd64"
QUICK = os.environ.get("QUICK", "") not in ("", "0")
MODE = "quick" if QUICK else "full"

# --- parameters ------------------------------------------------------------------------------
P = dict(
    profiles=[200] if QUICK else [200, 600],  # log disk: requests/s
    clients=[1, 2, 4, 8, 16],
    reps=1 if QUICK else 3,
    duration=5 if QUICK else 10,  # pgbench -T
    scale=4 if QUICK else 8,  # pgbench -s (scale < 16 clients: some row contention at 16)
    fio_qd1_s=4 if QUICK else 10,
    fio_qd32_span="8M" if QUICK else "16M",
    pg_test_fsync_s=1 if QUICK else 2,
    settle_s=2.5,  # after pgbench, before reading disk stats (rapilog writeback_delay_ms=1000)
)
# The region straddles two 128 MiB memory sections that also hold RAM: the
# driver needs struct pages for it (pfn_valid), and a section with no RAM in
# it at all has none. The pmem region is a section of its own (fsdax creates
# its memmap).
REGION_BOOT, REGION_PARAM = "128M$0x64000000", "128M@0x64000000"
PMEM_BOOT = "128M!0x70000000"
DISK_BPS = 150 * 1000 * 1000
IOPS_SIZE = 1 << 20
CONFIGS = {  # name: (device kind, synchronous_commit)
    "a": ("raw", "on"), "b": ("raw", "off"), "c": ("rapilog", "on"), "d": ("writecache", "on"), "e": ("brd", "on"),
}
CONFIG_LABEL = {"a": "raw disk, sync commit", "b": "raw disk, async commit", "c": "rapilog, sync commit",
                "d": "dm-writecache (pmem), sync commit", "e": "brd (RAM disk), sync commit"}
FIO_DEVICES = ["rapilog window", "rapilog off", "dm-writecache", "brd", "raw 200 IOPS"]
KO_GUEST = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = ("insmod /lib/modules/$(uname -r)/extra/rapilog.ko region=" + REGION_PARAM +
          " backing=$(disk-by-serial rl-log) disk_id=serial:rl-log")
PGCONF = """
listen_addresses = ''
unix_socket_directories = '/tmp'
max_connections = 40
shared_buffers = 128MB
max_wal_size = 1GB
checkpoint_timeout = 1h
autovacuum = off
fsync = on
wal_sync_method = fdatasync
"""

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f} s] {msg}", flush=True)


def build(*cmd: str) -> str:
    out = subprocess.run([str(REPO / cmd[0]), *cmd[1:]], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


class Bench:
    def __init__(self, g, out: Path, results: dict):
        self.g, self.out, self.r = g, out, results
        self.cmdlog = open(out / "guest-commands.log", "a")

    # --- guest helpers ---------------------------------------------------------------------
    def sh(self, cmd: str, timeout: float = 120) -> str:
        t = time.monotonic()
        rc, out = self.g.run(cmd, timeout=timeout)
        self.cmdlog.write(f"$ {cmd}\n[rc {rc}, {time.monotonic() - t:.1f} s]\n{out}\n")
        self.cmdlog.flush()
        if rc != 0:
            raise SystemExit(f"bench: guest command failed (rc {rc}): {cmd}\n{out[-3000:]}")
        return out

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.r, indent=1))

    def throttle(self, iops: int) -> None:
        """The log disk's limit (0: unlimited, e.g. to drain a cache quickly)."""
        args = {"id": "rl-log/virtio-backend", "bps": DISK_BPS if iops else 0, "bps_rd": 0, "bps_wr": 0,
                "iops": iops, "iops_rd": 0, "iops_wr": 0}
        if iops:
            args["iops_size"] = IOPS_SIZE
        self.g.qmp("block_set_io_throttle", args)

    def stat(self, dev: str) -> str:
        return self.sh(f"cat /sys/block/{dev}/stat").strip()

    # --- devices ----------------------------------------------------------------------------
    def setup(self) -> None:
        self.log_dev = self.sh("disk-by-serial rl-log").strip()
        self.data_dev = self.sh("disk-by-serial rl-data").strip()
        self.pg = self.sh("ls -d /usr/lib/postgresql/*/bin | tail -n 1").strip()
        info = self.sh("uname -r; nproc; grep MemTotal /proc/meminfo; fio --version; "
                       f"{self.pg}/postgres --version").strip().splitlines()
        self.r["guest"] = info
        # dm-writecache's pmem mode needs DAX with struct pages: the legacy
        # (memmap=!) namespace is made fsdax with its memmap in RAM.
        self.sh("modprobe nd_e820; modprobe nd_pmem; modprobe dax_pmem; modprobe dm-writecache; "
                "for i in $(seq 50); do [ -b /dev/pmem0 ] && break; sleep 0.1; done; "
                "ndctl create-namespace -f -e namespace0.0 -m fsdax --map=mem >/dev/null && "
                "for i in $(seq 50); do [ -b /dev/pmem0 ] && break; sleep 0.1; done; ls -l /dev/pmem0",
                timeout=180)
        self.sh("modprobe brd rd_nr=1 rd_size=524288")

    def attach(self, kind: str, protect: str = "window") -> str:
        """Bring up the device under test; returns its /dev path."""
        if kind == "raw":
            return self.log_dev
        if kind == "brd":
            self.sh("blkdiscard /dev/ram0 2>/dev/null; true")
            return "/dev/ram0"
        if kind == "rapilog":
            self.sh(f"{INSMOD} protect={protect}", timeout=180)
            return "/dev/rapilog0"
        if kind == "writecache":
            # A zeroed superblock: dm-writecache starts with an empty cache.
            self.sh("dd if=/dev/zero of=/dev/pmem0 bs=1M count=4 oflag=direct 2>/dev/null && "
                    f"dmsetup create wc --table \"0 $(blockdev --getsz {self.log_dev}) writecache p "
                    f"{self.log_dev} /dev/pmem0 4096 0\" && dmsetup mknodes wc")
            return "/dev/mapper/wc"
        raise ValueError(kind)

    def detach(self, kind: str, iops: int) -> None:
        """Tear down; the caches drain onto the unthrottled disk (not measured)."""
        if kind == "rapilog":
            self.throttle(0)
            self.sh("rmmod rapilog", timeout=600)
            self.throttle(iops)
        elif kind == "writecache":
            self.throttle(0)
            self.sh("dmsetup message wc 0 flush && dmsetup remove wc", timeout=600)
            self.throttle(iops)

    @staticmethod
    def blockname(dev: str) -> str:
        """/sys/block name of a /dev path (resolves /dev/mapper links)."""
        return f"$(basename $(readlink -f {dev}))"

    # --- fio -------------------------------------------------------------------------------------
    def fio(self, dev: str, label: str) -> None:
        common = (f"--output-format=json --filename={dev} --bs=4k --direct=1 --lat_percentiles=1 "
                  f"--percentile_list={bl.FIO_PERCENTILE_ARG}")
        qd1 = (f"fio {common} --name=qd1 --rw=write --ioengine=psync --iodepth=1 --fsync=1 --size=256M "
               f"--time_based --runtime={P['fio_qd1_s']}")
        qd32 = (f"fio {common} --name=qd32 --rw=randwrite --ioengine=libaio --iodepth=32 --fdatasync=32 "
                f"--size={P['fio_qd32_span']} --offset=384M --randrepeat=1")
        res = {}
        for name, cmd in (("qd1", qd1), ("qd32", qd32)):
            out = self.sh(cmd, timeout=600)
            (self.out / f"fio-{label.replace(' ', '_')}-{name}.json").write_text(out)
            res[name] = bl.parse_fio_json(out)[0].__dict__
            self.sh("sleep 2")  # let writeback of the previous job start before the next
        self.r.setdefault("fio", {})[label] = res
        log(f"fio {label}: QD1 {res['qd1']['iops']:.0f} IOPS, QD32 {res['qd32']['iops']:.0f} IOPS")
        self.save()

    def run_fio(self) -> None:
        iops = 200
        self.throttle(iops)
        for label, kind, protect in (("raw 200 IOPS", "raw", None), ("rapilog window", "rapilog", "window"),
                                     ("rapilog off", "rapilog", "off"), ("dm-writecache", "writecache", None),
                                     ("brd", "brd", None)):
            dev = self.attach(kind, protect or "window")
            self.fio(dev, label)
            self.detach(kind, iops)

    # --- PostgreSQL ---------------------------------------------------------------------------
    def pgsu(self, cmd: str) -> str:
        return f"runuser -u postgres -- {self.pg}/{cmd}"

    def pg_golden(self) -> None:
        """A cluster with pgbench's tables on the data disk, kept as a copy."""
        t = time.monotonic()
        conf = PGCONF.replace("'", "'\\''")
        self.sh(f"mkfs.ext4 -q -F {self.data_dev} && mkdir -p /data && mount -o noatime {self.data_dev} /data && "
                "mkdir -p /mnt/wal && chown postgres: /data && "
                + self.pgsu("initdb -D /data/golden -A trust -E UTF8 --locale=C --no-sync >/dev/null") +
                f" && echo '{conf}' >> /data/golden/postgresql.conf", timeout=300)
        self.sh(self.pgsu("pg_ctl -D /data/golden -l /tmp/pg-golden.log -w -t 300 start") + " >/dev/null", timeout=320)
        self.sh(self.pgsu("createdb -h /tmp bench") + " && " +
                self.pgsu(f"pgbench -h /tmp -i -q -s {P['scale']} bench") + " 2>&1 | tail -n 2", timeout=900)
        self.sh(self.pgsu("pg_ctl -D /data/golden -w -t 300 stop") + " >/dev/null", timeout=320)
        log(f"PostgreSQL cluster with pgbench scale {P['scale']} ready in {time.monotonic() - t:.0f} s")

    def pg_prepare(self, dev: str) -> None:
        """ext4 on dev at /mnt/wal; a fresh copy of the cluster with its pg_wal there."""
        self.sh(f"mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {dev} && "
                f"mount -o noatime {dev} /mnt/wal && mkdir /mnt/wal/pg_wal && "
                "rm -rf /data/pg && cp -a /data/golden /data/pg && cp -a /data/pg/pg_wal/. /mnt/wal/pg_wal/ && "
                "rm -rf /data/pg/pg_wal && ln -s /mnt/wal/pg_wal /data/pg/pg_wal && chown -R postgres: /mnt/wal",
                timeout=600)

    def pg_start(self, sync: str) -> None:
        self.sh(self.pgsu(f"pg_ctl -D /data/pg -l /tmp/pg.log -w -t 300 -o '-c synchronous_commit={sync}' start")
                + " >/dev/null", timeout=320)

    def pg_stop(self) -> None:
        self.sh(self.pgsu("pg_ctl -D /data/pg -w -t 300 stop") + " >/dev/null", timeout=320)

    def pg_test_fsync(self, profile: str, label: str) -> None:
        out = self.sh(f"{self.pg}/pg_test_fsync -f /mnt/wal/pg_test_fsync.out -s {P['pg_test_fsync_s']}; "
                      "rm -f /mnt/wal/pg_test_fsync.out", timeout=600)
        (self.out / f"pg_test_fsync-{profile}-{label}.txt").write_text(out)
        res = bl.parse_pg_test_fsync(out)
        self.r.setdefault("pg_test_fsync", []).append({"profile": profile, "device": label, "methods": res})
        log(f"pg_test_fsync {profile} {label}: fdatasync {res.get('fdatasync', (0, 0))[0]:.0f} ops/s")
        self.save()

    def pgbench_runs(self, profile: str, config: str, dev: str) -> None:
        """All client counts and repetitions of one configuration (server running)."""
        disk, front = self.blockname(self.log_dev), self.blockname(dev)
        for rep in range(P["reps"]):
            for n in P["clients"]:
                self.sh(self.pgsu("psql -h /tmp -d bench -q -c CHECKPOINT"), timeout=300)
                before = self.sh(f"cat /sys/block/{disk}/stat /sys/block/{front}/stat").strip().splitlines()
                out = self.sh(self.pgsu(f"pgbench -h /tmp -n -M prepared -c {n} -j {min(n, 2)} "
                                        f"-T {P['duration']} bench") + " 2>&1",
                              timeout=P["duration"] * 4 + 120)
                self.sh(f"sleep {P['settle_s']}")
                after = self.sh(f"cat /sys/block/{disk}/stat /sys/block/{front}/stat").strip().splitlines()
                pr = bl.parse_pgbench(out)
                dd = bl.diskstat_delta(bl.parse_diskstat(before[0]), bl.parse_diskstat(after[0]))
                fd = bl.diskstat_delta(bl.parse_diskstat(before[1]), bl.parse_diskstat(after[1]))
                self.r.setdefault("pgbench", []).append({
                    "profile": profile, "config": config, "clients": n, "rep": rep, "tps": pr.tps,
                    "transactions": pr.transactions, "latency_ms": pr.latency_ms, "failed": pr.failed,
                    "disk_writes": dd.writes, "disk_sectors": dd.sectors, "disk_flushes": dd.flushes,
                    "front_writes": fd.writes, "front_sectors": fd.sectors, "front_flushes": fd.flushes})
                log(f"pgbench {profile} ({config}) {n:2d} clients rep {rep}: {pr.tps:8.1f} TPS, "
                    f"{dd.writes} disk writes for {pr.transactions} transactions")
                self.save()

    def run_pg(self) -> None:
        self.pg_golden()
        for iops in P["profiles"]:
            profile = f"{iops} IOPS"
            self.throttle(iops)
            for kind, configs in (("raw", ["a", "b"]), ("rapilog", ["c"]), ("writecache", ["d"]), ("brd", ["e"])):
                if kind == "brd" and iops != P["profiles"][0]:
                    continue  # brd does not depend on the disk profile
                t = time.monotonic()
                dev = self.attach(kind)
                self.pg_prepare(dev)
                self.pg_test_fsync(profile, kind)
                for c in configs:
                    self.pg_start(CONFIGS[c][1])
                    self.pgbench_runs(profile, c, dev)
                    self.pg_stop()
                self.sh("umount /mnt/wal", timeout=300)
                self.detach(kind, iops)
                log(f"{profile} {kind} done in {time.monotonic() - t:.0f} s")


# --- report -----------------------------------------------------------------------------------
def report(out: Path) -> str:
    r = json.loads((out / "results.json").read_text())
    md = []
    meta = r.get("meta", {})
    md.append(f"Run {meta.get('date', '?')} ({meta.get('mode', '?')} mode): host CPU {meta.get('cpu', '?')}, "
              f"{meta.get('host_cores', '?')} host cores, QEMU TCG guest ({', '.join(r.get('guest', [])[:2])}); "
              f"parameters {json.dumps(meta.get('params', {}))}; wall clock {meta.get('wall_s', 0) / 60:.1f} min.")
    if "fio" in r:
        fio = {dev: {qd: bl.FioResult(**{**v, "write_lat": {float(k): x for k, x in v["write_lat"].items()},
                                          "sync_lat": {float(k): x for k, x in v["sync_lat"].items()}})
                     for qd, v in d.items()} for dev, d in r["fio"].items()}
        table, rows = bl.fio_table(fio, FIO_DEVICES)
        (out / "fio.csv").write_text(bl.to_csv(rows[0], rows[1:]))
        md.append("### fio: 4 KiB write + fsync at QD1, 4 KiB random writes at QD32 (200-IOPS log disk)\n\n" + table)
        rw, rr, b = fio.get("rapilog window"), fio.get("raw 200 IOPS"), fio.get("brd")
        if rw and rr and b:
            md.append("rapilog (window) QD1 write+fsync p50 latency: "
                      f"{bl.fmt_ratio(bl.ratio(rw['qd1'].commit_lat(50.0), b['qd1'].commit_lat(50.0)))} brd, "
                      f"{bl.fmt(bl.ratio(rw['qd1'].commit_lat(50.0), rr['qd1'].commit_lat(50.0)))}x the raw disk "
                      f"(p99: {bl.fmt_ratio(bl.ratio(rw['qd1'].commit_lat(99.0), b['qd1'].commit_lat(99.0)))} brd, "
                      f"{bl.fmt(bl.ratio(rw['qd1'].commit_lat(99.0), rr['qd1'].commit_lat(99.0)))}x raw).")
    if "pg_test_fsync" in r:
        res = {(x["profile"], x["device"]): {k: tuple(v) for k, v in x["methods"].items()} for x in r["pg_test_fsync"]}
        order = list(res)
        ref = next((k for k in order if k[1] == "brd"), None)
        table, rows = bl.fsync_table(res, order, ref)
        (out / "pg_test_fsync.csv").write_text(bl.to_csv(rows[0], rows[1:]))
        md.append("### pg_test_fsync: one 8 kB write + fdatasync (WAL file system on the device)\n\n" + table)
    if "pgbench" in r:
        runs = r["pgbench"]
        keys = sorted({k for x in runs for k in x})
        (out / "pgbench-runs.csv").write_text(bl.to_csv(keys, [[x.get(k) for k in keys] for x in runs]))
        summ = bl.pgbench_summary(runs)
        profiles = list(dict.fromkeys(x["profile"] for x in runs))
        clients = sorted({int(x["clients"]) for x in runs})
        configs = [c for c in CONFIGS if any(x["config"] == c for x in runs)]
        shared = {"e": next((x["profile"] for x in runs if x["config"] == "e"), profiles[0])}
        all_rows = []
        for prof in profiles:
            table, rows = bl.pgbench_table(summ, prof, configs, clients, shared=shared)
            all_rows += rows[1:] if all_rows else rows
            md.append(f"### pgbench TPS, log disk {prof} (median of {r.get('meta', {}).get('params', {}).get('reps', '?')}"
                      f" runs; (e) brd measured once)\n\n" + table)
        (out / "pgbench.csv").write_text(bl.to_csv(all_rows[0], all_rows[1:]))
        # Writeback efficiency: (c) vs (a) (and (d)), summed over repetitions.
        hdr = ["profile", "clients"] + [f"({c}) {w}" for c in ("a", "c", "d") for w in ("writes/txn", "KiB/write")]
        rows, csv_rows = [], []
        for prof in profiles:
            for n in clients:
                cells, raw = [prof, str(n)], [prof, n]
                for c in ("a", "c", "d"):
                    sel = [x for x in runs if x["profile"] == prof and x["config"] == c and int(x["clients"]) == n]
                    d = bl.DiskStat(sum(x["disk_writes"] for x in sel), sum(x["disk_sectors"] for x in sel),
                                    sum(x["disk_flushes"] for x in sel))
                    e = bl.writeback_efficiency(d, sum(x["transactions"] for x in sel))
                    cells += [bl.fmt(e["writes_per_txn"]), bl.fmt(e["avg_write_kib"])]
                    raw += [e["writes_per_txn"], e["avg_write_kib"]]
                rows.append(cells)
                csv_rows.append(raw)
        (out / "writeback.csv").write_text(bl.to_csv(hdr, csv_rows))
        md.append("### Log disk writes per committed transaction and average write size "
                  "(/sys/block/*/stat of the log disk)\n\n" + bl.markdown_table(hdr, rows))
    text = "\n\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    try:
        import plot
        for p in plot.plots(r, out, CONFIG_LABEL, FIO_DEVICES):
            log(f"plot: {p}")
    except ImportError as e:
        log(f"no plots ({e}); install matplotlib into .cache/venv")
    return text


def ensure_matplotlib() -> None:
    """Re-run under the project venv with matplotlib (installed once, from PyPI)."""
    venv_py = REPO / ".cache" / "venv" / "bin" / "python"
    if os.environ.get("RAPILOG_BENCH_VENV") == "1":
        return
    py = subprocess.run([str(REPO / "tests" / "setup-venv.sh")], check=True, stdout=subprocess.PIPE,
                        text=True).stdout.strip().splitlines()[-1] if not venv_py.exists() else str(venv_py)
    if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "matplotlib"], check=True)
    os.environ["RAPILOG_BENCH_VENV"] = "1"
    os.execv(py, [py, *sys.argv])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", metavar="DIR", help="only tables and plots from DIR/results.json")
    ap.add_argument("--out", metavar="DIR", help="output directory (default .cache/bench/DATE/MODE)")
    ap.add_argument("--only", choices=["fio", "pg"], help="run one part only (development)")
    args = ap.parse_args()
    ensure_matplotlib()
    if args.report:
        print(report(Path(args.report)))
        return 0

    from guest import Disk, Guest, LOG_ROOT  # noqa: E402
    t_start = time.time()
    now = datetime.datetime.now()
    out = Path(args.out) if args.out else REPO / ".cache" / "bench" / now.strftime("%Y-%m-%d") / MODE
    out.mkdir(parents=True, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    results = {"meta": {"date": now.strftime("%Y-%m-%d %H:%M"), "mode": MODE, "cpu": cpu,
                        "host_cores": os.cpu_count(), "host": platform.platform(), "params": P,
                        "load_at_start": os.getloadavg()}}
    log(f"make bench ({MODE}): output in {out}")
    subprocess.run([str(REPO / "qemu-scripts/host-deps.sh")], check=True, stdout=subprocess.DEVNULL)
    # RAPILOG_KO: a prebuilt module (e.g. of a commit, while the tree is mid-edit).
    ko = os.environ.get("RAPILOG_KO") or build("kernels/build-module.sh", KREL)
    results["meta"]["module"] = ko
    disks = [Disk(out / "log.img", serial="rl-log", size="1G", iops=P["profiles"][0], iops_size=IOPS_SIZE,
                  extra=f"throttling.bps-total={DISK_BPS}"),
             Disk(out / "data.img", serial="rl-data", size="2G", cache="unsafe")]
    for d in disks:
        Path(d.path).unlink(missing_ok=True)
    try:
        with Guest("bench", krel=KREL, mem="2G", memmap=REGION_BOOT, append=f"memmap={PMEM_BOOT}", disks=disks,
                   rootfs=["postgresql"], files={KO_GUEST: ko}, log_dir=LOG_ROOT / "bench") as g:
            g.boot()
            log(f"guest booted in {g.ready_times[-1]:.1f} s (logs: {g.log_dir})")
            b = Bench(g, out, results)
            b.setup()
            if args.only != "pg":
                t = time.monotonic()
                b.run_fio()
                results["meta"]["fio_s"] = time.monotonic() - t
            if args.only != "fio":
                t = time.monotonic()
                b.run_pg()
                results["meta"]["pg_s"] = time.monotonic() - t
            results["meta"]["wall_s"] = time.time() - t_start
            results["meta"]["load_at_end"] = os.getloadavg()
            b.save()
    finally:
        for d in disks:
            Path(d.path).unlink(missing_ok=True)
    print()
    print(report(out))
    log(f"done: {MODE} mode took {(time.time() - t_start) / 60:.1f} min; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
