"""`make ha-test`: two machines, DRBD protocol C over rapilog, losing the
primary outright (issue 21 item 3; docs/two-nodes.md).

Two QEMU guests (1 vCPU, 1 GiB each, the stock kernel, the Debian rootfs
with drbd-utils and PostgreSQL) on a private point-to-point network that
stays on the host's loopback (rapilog_harness.network: QEMU `-netdev
dgram` on 127.0.0.1; 10.99.0.1 and 10.99.0.2 in the guests). Each guest
has two log disks throttled to 200 requests/s, each used through a
dm-delay target that delays every write by 5 ms (a disk's write time:
QEMU's throttle alone limits the rate, not the time of one write): one
fronted by rapilog (`/dev/rapilog0`, 64 MiB region), one raw. Two DRBD 8.4 resources
(the kernel's drbd.ko, drbd-utils' drbdadm, which runs its 8.4 front end
for an 8.4 module), protocol C, internal metadata: `rl` on /dev/rapilog0
and `raw` on the raw disk, each with an ext4 file system and a
PostgreSQL cluster (data directory and pg_wal) on the primary.

1. Commit latency: pgbench, one client, one single-row INSERT per
   transaction, synchronous_commit=on, on `raw` and on `rl` (DRBD's
   default flush settings, then disk-flushes and md-flushes off),
   interleaved in rounds (rotated order); per-transaction latencies from pgbench's log.
   Emulated wall clock (QEMU TCG): the ratios are the result.
2. Failover: a client on the secondary commits numbered rows into the
   primary's `rl` cluster over the network and records each id once its
   COMMIT returned success. The host kills the primary's QEMU (SIGKILL:
   its RAM and rapilog region are gone), then the secondary disconnects
   (the kill is the fence), becomes primary, mounts /dev/drbd0 and starts
   PostgreSQL; every acknowledged id must be in the table. Failover time:
   kill -> PostgreSQL on the secondary answers a query (host clock).

Results: printed, and in $RAPILOG_CACHE/test-logs/ha/results.{md,json}.
Asserts outcomes only (rows, exit codes); waits on conditions.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time

import pytest

from rapilog_harness import LOG_ROOT, Disk, Guest, build_module, configure_ipv4, loopback_link, scaled

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="build-rootfs.sh needs root (debootstrap)")

PACKAGES = ("drbd-utils", "postgresql")
KO = "/lib/modules/KREL/extra/rapilog.ko"
MEM = "1G"
REGION_BOOT, REGION_PARAM = "64M$0x30000000", "64M@0x30000000"
DISK_SIZE = "192M"
IOPS = 200  # both log disks: a 10k rpm disk (requests of up to 4 KiB)
# QEMU's throttle limits a rate: a write goes through at once while the
# bucket has room, so a commit every few ms never waits for it. A disk's
# write takes time whatever the rate: each log disk is used through a
# dm-delay target in the guest that delays every write by this much
# (reads and empty flushes not: QEMU's disk has no volatile cache).
WRITE_DELAY_MS = int(os.environ.get("RAPILOG_HA_WRITE_MS", "5"))
NODES = {"a": ("ha-a", "10.99.0.1"), "b": ("ha-b", "10.99.0.2")}
PG_PORT = {"rl": 5432, "raw": 5433}
DRBD_MINOR = {"rl": 0, "raw": 1}
DRBD_PORT = {"rl": 7789, "raw": 7790}
PASS_S = int(os.environ.get("RAPILOG_HA_PASS_S", "8"))  # pgbench -T per run
ROUNDS = int(os.environ.get("RAPILOG_HA_ROUNDS", "3"))
MIN_ACKED = int(os.environ.get("RAPILOG_HA_MIN_ACKED", "40"))  # acknowledged rows before the kill
# Measured configurations: (label, resource, DRBD disk options on both nodes).
DEFAULT_FLUSHES = "disk-flushes yes; md-flushes yes; disk-barrier no;"
NO_FLUSHES = "disk-flushes no; md-flushes no; disk-barrier no;"
CONFIGS = [("DRBD on the raw disk", "raw", DEFAULT_FLUSHES),
           ("DRBD on rapilog", "rl", DEFAULT_FLUSHES),
           ("DRBD on rapilog, disk-flushes/md-flushes no", "rl", NO_FLUSHES)]

PGCONF = """
listen_addresses = '*'
port = {port}
unix_socket_directories = '/tmp'
max_connections = 20
shared_buffers = 32MB
min_wal_size = 32MB
max_wal_size = 64MB
checkpoint_timeout = 1h
autovacuum = off
fsync = on
synchronous_commit = on
wal_sync_method = fdatasync
"""
INSERT_SQL = "INSERT INTO ins (v) VALUES (1);\n"

# On the secondary once the primary is killed; prints "STEP <uptime> what".
# `drbdadm primary` is refused while DRBD still sees the peer as Primary, so
# it is retried until DRBD has noticed the loss. --force would be needed only
# if the local disk were not UpToDate (Consistent or Outdated: e.g. this node
# restarted after the peer died and cannot tell whether it missed writes);
# it is tried only if the plain promotion keeps failing for 120 s, and the
# test reports it.
FAILOVER = """set -u
step() {{ echo "STEP $(cut -d' ' -f1 /proc/uptime) $*"; }}
step killed
t=0
until [ "$(drbdadm cstate rl)" != Connected ]; do t=$((t + 1)); [ $t -gt 3000 ] && exit 3; sleep 0.1; done
step "peer lost: $(drbdadm cstate rl) $(drbdadm dstate rl)"
t=0
until drbdadm primary rl 2>/tmp/promote.err; do
    t=$((t + 1))
    if [ $t -gt 600 ]; then drbdadm primary --force rl || exit 4; step forced; break; fi
    sleep 0.2
done
step "primary: $(drbdadm role rl) $(drbdadm dstate rl)"
mkdir -p /mnt/rl && mount /dev/drbd0 /mnt/rl || exit 5
step mounted
runuser -u postgres -- {pg}/pg_ctl -D /mnt/rl/pg -l /tmp/pg-rl.log -w -t 600 start >/dev/null || exit 6
step "postgres started"
runuser -u postgres -- {pg}/psql -h /tmp -p {port} -qAtX -d postgres -c 'SELECT 1' >/dev/null || exit 7
step "postgres answers"
"""

# The client on the secondary: one psql per row (autocommit: one COMMIT
# each), the id appended to /root/acked only once psql exited 0, i.e. the
# server acknowledged the COMMIT. It stops at the first failure.
CLIENT = """#!/bin/sh
i=0
while [ $i -lt 1000000 ]; do
    i=$((i + 1))
    PGCONNECT_TIMEOUT=5 {psql} -h {host} -p {port} -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \\
        -c "INSERT INTO acked (id) VALUES ($i)" >/dev/null 2>>/root/client.err || break
    echo $i >> /root/acked
done
echo "client: stopped at id $i" >> /root/client.err
"""


def drbd_conf(disks: dict[str, dict[str, str]], options: dict[str, str]) -> str:
    """/etc/drbd.d/ha.res for both nodes; disks[node][res] is the backing
    device, options[res] the disk section."""
    out = ["global { usage-count no; }",
           # Timeouts for an emulated (TCG) peer: 9 s to answer a request,
           # 2 s to answer a ping (defaults 6 s, 0.5 s); a ping every 2 s
           # when idle (default 10 s): a dead peer is noticed within ~4 s.
           "common { net { protocol C; timeout 90; ping-timeout 20; ping-int 2; } }"]
    for res in ("rl", "raw"):
        out.append(f"resource {res} {{")
        out.append(f"  disk {{ {options[res]} }}")
        for node, (host, ip) in NODES.items():
            out.append(f"  on {host} {{ device /dev/drbd{DRBD_MINOR[res]}; disk {disks[node][res]}; "
                       f"meta-disk internal; address {ip}:{DRBD_PORT[res]}; }}")
        out.append("}")
    return "\n".join(out) + "\n"


def wait_for(g: Guest, cond: str, timeout: float, what: str) -> None:
    """Poll a shell condition in the guest until it holds (generous timeouts, no timing asserts)."""
    rc, out = g.run(f"t=0; until {cond}; do t=$((t + 1)); [ $t -gt {int(timeout * 5)} ] && exit 1; sleep 0.2; done",
                    timeout=timeout + scaled(30))
    if rc != 0:
        raise AssertionError(f"{g.name}: no {what} after {timeout:.0f} s ({cond})\n{out}\n"
                             + g.run("cat /proc/drbd")[1])


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def latency_stats(us: list[float]) -> dict:
    return {"n": len(us), "mean_ms": statistics.fmean(us) / 1000, "p50_ms": pct(us, 50) / 1000,
            "p99_ms": pct(us, 99) / 1000, "max_ms": max(us) / 1000}


class Node:
    def __init__(self, key: str, g: Guest):
        self.key, self.g = key, g
        self.host, self.ip = NODES[key]
        self.disks: dict[str, str] = {}

    def sh(self, cmd: str, timeout: float = 120) -> str:
        return self.g.check(cmd, timeout=scaled(timeout))

    def pgsu(self, cmd: str) -> str:
        return f"runuser -u postgres -- {self.pg}/{cmd}"

    def setup(self, region_param: str) -> None:
        """Host name, network, rapilog over the first log disk, drbd.ko."""
        self.sh(f"hostname {self.host}")
        configure_ipv4(self.g, f"{self.ip}/24")
        # Each log disk through dm-delay (WRITE_DELAY_MS per write); no udev:
        # dmsetup makes the /dev/mapper node itself.
        for d in ("log", "raw"):
            self.sh(f"modprobe dm-delay && dev=$(disk-by-serial ha-{d}) && n=$(blockdev --getsz $dev) && "
                    f"dmsetup create slow-{d} --table \"0 $n delay $dev 0 0 $dev 0 {WRITE_DELAY_MS} $dev 0 0\" && "
                    f"dmsetup mknodes slow-{d} && [ -b /dev/mapper/slow-{d} ]")
        self.disks = {"rl": "/dev/rapilog0", "raw": "/dev/mapper/slow-raw"}
        # The identity stays the disk's serial, whichever path reaches it.
        self.sh(f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko region={region_param} "
                "backing=/dev/mapper/slow-log disk_id=serial:ha-log && [ -b /dev/rapilog0 ]", timeout=180)
        # drbdadm locks /var/lock/drbd-147-MINOR (/var/lock -> /run/lock, which
        # nothing creates in this rootfs: no systemd-tmpfiles).
        self.sh("modprobe drbd && grep -q '^version: 8.4' /proc/drbd && mkdir -p /run/lock /var/lib/drbd")
        self.pg = self.sh("ls -d /usr/lib/postgresql/*/bin | tail -n 1").strip()


@pytest.fixture
def nodes(request):
    krel = os.environ.get("RAPILOG_KREL") or None
    ko = build_module(krel) if krel else build_module()
    na, nb = loopback_link()
    guests = {}
    for key, nic in (("a", na), ("b", nb)):
        kw = {"krel": krel} if krel else {}
        guests[key] = Guest(f"ha-{key}", mem=MEM, smp=1, memmap=REGION_BOOT, rootfs=PACKAGES, nics=[nic],
                            disks=[Disk("log.img", serial="ha-log", size=DISK_SIZE, iops=IOPS),
                                   Disk("raw.img", serial="ha-raw", size=DISK_SIZE, iops=IOPS)],
                            files={KO: ko}, log_dir=LOG_ROOT / "ha" / f"guest-{key}", **kw)
    try:
        for g in guests.values():
            g.start()
        for g in guests.values():
            g.wait_booted()
        yield {k: Node(k, g) for k, g in guests.items()}
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        for g in guests.values():
            if failed:
                print(f"\n=== guest {g.name}: logs in {g.log_dir}\n{g.console_tail(30)}")
            g.close()


def write_conf(nodes: dict[str, Node], options: dict[str, str]) -> str:
    conf = drbd_conf({k: n.disks for k, n in nodes.items()}, options)
    for n in nodes.values():
        n.g.write_file("/etc/drbd.d/ha.res", conf.encode())
        n.sh("printf 'include \"drbd.d/*.res\";\\n' > /etc/drbd.conf")
    return conf


def test_drbd_over_rapilog_latency_and_failover(nodes):
    t_test = time.monotonic()
    out_dir = LOG_ROOT / "ha"
    a, b = nodes["a"], nodes["b"]
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "pass_s": PASS_S, "rounds": ROUNDS,
                     "iops": IOPS, "write_delay_ms": WRITE_DELAY_MS, "guest": {"mem": MEM, "smp": 1}}
    for n in (a, b):
        n.setup(REGION_PARAM)
    results["kernel"] = a.sh("uname -r").strip()
    results["drbd"] = a.sh("head -n 1 /proc/drbd").strip()
    # drbd-utils 9's drbdadm execs its 8.4 front end (/usr/lib/drbd/drbdadm-84)
    # when /proc/drbd says 8.4.
    results["drbdadm"] = a.sh("drbdadm --version 2>&1 | grep -E 'DRBDADM_VERSION=|DRBD_KERNEL_VERSION_CODE'").split()
    a.sh("ping -c 2 -W 5 10.99.0.2 >/dev/null")

    # --- DRBD: metadata, connect, skip the initial sync (both disks are zeros) ------------
    conf = write_conf(nodes, {"rl": DEFAULT_FLUSHES, "raw": DEFAULT_FLUSHES})
    results["drbd_conf"] = conf
    for n in (a, b):
        n.sh("for r in rl raw; do yes yes | drbdadm create-md $r >/dev/null 2>&1 || exit 1; done && drbdadm up all",
             timeout=180)
    # Which tools drbdadm runs for this kernel (a dry run prints the commands).
    results["drbdadm_dry_run"] = a.sh("drbdadm -d down rl 2>&1 | head -n 3")
    for n in (a, b):
        for res in ("rl", "raw"):
            wait_for(n.g, f"[ \"$(drbdadm cstate {res})\" = Connected ]", scaled(120), f"{res} connected")
    for res in ("rl", "raw"):
        # Both sides Inconsistent and identical (zeroed images): a new current
        # UUID with a clear bitmap makes both UpToDate without a full sync.
        a.sh(f"drbdadm -- --clear-bitmap new-current-uuid {res}")
        for n in (a, b):
            wait_for(n.g, f"[ \"$(drbdadm dstate {res})\" = UpToDate/UpToDate ]", scaled(120), f"{res} uptodate")
        a.sh(f"drbdadm primary {res}")
    # --- file systems and PostgreSQL clusters on the primary -------------------------------
    a.sh("mkdir -p /var/tmp/tmpl && chown postgres: /var/tmp/tmpl && "
         + a.pgsu("initdb -D /var/tmp/tmpl/pg -A trust -E UTF8 --locale=C --no-sync >/dev/null")
         + " && echo 'host all all 10.99.0.0/24 trust' >> /var/tmp/tmpl/pg/pg_hba.conf", timeout=600)
    for res in ("rl", "raw"):
        d = f"/mnt/{res}"
        a.sh(f"mkfs.ext4 -q -F -J size=4 -E lazy_itable_init=0,lazy_journal_init=0 /dev/drbd{DRBD_MINOR[res]} && "
             f"mkdir -p {d} && mount /dev/drbd{DRBD_MINOR[res]} {d} && cp -a /var/tmp/tmpl/pg {d}/pg && "
             f"echo \"{PGCONF.format(port=PG_PORT[res])}\" >> {d}/pg/postgresql.conf && sync -f {d}", timeout=600)
        a.sh(a.pgsu(f"pg_ctl -D {d}/pg -l /tmp/pg-{res}.log -w -t 600 start") + " >/dev/null", timeout=620)
        a.sh(a.pgsu(f"psql -h /tmp -p {PG_PORT[res]} -qX -v ON_ERROR_STOP=1 -d postgres -c "
                    "'CREATE TABLE ins (id bigserial PRIMARY KEY, v int); CREATE TABLE acked (id int PRIMARY KEY)'"))
    a.g.write_file("/tmp/ins.sql", INSERT_SQL.encode())

    # --- 1. commit latency ------------------------------------------------------------------
    lat: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGS}
    tps: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGS}
    cur_opts = {"rl": DEFAULT_FLUSHES, "raw": DEFAULT_FLUSHES}
    for rnd in range(ROUNDS):
        # Rotated each round (like bench/run.py), so that no configuration
        # always follows the same one while the host's load drifts.
        for i, (label, res, opts) in [(j, CONFIGS[j]) for j in
                                      (k % len(CONFIGS) for k in range(rnd, rnd + len(CONFIGS)))]:
            if cur_opts[res] != opts:
                cur_opts[res] = opts
                write_conf(nodes, cur_opts)
                for n in (a, b):
                    n.sh(f"drbdadm adjust {res}")
            port = PG_PORT[res]
            a.sh(a.pgsu(f"psql -h /tmp -p {port} -qX -d postgres -c CHECKPOINT"), timeout=300)
            prefix = f"/tmp/pgl-{rnd}-{i}"
            outp = a.sh("cd /tmp && " + a.pgsu(f"pgbench -h /tmp -p {port} -n -c 1 -T {PASS_S} -M prepared "
                                                 f"-f /tmp/ins.sql -l --log-prefix={prefix} postgres"),
                        timeout=PASS_S + 300)
            us = [float(line.split()[2]) for line in a.sh(f"cat {prefix}.*").splitlines() if line.strip()]
            assert us, f"pgbench logged no transaction:\n{outp}"
            # Replicated all along: a connection lost under emulation would
            # have measured the primary's disk alone.
            state = a.sh(f"drbdadm cstate {res}; drbdadm dstate {res}").split()
            assert state == ["Connected", "UpToDate/UpToDate"], f"{label}: DRBD {state} after the run"
            lat[label] += us
            tps[label].append(len(us) / PASS_S)
            a.sh(f"rm -f {prefix}.*")
    results["latency"] = {label: latency_stats(us) | {"tps_runs": tps[label]} for label, us in lat.items()}
    if cur_opts["rl"] != DEFAULT_FLUSHES:
        cur_opts["rl"] = DEFAULT_FLUSHES
        write_conf(nodes, cur_opts)
        for n in (a, b):
            n.sh("drbdadm adjust rl")

    # --- 2. failover: the client on the secondary, the primary killed ------------------------
    b.g.write_file("/root/client.sh", CLIENT.format(psql=f"{b.pg}/psql", host=a.ip, port=PG_PORT["rl"]).encode(),
                   0o755)
    b.sh("rm -f /root/acked /root/client.err; touch /root/acked; "
         "setsid /root/client.sh </dev/null >/dev/null 2>&1 & echo $! > /root/client.pid")
    wait_for(b.g, f"[ $(wc -l < /root/acked) -ge {MIN_ACKED} ]", scaled(600), "acknowledged rows")
    t_kill = time.monotonic()
    a.g.kill()  # SIGKILL QEMU: RAM, page cache and the rapilog region gone
    # The secondary: DRBD notices the lost peer (no ping answer: WFConnection),
    # then a plain `drbdadm primary` (its disk is UpToDate: it was connected
    # until the kill); mount (ext4 journal recovery), PostgreSQL's crash
    # recovery, a query. Each step's guest time is printed.
    rc, steps = b.g.run(FAILOVER.format(pg=b.pg, port=PG_PORT["rl"]), timeout=scaled(900))
    forced = re.search(r"^STEP \S+ forced$", steps, re.M) is not None
    assert rc == 0, f"failover on the secondary failed (rc {rc}):\n{steps}"
    t_up = time.monotonic()
    # The client has stopped (its psql fails) or hangs on the dead peer: stop it,
    # then read what it recorded as acknowledged.
    b.sh("kill -- -$(cat /root/client.pid) 2>/dev/null; sleep 1; true")
    acked = {int(x) for x in b.sh("cat /root/acked").split()}
    found = {int(x) for x in b.sh(b.pgsu(f"psql -h /tmp -p {PG_PORT['rl']} -qAtX -d postgres "
                                          "-c 'SELECT id FROM acked'")).split()}
    drbd_state = b.sh("cat /proc/drbd")
    results["failover"] = {"acked": len(acked), "found": len(found), "missing": sorted(acked - found),
                           "found_not_acked": sorted(found - acked), "max_acked": max(acked, default=0),
                           "failover_s": t_up - t_kill, "forced_primary": forced, "steps": steps,
                           "secondary_drbd": drbd_state, "client_err": b.g.run("cat /root/client.err")[1]}
    results["test_s"] = time.monotonic() - t_test
    md = report(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "results.md").write_text(md)
    print(md)
    assert acked, "the client recorded no acknowledged commit"
    assert not (acked - found), f"acknowledged but missing after failover: {sorted(acked - found)}"


def report(r: dict) -> str:
    lines = [f"## DRBD protocol C over rapilog: two QEMU guests ({r['date']})", "",
             f"Kernel {r['kernel']}, {r['drbd']}; 1 vCPU and {r['guest']['mem']} per guest; log disks throttled "
             f"to {r['iops']} requests/s, each write delayed {r.get('write_delay_ms', 0)} ms (dm-delay); "
             "pgbench 1 client, one-row INSERT per transaction, synchronous_commit=on, "
             f"{r['rounds']} x {r['pass_s']} s per configuration (interleaved).", "",
             "Commit latency (emulated: QEMU TCG wall clock; the ratios are the result):", "",
             "| configuration | transactions | TPS | mean ms | p50 ms | p99 ms | max ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in r["latency"].items():
        lines.append(f"| {label} | {s['n']} | {statistics.fmean(s['tps_runs']):.1f} | {s['mean_ms']:.2f} | "
                     f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} |")
    f = r["failover"]
    lines += ["", f"Failover (primary's QEMU killed with SIGKILL): {f['acked']} commits acknowledged to the client, "
              f"{f['found']} rows found on the secondary, {len(f['missing'])} acknowledged rows missing, "
              f"{len(f['found_not_acked'])} found but never acknowledged (in flight at the kill); "
              f"kill -> PostgreSQL on the secondary answers: {f['failover_s']:.1f} s (emulated: TCG wall clock); "
              f"promotion {'needed --force' if f['forced_primary'] else 'without --force'}.",
              "", "Failover steps on the secondary (guest uptime, seconds after the first step):", ""]
    st = [(float(m[1]), m[2]) for m in re.finditer(r"^STEP (\S+) (.*)$", f["steps"], re.M)]
    lines += [f"    +{t - st[0][0]:6.2f} s  {what}" for t, what in st]
    lines += ["", f"Test time {r['test_s']:.0f} s."]
    return "\n".join(lines) + "\n"
