#!/usr/bin/env python3
"""`make bench`: rapilog against the real alternatives, in one QEMU guest boot.

  bench/run.py                 full run (both disk profiles, 3 repetitions)
  QUICK=1 bench/run.py         quick run (200-IOPS profile, 1 repetition, short runs)
  bench/run.py --only icount   the instruction-cost section alone (one -icount boot, ~1 min)
  bench/run.py --only icount-pg  pgbench INSERT under -icount: instructions per transaction
  bench/run.py --only profile  per-function instruction profile of the 4 KiB write + fsync job
                               (an -icount boot with a QEMU plugin, bench/insn_profile.py)
  bench/run.py --report DIR    tables and plots again from DIR/results.json
  RAPILOG_KO=path bench/run.py use that rapilog.ko instead of building the tree's
  RAPILOG_CTL=path bench/run.py  use that rapilogctl instead of `cargo build --release`
  (make bench [QUICK=1] [ONLY=icount|icount-pg|profile|fio|drain|pg|rank] runs bench/run.py)

0. Instruction cost (issue 17): a separate guest boot under QEMU
   `-icount shift=0,sleep=off` (1 vCPU): the guest clock advances one
   nanosecond per executed guest instruction, so fio's latencies in ns are
   guest instructions, deterministic and free of TCG's uneven slow-down (it
   over-charges a CRC-32C instruction far more than a memory copy). fio
   4 KiB sequential write + fsync at QD1 (psync, direct, fsync=1, 3,000
   writes) and 64 KiB write + fsync at QD1 (500 writes), twice each, on brd,
   dm-writecache (pmem mode), rapilog protect=window and protect=off.
   Instructions per write = fio's mean write latency (lat_ns) + mean fsync
   latency (sync lat_ns). Each cache is drained before each job (not
   measured), so no writeback runs during one. bench/README.md explains.
   Then, in a boot of its own (also -icount, 1 vCPU, with a data disk):
   pgbench's one-row INSERT, 1 client, 10,000 transactions, twice per
   device, WAL on ext4 on the device: guest ns per transaction (10^9 /
   pgbench's TPS) times the busy share of /proc/stat over the run =
   guest instructions per transaction; also with the cache's writeback
   of the run's data (a drain after it) counted.

One guest (stock Debian kernel, QEMU TCG, Debian trixie rootfs with fio and
PostgreSQL) boots with two disks: the log disk (throttled by QEMU: a number
of requests per second, each request up to 1 MiB counting as one, plus
150 MB/s: a disk that seeks, not a 4 KiB pipe), cut into three 512 MiB
partitions (raw, rapilog's backing disk, dm-writecache's origin), and an
unthrottled data disk. Reserved memory: 128 MiB for rapilog
(memmap=128M$0x64000000) and a 128 MiB legacy pmem region
(memmap=128M!0x70000000 -> /dev/pmem0, fsdax) for dm-writecache.

1. fio (issue 4 item 9), 200-IOPS profile: 4 KiB sequential write + fsync
   at queue depth 1 (psync, direct, fsync=1), and 4 KiB random writes at
   queue depth 32 (libaio, direct, fdatasync=32: 32 writes in flight, and
   after each 32 fio drains the queue and issues an fdatasync - a group
   commit of 32 log writes). The QD32 job writes a fixed span once (16 MiB,
   8 MiB in QUICK mode), which fits the rapilog region and dm-writecache's
   cache: it measures the write path, not the disk's sustained random-write
   rate (both caches fall back to that rate once full). Devices: the raw
   throttled disk, rapilog protect=window and protect=off (rmmod/insmod
   between), dm-writecache (pmem mode) and brd (written once before, so
   that its pages exist).
2. PostgreSQL (issue 8): four clusters (copies of one pgbench database on
   the data disk), each with its WAL (pg_wal) on an ext4 file system on one
   device: the raw partition, rapilog over its partition, dm-writecache over
   its partition, brd. Configurations: (a) raw, synchronous_commit=on; (b)
   raw, synchronous_commit=off (PGOPTIONS, same cluster); (c) rapilog, on;
   (d) dm-writecache, on; (e) brd, on. For each disk profile (200 and 600
   requests/s): pg_test_fsync on each device, then pgbench at 1, 2, 4, 8, 16
   clients for two workloads (TPC-B-like; one single-row INSERT per
   transaction, commit-bound), -M prepared, a CHECKPOINT before each run;
   the configurations interleave at each point (in rotated order) and the
   repetitions are separate passes, so that the host's load drift hits all
   alike. (e) is
   measured with the first profile only (brd does not depend on the disk).
   After each run the caches drain (Bench.quiesce): the log disk
   partition's /sys/block stat delta holds that run's writeback: writes per
   committed transaction and average write size.

3. Ranking (issue 17 item 5): pgbench's INSERT workload on rapilog (c),
   dm-writecache (d) and brd (e) at 1-16 clients (1 and 16 in QUICK mode),
   5 repetitions of 10 s (3 of 6 s), the 200-IOPS profile; a CHECKPOINT
   and both caches written back before each run, the configurations rotated
   at each point, one unmeasured warm-up run each first. Reported as
   min/median/max per point, the spread (largest distance of a repetition
   from the median), rapilog/brd and rapilog/dm-writecache per client
   count, and whether the repetitions agree within +-10 %.

Also in the fio boot: the QD32/QD1 IOPS ratio of each device (scaling
line), and the drain bandwidth: fio's best 1 MiB sequential write
bandwidth (QD 1..16) on the raw partition, unthrottled, against rapilog's
drain of a filled region (`rapilogctl flush`), and the power-fail dirty
bound `rapilogctl status` reports with powerfail=nmi.

Output: .cache/bench/<date>/<quick|full>/ (--only X: <quick|full>-X/) (results.json, *.csv, results.md,
*.png) and the tables on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))  # rapilog_harness
sys.path.insert(0, str(HERE))

import benchlib as bl  # noqa: E402

KREL = os.environ.get("KREL") or "7.3.4+deb13-amd64"
QUICK = os.environ.get("QUICK", "") not in ("", "0")
MODE = "quick" if QUICK else "full"

# --- parameters ------------------------------------------------------------------------------
P = dict(
    profiles=[200] if QUICK else [200, 600],  # log disk: requests/s
    clients=[1, 4, 16] if QUICK else [1, 2, 4, 8, 16],
    workloads=["tpcb", "insert"],
    reps=1 if QUICK else 3,
    duration=4,  # pgbench -T, seconds
    scale=8 if QUICK else 16,  # pgbench -s: branches (row-lock contention when clients > scale)
    fio_qd1_s=4 if QUICK else 10,
    fio_qd32_span="8M" if QUICK else "16M",
    fio_rounds=1 if QUICK else 3,  # every device's two jobs, rotated order; the scaling line takes the median
    pg_test_fsync_s=1 if QUICK else 2,
    # Instruction cost (-icount): the same in both modes (deterministic and short).
    icount_writes_4k=3000,
    icount_writes_64k=500,
    icount_reps=2,
    # pgbench under -icount: one client, this many INSERT transactions per run.
    icount_pg_tx=10000,
    icount_pg_reps=2,
    # Drain bandwidth: fio on the raw partition at these depths, then rapilog's
    # region filled with this much (writeback held) and drained.
    drain_qds=[1, 2, 4, 8, 16],
    drain_fio_s=2 if QUICK else 4,
    drain_fill_mib=64,
    drain_reps=3,
    # Ranking (item 5 of issue 17): the commit-bound INSERT workload on
    # rapilog, dm-writecache and brd only, runs long and repeated enough to
    # rank them; each run starts with both caches empty.
    rank_clients=[1, 16] if QUICK else [1, 2, 4, 8, 16],
    rank_reps=3 if QUICK else 5,
    rank_duration=6 if QUICK else 10,  # pgbench -T, seconds
    rank_warmup=3,  # pgbench -T of the unmeasured run before the first repetition
)
# The region straddles two 128 MiB memory sections that also hold RAM (the
# driver maps any reserved range, with or without struct pages). The pmem
# region is a section of its own (fsdax creates its memmap).
REGION_BOOT, REGION_PARAM = "128M$0x64000000", "128M@0x64000000"
PMEM_BOOT = "128M!0x70000000"
DISK_BPS = 150 * 1000 * 1000
IOPS_SIZE = 1 << 20
CONFIGS = {  # name: (device kind, synchronous_commit)
    "a": ("raw", "on"), "b": ("raw", "off"), "c": ("rapilog", "on"), "d": ("writecache", "on"), "e": ("brd", "on"),
}
CONFIG_LABEL = {"a": "raw disk, sync commit", "b": "raw disk, async commit", "c": "rapilog, sync commit",
                "d": "dm-writecache (pmem), sync commit", "e": "brd (RAM disk), sync commit"}
# pgbench workloads: TPC-B-like (built in), and a commit-bound one: one
# single-row INSERT per transaction (under TCG a TPC-B transaction costs tens
# of ms of emulated CPU, as much as a commit on the slow disk).
WORKLOADS = {"tpcb": ("TPC-B-like", ""), "insert": ("one-row INSERT per transaction", "-f /tmp/insert.sql")}
INSERT_SQL = b"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n"
RANK_CONFIGS = ["c", "d", "e"]  # rapilog, dm-writecache, brd (synchronous commit)
RANK_TARGETS = {"e": 0.95, "d": 1.0}  # rapilog's TPS over brd's and dm-writecache's (issue 17)
RANK_LABELS = {"c": "rapilog", "d": "dm-writecache", "e": "brd"}
FIO_DEVICES = ["rapilog window", "rapilog off", "dm-writecache", "brd", "raw 200 IOPS"]
KO_GUEST = "/lib/modules/KREL/extra/rapilog.ko"
CTL_GUEST = "/usr/local/bin/rapilogctl"
# Instruction cost: QEMU's instruction counter as the guest clock (1 ns per
# guest instruction; sleep=off: an idle guest jumps to its next timer). One
# vCPU: every instruction counted in a latency is one the writing CPU ran.
ICOUNT_QEMU_ARGS = ["-icount", "shift=0,sleep=off"]
ICOUNT_SMP = 1
ICOUNT_DEVICES = [("brd", "brd", None), ("dm-writecache", "writecache", None),
                  ("rapilog window", "rapilog", "window"), ("rapilog off", "rapilog", "off")]
ICOUNT_JOBS = [("w4k", "4 KiB", 4096, "icount_writes_4k"), ("w64k", "64 KiB", 65536, "icount_writes_64k")]
ICOUNT_BRD_KIB = 65536  # brd for the icount boot: 64 MiB, written once before
ICOUNT_PG_BRD_KIB = 262144  # brd of the pgbench -icount boot: pg_wal (16 MiB segments) on ext4
# The log disk has one 512 MiB partition per device kind, so that every
# configuration is up at once and the runs interleave (a, b, c, d, e at each
# client count): the host's load drifts (other QEMU guests share its 2 cores)
# and interleaving spreads the drift over all configurations alike. One QEMU
# throttle covers the whole disk; only the configuration being measured uses
# it (the caches are drained before each run, see Bench.quiesce).
PART = {"raw": 1, "rapilog": 2, "writecache": 3}
PG_PORT = {"raw": 5432, "rapilog": 5433, "writecache": 5434, "brd": 5435}
INSMOD = ("insmod /lib/modules/$(uname -r)/extra/rapilog.ko region=" + REGION_PARAM +
          " backing={backing} disk_id=serial:rl-log")
PGCONF = """
listen_addresses = ''
unix_socket_directories = '/tmp'
max_connections = 40
shared_buffers = 64MB
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
        self.throttled = True  # the log disk has a QEMU throttle (not in the icount boot)

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
        if not self.throttled:
            return
        args = {"id": "rl-log/virtio-backend", "bps": DISK_BPS if iops else 0, "bps_rd": 0, "bps_wr": 0,
                "iops": iops, "iops_rd": 0, "iops_wr": 0}
        if iops:
            args["iops_size"] = IOPS_SIZE
        self.g.qmp("block_set_io_throttle", args)

    def quiesce(self, iops: int) -> None:
        """Let a cache (rapilog's region, dm-writecache) finish writing back
        what an earlier job left, on the unthrottled disk, so that the next
        measurement starts with an empty cache: waits until the log disk's
        write count stays put for 2 s (rapilog starts writeback within
        writeback_delay_ms=1000). Not measured."""
        self.throttle(0)
        self.sh(f"d=/sys/block/{self.blockname(self.log_dev)}/stat; p=; "
                "for i in $(seq 600); do c=$(awk '{print $5}' $d); [ \"$c\" = \"$p\" ] && exit 0; p=$c; sleep 2; done; "
                "exit 1", timeout=1300)
        self.throttle(iops)

    # --- devices ----------------------------------------------------------------------------
    def setup(self, brd_kib: int = 393216) -> list[str]:
        """Finds the disks and PostgreSQL, brings up pmem and brd; returns
        what identifies the guest (kernel, vCPUs, memory, versions)."""
        self.log_dev = self.sh("disk-by-serial rl-log").strip()
        self.sh(f"[ -b {self.log_dev}3 ]")  # partitions: written by the host (main)
        self.data_dev = self.sh("disk-by-serial rl-data").strip()
        self.pg = self.sh("ls -d /usr/lib/postgresql/*/bin | tail -n 1").strip()
        info = self.sh("uname -r; nproc; grep MemTotal /proc/meminfo; fio --version; "
                       f"{self.pg}/postgres --version").strip().splitlines()
        self.setup_pmem()
        self.setup_brd(brd_kib)
        return info

    def setup_pmem(self) -> None:
        # dm-writecache's pmem mode needs DAX with struct pages: the legacy
        # (memmap=!) namespace is made fsdax with its memmap in RAM.
        self.sh("modprobe nd_e820; modprobe nd_pmem; modprobe dax_pmem; modprobe dm-writecache; "
                "for i in $(seq 50); do [ -b /dev/pmem0 ] && break; sleep 0.1; done; "
                "ndctl create-namespace -f -e namespace0.0 -m fsdax --map=mem >/dev/null && "
                "for i in $(seq 50); do [ -b /dev/pmem0 ] && break; sleep 0.1; done; ls -l /dev/pmem0",
                timeout=180)

    def setup_brd(self, kib: int) -> None:
        # brd allocates a page at the first write to it: written once here,
        # so that every measurement sees its steady state.
        self.sh(f"modprobe brd rd_nr=1 rd_size={kib} && dd if=/dev/zero of=/dev/ram0 bs=1M oflag=direct 2>/dev/null; "
                f"[ $(blockdev --getsize64 /dev/ram0) = {kib * 1024} ]", timeout=600)

    def attach(self, kind: str, protect: str = "window", params: str = "") -> str:
        """Bring up the device under test; returns its /dev path."""
        backing = f"{self.log_dev}{PART.get(kind, '')}"
        if kind == "raw":
            return backing
        if kind == "brd":
            return "/dev/ram0"
        if kind == "rapilog":
            self.sh(INSMOD.format(backing=backing) + f" protect={protect}" + (f" {params}" if params else ""),
                    timeout=180)
            return "/dev/rapilog0"
        if kind == "writecache":
            # A zeroed superblock: dm-writecache starts with an empty cache.
            self.sh("dd if=/dev/zero of=/dev/pmem0 bs=1M count=4 oflag=direct 2>/dev/null && "
                    f"dmsetup create wc --table \"0 $(blockdev --getsz {backing}) writecache p "
                    f"{backing} /dev/pmem0 4096 0\" && dmsetup mknodes wc")
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
        return (f"$(basename $(readlink -f /sys/dev/block/$(printf '%d:%d' 0x$(stat -Lc %t {dev}) "
                f"0x$(stat -Lc %T {dev}))))")

    # --- fio -------------------------------------------------------------------------------------
    def fio(self, dev: str, label: str, round_: int = 0) -> dict:
        common = (f"--output-format=json --filename={dev} --bs=4k --direct=1 --lat_percentiles=1 "
                  f"--percentile_list={bl.FIO_PERCENTILE_ARG}")
        qd1 = (f"fio {common} --name=qd1 --rw=write --ioengine=psync --iodepth=1 --fsync=1 --size=256M "
               f"--time_based --runtime={P['fio_qd1_s']}")
        qd32 = (f"fio {common} --name=qd32 --rw=randwrite --ioengine=libaio --iodepth=32 --fdatasync=32 "
                f"--size={P['fio_qd32_span']} --offset=256M --randrepeat=1")
        res = {}
        for name, cmd in (("qd1", qd1), ("qd32", qd32)):
            out = self.sh(cmd, timeout=600)
            suffix = f"-round{round_ + 1}" if P["fio_rounds"] > 1 else ""
            (self.out / f"fio-{label.replace(' ', '_')}-{name}{suffix}.json").write_text(out)
            res[name] = bl.parse_fio_json(out)[0].__dict__
            self.quiesce(200)
        log(f"fio {label}{f' round {round_ + 1}' if P['fio_rounds'] > 1 else ''}: QD1 {res['qd1']['iops']:.0f} "
            f"IOPS, QD32 {res['qd32']['iops']:.0f} IOPS")
        return res

    def run_fio(self) -> None:
        iops = 200
        self.throttle(iops)
        devices = [("raw 200 IOPS", "raw", None), ("rapilog window", "rapilog", "window"),
                   ("rapilog off", "rapilog", "off"), ("dm-writecache", "writecache", None), ("brd", "brd", None)]
        rounds = self.r.setdefault("fio_rounds", [])
        for k in range(P["fio_rounds"]):
            rounds.append({})
            # Rotated: no device always runs first or after a given one (the
            # host's load drifts).
            for label, kind, protect in devices[k % len(devices):] + devices[:k % len(devices)]:
                dev = self.attach(kind, protect or "window")
                rounds[-1][label] = self.fio(dev, label, k)
                self.detach(kind, iops)
                self.save()
        # The fio table shows each device's median round (by QD1 IOPS).
        self.r["fio"] = {label: m for label, _, _ in devices if (m := bl.median_round(rounds, label)) is not None}
        self.r["scaling"] = bl.scaling_rounds(rounds, FIO_DEVICES) if len(rounds) > 1 else \
            bl.scaling_ratios(self.r["fio"], FIO_DEVICES)
        log(bl.scaling_line(self.r["scaling"]))
        self.save()

    # --- instruction cost (-icount boot) -----------------------------------------------------
    def setup_icount(self) -> None:
        self.log_dev = self.sh("disk-by-serial rl-log").strip()
        self.sh(f"[ -b {self.log_dev}3 ]")
        info = self.sh("uname -r; nproc; grep MemTotal /proc/meminfo; fio --version; "
                       "cat /sys/devices/system/clocksource/clocksource0/current_clocksource").strip().splitlines()
        self.r.setdefault("icount", {})["guest"] = info
        self.setup_pmem()
        self.setup_brd(ICOUNT_BRD_KIB)

    @staticmethod
    def drain_cmd(kind: str) -> str:
        """The guest command that writes a cache back to its disk and waits
        for it ('true' for a device without one)."""
        return {"rapilog": f"{CTL_GUEST} flush >/dev/null", "writecache": "dmsetup message wc 0 flush"}.get(kind, "true")

    def settle(self, kind: str) -> None:
        """Empty a cache before a measured job (not measured): no writeback
        of an earlier job may run during it."""
        self.sh(self.drain_cmd(kind), timeout=600)

    def run_icount(self) -> None:
        res = self.r.setdefault("icount", {})
        res["params"] = {"qemu": " ".join(ICOUNT_QEMU_ARGS), "smp": ICOUNT_SMP, "reps": P["icount_reps"],
                         "jobs": {job: {"bs": bs, "writes": P[key]} for job, _, bs, key in ICOUNT_JOBS}}
        runs = res.setdefault("runs", [])
        for label, kind, protect in ICOUNT_DEVICES:
            dev = self.attach(kind, protect or "window")
            for rep in range(1, P["icount_reps"] + 1):
                for job, _, bs, key in ICOUNT_JOBS:
                    self.settle(kind)
                    # --size: the job ends after exactly that many writes.
                    cmd = (f"fio --output-format=json --name={job} --filename={dev} --rw=write --bs={bs} "
                           f"--size={P[key] * bs} --ioengine=psync --iodepth=1 --direct=1 --fsync=1 "
                           "--clocksource=clock_gettime")
                    out = self.sh(cmd, timeout=900)
                    (self.out / f"icount-{label.replace(' ', '_')}-{job}-run{rep}.json").write_text(out)
                    [j] = bl.parse_fio_icount(out)
                    runs.append({"device": label, "job": job, "rep": rep, **j.__dict__})
                    log(f"icount {label} {job} run {rep}: write {j.write_ns:,.0f} + fsync {j.sync_ns:,.0f} = "
                        f"{j.per_write_ns:,.0f} instructions per write ({j.writes} writes, {j.syncs} fsyncs)")
                    self.save()
            self.detach(kind, 0)

    def run_icount_pg(self) -> None:
        """pgbench's INSERT workload, one client, a fixed number of
        transactions, on each device in turn (WAL on it, the cluster on the
        data disk), under -icount with one vCPU: 10^9 / pgbench's TPS is
        guest ns per transaction; /proc/stat over the run gives the share
        the CPU was busy (sleep=off skips idle time, which still advances
        the clock), so busy ns per transaction = guest instructions per
        transaction. Caches drained and a CHECKPOINT before each run."""
        res = self.r.setdefault("icount_pg", {})
        res.setdefault("runs", [])
        res["params"] = {"qemu": " ".join(ICOUNT_QEMU_ARGS), "smp": ICOUNT_SMP, "transactions": P["icount_pg_tx"],
                         "reps": P["icount_pg_reps"], "scale": P["scale"]}
        self.pg_golden()
        self.g.write_file("/tmp/insert.sql", INSERT_SQL)
        mark = "echo ===; head -n 1 /proc/stat; date +%s%N; echo ==="  # cpu times, guest clock
        for label, kind, protect in ICOUNT_DEVICES:
            dev = self.attach(kind, protect or "window")
            self.pg_prepare(kind, dev)
            port = PG_PORT[kind]
            bench = (f"runuser -u postgres -- {self.pg}/pgbench -h /tmp -p {port} -n -M prepared -c 1 -j 1 "
                     f"{WORKLOADS['insert'][1]} bench")
            self.sh(f"{bench} -t 200 >/dev/null 2>&1", timeout=900)  # warm-up, not counted
            for rep in range(1, P["icount_pg_reps"] + 1):
                self.sh(self.pgsu(f"psql -h /tmp -p {port} -d bench -q -c CHECKPOINT"), timeout=300)
                self.settle(kind)
                # Marks around the run and around the drain of what the cache
                # still holds after it.
                out = self.sh(f"{mark}; {bench} -t {P['icount_pg_tx']} 2>&1; {mark}; {self.drain_cmd(kind)}; {mark}",
                              timeout=1800)
                _, m0, text, m1, _, m2, _ = out.split("===")
                (self.out / f"icount-pg-{label.replace(' ', '_')}-run{rep}.txt").write_text(text)
                pr = bl.parse_pgbench(text)
                marks = [(bl.parse_proc_stat_cpu(m), int(m.split()[-1])) for m in (m0, m1, m2)]
                busy = bl.busy_share(marks[0][0], marks[1][0])
                ns = 1e9 / pr.tps  # one client: its mean latency, to more digits than pgbench prints it
                # With writeback: busy guest ns from the run's start to the drain's end.
                with_wb = (marks[2][1] - marks[0][1]) * bl.busy_share(marks[0][0], marks[2][0]) / pr.transactions
                res["runs"].append({"device": label, "rep": rep, "transactions": pr.transactions, "tps": pr.tps,
                                    "ns_per_tx": ns, "busy": busy, "insns_per_tx": ns * busy,
                                    "insns_per_tx_with_writeback": with_wb, "failed": pr.failed})
                log(f"icount pgbench INSERT {label} run {rep}: {ns:,.0f} guest ns per transaction, "
                    f"{100 * busy:.1f} % busy: {ns * busy:,.0f} instructions per transaction, "
                    f"{with_wb:,.0f} with the writeback of its data ({pr.transactions} transactions)")
                self.save()
            self.sh(self.pgsu(f"pg_ctl -D /data/pg-{kind} -w -t 300 stop") + f" >/dev/null && umount /mnt/wal-{kind}",
                    timeout=320)
            self.detach(kind, 0)

    # --- drain bandwidth ------------------------------------------------------------------------
    def ctl_json(self, args: str) -> dict:
        return bl.json_doc(self.sh(f"{CTL_GUEST} {args} --json 2>/tmp/ctl.err || {{ cat /tmp/ctl.err; exit 1; }}",
                                   timeout=600))

    def run_drain(self) -> None:
        """fio's best sequential bandwidth on the raw partition against
        rapilog's drain of a filled region, both on the unthrottled disk;
        then the dirty bound the power-fail path sets (powerfail=nmi)."""
        self.throttle(0)
        res = self.r.setdefault("drain", {})
        raw = f"{self.log_dev}{PART['raw']}"
        bw = {}
        for qd in P["drain_qds"]:
            out = self.sh(f"fio --output-format=json --name=seq-qd{qd} --filename={raw} --rw=write --bs=1M "
                          f"--ioengine=libaio --iodepth={qd} --direct=1 --size=448M --time_based "
                          f"--runtime={P['drain_fio_s']}", timeout=300)
            (self.out / f"drain-raw-qd{qd}.json").write_text(out)
            bw[qd] = bl.fio_write_bw(out)
            log(f"drain: raw partition 1 MiB sequential writes QD{qd}: {bw[qd] / 1e6:.1f} MB/s (emulated)")
        # Writeback held back (writeback_delay_ms=60000, the maximum); it
        # also starts once an eighth of the ring is dirty, so the fill stays
        # below that.
        dev = self.attach("rapilog", "window", "writeback_delay_ms=60000")
        ring = int(self.ctl_json("status")["ring"]["ring_bytes"])
        fill = min(P["drain_fill_mib"], ring // 8 // (1 << 20) - 1)
        drains = []
        for _ in range(P["drain_reps"]):
            wb0 = self.ctl_json("status")["writeback"]["bytes"]
            self.sh(f"dd if=/dev/zero of={dev} bs=1M count={fill} oflag=direct 2>/dev/null", timeout=600)
            before = self.ctl_json("status")
            out = self.sh(f"s=$(date +%s%N); {CTL_GUEST} flush --json >/tmp/flush.json 2>/tmp/flush.err; rc=$?; "
                          "e=$(date +%s%N); cat /tmp/flush.err >&2; echo \"wall_ns $((e - s))\"; cat /tmp/flush.json; "
                          "exit $rc", timeout=600)
            flush = bl.json_doc(out.split("wall_ns ", 1)[1])
            flush["wall_s"] = int(out.split("wall_ns ", 1)[1].split()[0]) / 1e9
            flush["writeback_bytes_before"] = before["writeback"]["bytes"] - wb0  # during the fill: 0
            drains.append(flush)
            log(f"drain: rapilogctl flush of {fill} MiB: {flush['written_back_bytes'] / flush['duration_us']:.1f} "
                f"MB/s (emulated; {flush['written_back_ios']} writes, {flush['writeback_bytes_before']} bytes written "
                "back during the fill)")
        after = self.ctl_json("status")
        self.detach("rapilog", 0)
        # The median drain of the repetitions.
        med = sorted(drains, key=lambda f: f["written_back_bytes"] / max(f["duration_us"], 1))[len(drains) // 2]
        s = bl.drain_summary(bw, med, med["wall_s"])
        s.update({"fill_bytes": fill << 20, "ring_bytes": ring, "flush": med, "flushes": drains,
                  "writeback_bytes_before_flush": med["writeback_bytes_before"],
                  "status_after": {k: after[k] for k in ("ring", "writeback", "power_fail")}})
        res.update(s)
        # The dirty bound: with a power-fail signal armed the module bounds
        # dirty data to what drains in half the hold-up time at the
        # bandwidth writeback measured; a fio job gives it batches to measure.
        dev = self.attach("rapilog", "window", "powerfail=nmi")
        out = self.sh(f"fio --output-format=json --name=bound --filename={dev} --rw=write --bs=1M --ioengine=libaio "
                      f"--iodepth=16 --direct=1 --size=448M --time_based --runtime={P['drain_fio_s']}", timeout=300)
        (self.out / "drain-bound-fio.json").write_text(out)
        st = self.ctl_json("status")
        text = self.sh(f"{CTL_GUEST} status")
        (self.out / "drain-bound-status.txt").write_text(text)
        self.detach("rapilog", 0)
        res["bound"] = st["power_fail"]
        res["bound_fio_bytes_per_s"] = bl.fio_write_bw(out)
        res["bound_status_line"] = next((l.strip() for l in text.splitlines() if l.startswith("power-fail")), "")
        log(bl.drain_line(res, res["bound"]))
        self.save()

    # --- PostgreSQL ---------------------------------------------------------------------------
    def pgsu(self, cmd: str) -> str:
        return f"runuser -u postgres -- {self.pg}/{cmd}"

    def pg_golden(self) -> None:
        """A cluster with pgbench's tables on the data disk, kept as a copy
        (made once per boot)."""
        if self.sh("[ -d /data/golden ] && echo yes || true").strip() == "yes":
            return
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

    def pg_prepare(self, kind: str, dev: str) -> None:
        """ext4 on dev at /mnt/wal-KIND; a copy of the cluster in /data/pg-KIND
        with its pg_wal there; started (synchronous_commit=on; (b) sets it off
        per session)."""
        d, w = f"/data/pg-{kind}", f"/mnt/wal-{kind}"
        # -T default -b 4096: the same file system on every device. mke2fs
        # otherwise picks its "small" type (1 KiB blocks) below 512 MiB,
        # which brd (384 MiB) and rapilog0 (its 512 MiB partition less the
        # marker area) are and dm-writecache's 512 MiB is not: each 8 KiB
        # WAL write then costs 1 KiB-block work on some devices only.
        self.sh(f"mkfs.ext4 -q -F -T default -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 {dev} && "
                f"mkdir -p {w} && "
                f"mount -o noatime,lazytime {dev} {w} && mkdir {w}/pg_wal && "
                f"rm -rf {d} && cp -a /data/golden {d} && cp -a --sparse=never {d}/pg_wal/. {w}/pg_wal/ && "
                f"rm -rf {d}/pg_wal && ln -s {w}/pg_wal {d}/pg_wal && chown -R postgres: {w}", timeout=600)
        self.sh(self.pgsu(f"pg_ctl -D {d} -l /tmp/pg-{kind}.log -w -t 300 "
                          f"-o '-p {PG_PORT[kind]} -c synchronous_commit=on' start") + " >/dev/null", timeout=320)

    def pg_test_fsync(self, profile: str, kind: str) -> None:
        out = self.sh(f"{self.pg}/pg_test_fsync -f /mnt/wal-{kind}/pg_test_fsync.out -s {P['pg_test_fsync_s']}; "
                      f"rm -f /mnt/wal-{kind}/pg_test_fsync.out", timeout=600)
        (self.out / f"pg_test_fsync-{profile.split()[0]}-{kind}.txt").write_text(out)
        res = bl.parse_pg_test_fsync(out)
        self.quiesce(int(profile.split()[0]))
        self.r.setdefault("pg_test_fsync", []).append({"profile": profile, "device": kind, "methods": res})
        log(f"pg_test_fsync {profile} {kind}: fdatasync {res.get('fdatasync', (0, 0))[0]:.0f} ops/s")
        self.save()

    def pgbench_run(self, profile: str, config: str, wl: str, n: int, rep: int) -> None:
        """One pgbench run of one configuration; the log disk partition's and the
        front device's /sys/block stat deltas over it, its writeback included."""
        kind, sync = CONFIGS[config]
        port = PG_PORT[kind]
        part = f"/sys/class/block/{self.blockname(self.front[kind])}/stat"
        disk = f"/sys/class/block/{self.blockname(self.log_dev + str(PART[kind]))}/stat" if kind in PART else part
        # The previous run ended with every cache drained (quiesce); the
        # checkpoint's own WAL record may be written back within this run.
        self.sh(self.pgsu(f"psql -h /tmp -p {port} -d bench -q -c CHECKPOINT"), timeout=300)
        before = self.sh(f"cat {disk} {part}").strip().splitlines()
        env = f"env PGOPTIONS='-c synchronous_commit={sync}' "
        out = self.sh(f"runuser -u postgres -- {env}{self.pg}/pgbench -h /tmp -p {port} -n -M prepared -c {n} "
                      f"-j {min(n, 2)} -T {P['duration']} {WORKLOADS[wl][1]} bench 2>&1",
                      timeout=P["duration"] * 4 + 120)
        self.quiesce(int(profile.split()[0]))
        after = self.sh(f"cat {disk} {part}").strip().splitlines()
        pr = bl.parse_pgbench(out)
        dd = bl.diskstat_delta(bl.parse_diskstat(before[0]), bl.parse_diskstat(after[0]))
        fd = bl.diskstat_delta(bl.parse_diskstat(before[1]), bl.parse_diskstat(after[1]))
        self.r.setdefault("pgbench", []).append({
            "workload": wl, "profile": profile, "config": config, "clients": n, "rep": rep, "tps": pr.tps,
            "transactions": pr.transactions, "latency_ms": pr.latency_ms, "failed": pr.failed,
            "disk_writes": dd.writes, "disk_sectors": dd.sectors, "disk_flushes": dd.flushes,
            "front_writes": fd.writes, "front_sectors": fd.sectors, "front_flushes": fd.flushes})
        log(f"pgbench {wl:6s} {profile} ({config}) {n:2d} clients rep {rep}: {pr.tps:8.1f} TPS, "
            f"{dd.writes} disk writes for {pr.transactions} transactions")
        self.save()

    def run_pg(self) -> None:
        self.pg_golden()
        self.g.write_file("/tmp/insert.sql", INSERT_SQL)
        self.throttle(P["profiles"][0])
        t = time.monotonic()
        self.front = {}
        for kind in ("raw", "rapilog", "writecache", "brd"):
            self.front[kind] = self.attach(kind)
            self.pg_prepare(kind, self.front[kind])
        self.quiesce(P["profiles"][0])
        log(f"4 PostgreSQL clusters up (WAL on raw, rapilog, dm-writecache, brd) in {time.monotonic() - t:.0f} s")
        for iops in P["profiles"]:
            profile = f"{iops} IOPS"
            first = iops == P["profiles"][0]
            self.throttle(iops)
            for kind in ("raw", "rapilog", "writecache", "brd"):
                if kind != "brd" or first:
                    self.pg_test_fsync(profile, kind)
            configs = [c for c in CONFIGS if c != "e" or first]  # brd does not depend on the disk
            t = time.monotonic()
            for i, (rep, wl, n) in enumerate(itertools.product(range(P["reps"]), P["workloads"], P["clients"])):
                k = i % len(configs)  # rotated: no configuration always runs first or after a given one
                for c in configs[k:] + configs[:k]:
                    self.pgbench_run(profile, c, wl, n, rep)
            log(f"{profile}: pgbench done in {time.monotonic() - t:.0f} s")
        for kind in ("raw", "rapilog", "writecache", "brd"):
            self.sh(self.pgsu(f"pg_ctl -D /data/pg-{kind} -w -t 300 stop") + f" >/dev/null && umount /mnt/wal-{kind}",
                    timeout=320)
            self.detach(kind, P["profiles"][-1])

    def drain_caches(self) -> None:
        """Both caches written back and empty (not measured): rapilog's
        region and dm-writecache's pmem, so that no run inherits an earlier
        run's writeback (dm-writecache writes back only above its high
        watermark, or when told to)."""
        self.throttle(0)
        self.sh(f"{self.drain_cmd('rapilog')} && {self.drain_cmd('writecache')}", timeout=600)
        self.throttle(P["profiles"][0])

    def rank_run(self, config: str, n: int, duration: int) -> dict:
        kind, sync = CONFIGS[config]
        self.sh(self.pgsu(f"psql -h /tmp -p {PG_PORT[kind]} -d bench -q -c CHECKPOINT"), timeout=300)
        self.drain_caches()
        out = self.sh(f"runuser -u postgres -- env PGOPTIONS='-c synchronous_commit={sync}' {self.pg}/pgbench "
                      f"-h /tmp -p {PG_PORT[kind]} -n -M prepared -c {n} -j {min(n, 2)} -T {duration} "
                      f"{WORKLOADS['insert'][1]} bench 2>&1", timeout=duration * 4 + 120)
        pr = bl.parse_pgbench(out)
        return {"config": config, "clients": n, "tps": pr.tps, "transactions": pr.transactions,
                "latency_ms": pr.latency_ms, "failed": pr.failed}

    def run_rank(self) -> None:
        """pgbench's INSERT workload on rapilog, dm-writecache and brd at
        each client count, P['rank_reps'] times: the configurations rotate
        at each point and the repetitions are separate passes (the host's
        drift hits all alike); a CHECKPOINT and empty caches before each
        run; one unmeasured warm-up run per configuration first."""
        res = self.r.setdefault("rank", {"runs": []})
        self.pg_golden()
        self.g.write_file("/tmp/insert.sql", INSERT_SQL)
        self.throttle(P["profiles"][0])
        kinds = [CONFIGS[c][0] for c in RANK_CONFIGS]
        for kind in kinds:
            self.pg_prepare(kind, self.attach(kind))
        for c in RANK_CONFIGS:
            w = self.rank_run(c, max(P["rank_clients"]), P["rank_warmup"])
            log(f"rank warm-up ({c}): {w['tps']:.0f} TPS (not counted)")
        t = time.monotonic()
        for i, (rep, n) in enumerate(itertools.product(range(P["rank_reps"]), P["rank_clients"])):
            k = i % len(RANK_CONFIGS)
            for c in RANK_CONFIGS[k:] + RANK_CONFIGS[:k]:
                x = self.rank_run(c, n, P["rank_duration"])
                res["runs"].append({**x, "rep": rep})
                log(f"rank INSERT ({c}) {RANK_LABELS[c]:13s} {n:2d} clients rep {rep}: {x['tps']:8.1f} TPS")
                self.save()
        res["seconds"] = time.monotonic() - t
        for kind in kinds:
            self.sh(self.pgsu(f"pg_ctl -D /data/pg-{kind} -w -t 300 stop") + f" >/dev/null && umount /mnt/wal-{kind}",
                    timeout=320)
            self.detach(kind, P["profiles"][-1])
        for line in rank_report(res, P)[1]:
            log(line)
        self.save()


def rank_report(res: dict, params: dict) -> tuple[str, list[str], list[list]]:
    """The ranking section of results.md, its verdict lines, its CSV rows."""
    runs = res.get("runs") or []
    summ = bl.rank_summary(runs)
    clients = sorted({int(x["clients"]) for x in runs})
    configs = [c for c in RANK_CONFIGS if any(x["config"] == c for x in runs)]
    refs = [c for c in RANK_TARGETS if c in configs]
    table, rows = bl.rank_table(summ, configs, clients, "c", refs)
    verdict = bl.rank_verdict(summ, clients, "c", {c: RANK_TARGETS[c] for c in refs}, RANK_LABELS)
    verdict += bl.rank_paired_lines(bl.rank_paired(runs, "c", refs), clients, "c", refs, RANK_LABELS)
    head = (f"### pgbench {WORKLOADS['insert'][0]}: ranking (log disk {params.get('profiles', ['?'])[0]} "
            f"requests/s; {params.get('rank_reps', '?')} repetitions of {params.get('rank_duration', '?')} s per "
            "point, caches empty and a CHECKPOINT before each; emulated: QEMU TCG wall clock)\n\n"
            + ", ".join(f"({c}) {RANK_LABELS[c]}" for c in configs) + "\n\n")
    return head + table + "\n\n" + "\n".join(f"- {v}" for v in verdict), verdict, rows


# --- report -----------------------------------------------------------------------------------
def report(out: Path) -> str:
    r = json.loads((out / "results.json").read_text())
    md = []
    meta = r.get("meta", {})
    if "guest" not in r and "icount" in r:  # --only icount
        r["guest"] = r["icount"].get("guest")
    if "guest" not in r and "icount_pg" in r:  # --only icount-pg
        r["guest"] = r["icount_pg"].get("guest")
    md.append(f"Run {meta.get('date', '?')} ({meta.get('mode', '?')} mode): host CPU {meta.get('cpu', '?')}, "
              f"{meta.get('host_cores', '?')} host cores, QEMU TCG guest ({(r.get('guest') or ['?'])[0]}, "
              f"{(r.get('guest') or ['', '?'])[1]} vCPUs); module {meta.get('module', '?')}; "
              f"parameters {json.dumps(meta.get('params', {}))}; wall clock {meta.get('wall_s', 0) / 60:.1f} min.")
    if "icount" in r:
        md.append(icount_report(r["icount"], out))
    if "icount_pg" in r:
        md.append(icount_pg_report(r["icount_pg"]))
    if "fio" in r:
        fio = {dev: {qd: bl.FioResult(**{**v, "write_lat": {float(k): x for k, x in v["write_lat"].items()},
                                          "sync_lat": {float(k): x for k, x in v["sync_lat"].items()}})
                     for qd, v in d.items()} for dev, d in r["fio"].items()}
        table, rows = bl.fio_table(fio, FIO_DEVICES)
        (out / "fio.csv").write_text(bl.to_csv(rows[0], rows[1:]))
        md.append("### fio: 4 KiB write + fsync at QD1, 4 KiB random writes at QD32 (200-IOPS log disk)\n\n" + table)
        rw, rr, b = fio.get("rapilog window"), fio.get("raw 200 IOPS"), fio.get("brd")
        if rw and rr and b:
            def rat(dev, ref, p):
                return bl.ratio(dev["qd1"].commit_lat(p), ref["qd1"].commit_lat(p))
            md.append("QD1 write+fsync latency, rapilog (protect=window) / brd: "
                      f"p50 {bl.fmt(rat(rw, b, 50.0))}, p99 {bl.fmt(rat(rw, b, 99.0))}; rapilog / raw disk: "
                      f"p50 {bl.fmt(rat(rw, rr, 50.0))} (1/{bl.fmt(1 / rat(rw, rr, 50.0))}), "
                      f"p99 {bl.fmt(rat(rw, rr, 99.0))} (1/{bl.fmt(1 / rat(rw, rr, 99.0))}).")
        md.append(bl.scaling_line(r.get("scaling") or bl.scaling_ratios(fio, FIO_DEVICES)))
    if "drain" in r:
        d = r["drain"]
        md.append("### Drain bandwidth (emulated: QEMU TCG wall clock)\n\n" + bl.drain_line(d, d.get("bound")) +
                  f"\n\nThe region held {bl.fmt(d['fill_bytes'] / (1 << 20))} MiB (below an eighth of the "
                  f"{bl.fmt(d['ring_bytes'] / (1 << 20))} MiB ring, where writeback starts by itself; "
                  f"{d['writeback_bytes_before_flush']} bytes written back during the fill) at "
                  f"writeback_delay_ms=60000; the median of {len(d.get('flushes') or [1])} fill + flush cycles "
                  "(" + ", ".join(bl.fmt(f["written_back_bytes"] / f["duration_us"]) for f in d.get("flushes") or []) +
                  f" MB/s): `rapilogctl flush` wrote back {bl.fmt(d['drain_bytes'] / (1 << 20))} MiB "
                  f"in {d['flush'].get('written_back_ios')} writes; with process start and exit "
                  f"{bl.fmt(d['drain_wall_bytes_per_s'] / 1e6)} MB/s. Status after the flush: writeback "
                  f"{bl.fmt((d['status_after']['writeback'].get('busy_bytes_per_s') or 0) / 1e6)} MB/s while busy, "
                  f"bandwidth estimate {bl.fmt((d['status_after']['power_fail'].get('writeback_bandwidth') or 0) / 1e6)}"
                  f" MB/s. fio on rapilog0 with powerfail=nmi (writers held at the dirty bound): "
                  f"{bl.fmt(d.get('bound_fio_bytes_per_s', float('nan')) / 1e6)} MB/s; status: "
                  f"`{d.get('bound_status_line', '')}`.")
    if "pg_test_fsync" in r:
        res = {(x["profile"], x["device"]): {k: tuple(v) for k, v in x["methods"].items()} for x in r["pg_test_fsync"]}
        order = list(res)
        ref = next((k for k in order if k[1] == "brd"), None)
        table, rows = bl.fsync_table(res, order, ref)
        (out / "pg_test_fsync.csv").write_text(bl.to_csv(rows[0], rows[1:]))
        md.append("### pg_test_fsync: one 8 kB write + fdatasync (WAL file system on the device)\n\n" + table)
    if (r.get("rank") or {}).get("runs"):
        text, _, rows = rank_report(r["rank"], meta.get("params", P))
        (out / "rank.csv").write_text(bl.to_csv(rows[0], rows[1:]))
        md.append(text)
    all_runs = r.get("pgbench") or []
    for x in all_runs:
        x.setdefault("workload", "tpcb")
    if all_runs:
        keys = sorted({k for x in all_runs for k in x})
        (out / "pgbench-runs.csv").write_text(bl.to_csv(keys, [[x.get(k) for k in keys] for x in all_runs]))
    for wl in dict.fromkeys(x["workload"] for x in all_runs):
        runs = [x for x in all_runs if x["workload"] == wl]
        summ = bl.pgbench_summary(runs)
        profiles = list(dict.fromkeys(x["profile"] for x in runs))
        clients = sorted({int(x["clients"]) for x in runs})
        configs = [c for c in CONFIGS if any(x["config"] == c for x in runs)]
        shared = {"e": next((x["profile"] for x in runs if x["config"] == "e"), profiles[0])}
        all_rows = []
        for prof in profiles:
            table, rows = bl.pgbench_table(summ, prof, configs, clients, shared=shared)
            all_rows += rows[1:] if all_rows else rows
            md.append(f"### pgbench {WORKLOADS[wl][0]}: TPS, log disk {prof} (median of {r.get('meta', {}).get('params', {}).get('reps', '?')}"
                      f" runs; (e) brd measured once)\n\n" + table)
        (out / f"pgbench-{wl}.csv").write_text(bl.to_csv(all_rows[0], all_rows[1:]))
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
        (out / f"writeback-{wl}.csv").write_text(bl.to_csv(hdr, csv_rows))
        md.append(f"### pgbench {WORKLOADS[wl][0]}: log disk writes per committed transaction and average "
                  "write size (/sys/block/*/stat of the log disk, all repetitions)\n\n" + bl.markdown_table(hdr, rows))
    text = "\n\n".join(md) + "\n"
    (out / "results.md").write_text(text)
    try:
        import plot
        for p in plot.plots(r, out, CONFIG_LABEL, FIO_DEVICES, {k: v[0] for k, v in WORKLOADS.items()}):
            log(f"plot: {p}")
    except ImportError as e:
        log(f"no plots ({e}); install matplotlib into .cache/venv")
    return text


def icount_report(ic: dict, out: Path) -> str:
    """The instruction-cost section of results.md (and icount.csv)."""
    labels = [label for label, _, _ in ICOUNT_DEVICES]
    jobs = [(job, name) for job, name, _, _ in ICOUNT_JOBS]
    for x in ic.get("runs") or []:  # results.json of a run before write_clat_ns: from its fio output
        f = out / f"icount-{x['device'].replace(' ', '_')}-{x['job']}-run{x['rep']}.json"
        if "write_clat_ns" not in x and f.exists():
            x["write_clat_ns"] = bl.parse_fio_icount(f.read_text())[0].write_clat_ns
    table, rows = bl.icount_table(ic.get("runs") or [], labels, jobs)
    (out / "icount.csv").write_text(bl.to_csv(rows[0], rows[1:]))
    prm = ic.get("params", {})
    guest = ic.get("guest") or []
    return ("### Instruction cost: guest instructions per write + fsync at QD1 (QEMU "
            f"`{prm.get('qemu', '-icount shift=0,sleep=off')}`, {prm.get('smp', '?')} vCPU)\n\n" + table +
            "\n\nfio psync, O_DIRECT, fsync=1, sequential: "
            + ", ".join(f"{name} x {prm.get('jobs', {}).get(job, {}).get('writes', '?')}" for job, name in jobs) +
            f", {prm.get('reps', '?')} runs each in one boot; write = fio's mean write latency (lat_ns), fsync = "
            "mean fsync latency, in ns of the icount clock = guest instructions (1 ns per instruction). "
            f"Largest difference between runs: {bl.fmt(100 * bl.icount_spread(ic.get('runs') or []))} %. "
            f"Guest clocksource {guest[-1] if guest else '?'}; icount boot "
            f"{bl.fmt(ic.get('wall_s', float('nan')))} s wall clock.")


def icount_pg_report(ic: dict) -> str:
    """The pgbench-under-icount section of results.md."""
    table, _ = bl.icount_pg_table(ic.get("runs") or [], [label for label, _, _ in ICOUNT_DEVICES])
    prm = ic.get("params", {})
    return ("### pgbench one-row INSERT per transaction under QEMU "
            f"`{prm.get('qemu', '-icount shift=0,sleep=off')}` ({prm.get('smp', '?')} vCPU): guest instructions "
            "per transaction\n\n" + table +
            f"\n\n1 client, {prm.get('transactions', '?')} transactions per run, {prm.get('reps', '?')} runs per "
            "device (median shown), WAL on ext4 on the device, synchronous commit, the cluster on the data disk; "
            "guest ns per transaction = 10^9 / pgbench's TPS on the icount clock (one client); busy = non-idle share of "
            "/proc/stat over the run; instructions = the two multiplied; with writeback = busy guest ns from the "
            "run's start to the end of a drain of the cache after it (`rapilogctl flush`, `dmsetup message wc 0 "
            "flush`; dm-writecache writes back only when told or above its watermark, rapilog within 1 s), per "
            "transaction. "
            f"Boot {bl.fmt(ic.get('wall_s', float('nan')))} s wall clock.")


@contextlib.contextmanager
def icount_bench(out: Path, results: dict, ko: str, ctl: str, name: str, data_disk: bool = False):
    """A Bench on a guest booted under -icount (ICOUNT_SMP vCPU, no disk
    throttle) with the log disk and, if asked, a data disk; the images are
    removed afterwards."""
    from rapilog_harness import LOG_ROOT, Disk, Guest, scaled
    log_img, data_img = out / f"{name}-log.img", out / f"{name}-data.img"
    make_log_image(log_img)
    disks = [Disk(log_img, serial="rl-log")]
    if data_disk:
        data_img.unlink(missing_ok=True)
        disks.append(Disk(data_img, serial="rl-data", size="4G", cache="unsafe"))
    try:
        with Guest(name, krel=KREL, mem="2G", smp=ICOUNT_SMP, memmap=REGION_BOOT, append=f"memmap={PMEM_BOOT}",
                   disks=disks, rootfs=["postgresql"], files={KO_GUEST: ko, CTL_GUEST: ctl},
                   qemu_args=ICOUNT_QEMU_ARGS, log_dir=LOG_ROOT / name, boot_timeout=scaled(600)) as g:
            g.boot()
            log(f"{name} guest booted in {g.ready_times[-1]:.1f} s (logs: {g.log_dir})")
            b = Bench(g, out, results)
            b.throttled = False
            yield b
    finally:
        log_img.unlink(missing_ok=True)
        data_img.unlink(missing_ok=True)


def run_icount_pg_boot(out: Path, results: dict, ko: str, ctl: str) -> None:
    """pgbench under -icount: its own guest boot, with a data disk."""
    t = time.monotonic()
    with icount_bench(out, results, ko, ctl, "bench-icount-pg", data_disk=True) as b:
        results.setdefault("icount_pg", {})["guest"] = b.setup(ICOUNT_PG_BRD_KIB)
        b.run_icount_pg()
        results["icount_pg"]["wall_s"] = time.monotonic() - t
        b.save()
    log(f"pgbench instruction section: {time.monotonic() - t:.0f} s")


def make_log_image(path: Path) -> None:
    """The log disk: three 512 MiB partitions (raw, rapilog's, dm-writecache's)."""
    path.unlink(missing_ok=True)
    part_sectors = 512 << 11  # 512 MiB
    with open(path, "wb") as f:
        f.truncate((3 * part_sectors + 2048) * 512)
        f.write(bl.mbr([(2048 + i * part_sectors, part_sectors) for i in range(3)]))


def rapilogctl_path() -> str:
    """$RAPILOG_CTL, or rapilogctl built from the tree (cargo, release)."""
    if os.environ.get("RAPILOG_CTL"):
        return os.environ["RAPILOG_CTL"]
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "rapilogctl"], cwd=REPO, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"], cwd=REPO, check=True,
                                     stdout=subprocess.PIPE).stdout)
    return f"{meta['target_directory']}/release/rapilogctl"


def run_icount_boot(out: Path, results: dict, ko: str, ctl: str) -> None:
    """The instruction-cost section: its own guest boot under -icount."""
    t = time.monotonic()
    with icount_bench(out, results, ko, ctl, "bench-icount") as b:
        b.setup_icount()
        b.run_icount()
        results["icount"]["wall_s"] = time.monotonic() - t
        b.save()
    log(f"instruction cost section: {time.monotonic() - t:.0f} s")


def ensure_matplotlib() -> None:
    """Re-run under the project venv with matplotlib (installed once, from PyPI)."""
    venv_py = Path(os.environ.get("RAPILOG_CACHE") or REPO / ".cache") / "venv" / "bin" / "python"
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
    ap.add_argument("--only", choices=["icount", "icount-pg", "profile", "fio", "drain", "pg", "rank"],
                    help="run one part only: icount (its own boot), icount-pg (pgbench under -icount, its own "
                         "boot), profile (its own boot, not part of a full run), fio (with the scaling line), "
                         "drain, pg, rank (the pgbench ranking)")
    args = ap.parse_args()
    ensure_matplotlib()
    if args.report:
        print(report(Path(args.report)))
        return 0

    from rapilog_harness import LOG_ROOT, Disk, Guest
    t_start = time.time()
    now = datetime.datetime.now()
    out = Path(args.out) if args.out else (REPO / ".cache" / "bench" / now.strftime("%Y-%m-%d") /
                                            (MODE + (f"-{args.only}" if args.only else "")))
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
    ctl = rapilogctl_path()
    results["meta"]["rapilogctl"] = ctl
    results["meta"]["only"] = args.only
    if args.only == "profile":
        import insn_profile
        print(insn_profile.run_profile_boot(sys.modules[__name__], out, results, ko, ctl), flush=True)
        results["meta"]["wall_s"] = time.time() - t_start
        (out / "results.json").write_text(json.dumps(results, indent=1))
        log(f"done: profile took {(time.time() - t_start) / 60:.1f} min; results in {out}")
        return 0
    if args.only in (None, "icount"):
        run_icount_boot(out, results, ko, ctl)
        print(icount_report(results["icount"], out), flush=True)
    if args.only in (None, "icount-pg"):
        run_icount_pg_boot(out, results, ko, ctl)
        print(icount_pg_report(results["icount_pg"]), flush=True)
    if args.only in ("icount", "icount-pg"):
        results["meta"]["wall_s"] = time.time() - t_start
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print()
        print(report(out))
        log(f"done: instruction cost took {(time.time() - t_start) / 60:.1f} min; results in {out}")
        return 0
    disks = [Disk(out / "log.img", serial="rl-log", size=None, iops=P["profiles"][0], iops_size=IOPS_SIZE,
                  extra=f"throttling.bps-total={DISK_BPS}"),
             Disk(out / "data.img", serial="rl-data", size="4G", cache="unsafe")]
    for d in disks:
        Path(d.path).unlink(missing_ok=True)
    make_log_image(Path(disks[0].path))
    try:
        with Guest("bench", krel=KREL, mem="2G", memmap=REGION_BOOT, append=f"memmap={PMEM_BOOT}", disks=disks,
                   rootfs=["postgresql"], files={KO_GUEST: ko, CTL_GUEST: ctl}, log_dir=LOG_ROOT / "bench") as g:
            g.boot()
            log(f"guest booted in {g.ready_times[-1]:.1f} s (logs: {g.log_dir})")
            b = Bench(g, out, results)
            results["guest"] = b.setup()
            if args.only in (None, "fio"):
                t = time.monotonic()
                b.run_fio()
                results["meta"]["fio_s"] = time.monotonic() - t
            if args.only in (None, "drain"):
                t = time.monotonic()
                b.run_drain()
                results["meta"]["drain_s"] = time.monotonic() - t
            if args.only in (None, "pg"):
                t = time.monotonic()
                b.run_pg()
                results["meta"]["pg_s"] = time.monotonic() - t
            if args.only in (None, "rank"):
                t = time.monotonic()
                b.run_rank()
                results["meta"]["rank_s"] = time.monotonic() - t
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
