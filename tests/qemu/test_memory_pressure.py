"""No deadlock under memory pressure (rapilog-blk/sys/backing.rs, bio.rs,
kthread.rs).

Writers that find the ring full wait in `/dev/rapilog0` for writeback,
holding their bios, and reclaim may wait for those writes. So writeback
must get its own bios without memory and without I/O: the log disk's bios
come from the disk's private bio set (a mempool reserve no other bio can
drain, where writeback previously shared `fs_bio_set` with the filesystem
bios that wait for it), and the writeback thread allocates in a
`memalloc_noio` scope.

The test drives a small guest (768 MiB, swap off) into memory pressure: a
hog allocates and touches memory until only a few MiB are available, and
keeps it there, while fio writes (direct and through the page cache, more
than the ring holds, to a log disk slower than the writers) and verifies
with crc32c, with `writeback_delay_ms=20` and the hung-task detector at 5
s. fio must complete and verify, no task may be reported blocked, no
allocation failure may involve rapilog, and after the machine is powered
off the host finds on the log disk image exactly what the guest read back
from /dev/rapilog0, plus a known pattern written last. A positive control
at the end shows that the hung-task detector does report a task blocked in
this guest (a write to a frozen filesystem), so its silence during the run
means something. (A writer waiting in `/dev/rapilog0` for ring space waits
uninterruptibly without a timeout, so a stuck writeback shows there; the
block layer's own waits for I/O, and a mempool's wait for a free element,
wake every few seconds and are never reported.)

What it does not show: that the code before the fix deadlocked. That needed
the slab to fail every bio allocation while both reserved bios of
`fs_bio_set` were held by writes waiting for ring space; under TCG the
allocations kept succeeding (the stock kernel has no fault injection for
mempools), so the old code passes this test too. It guards the property,
not the particular bug.
"""
import hashlib
import re

from rapilog_harness import Disk, scaled

REGION = "64M$0x10000000"  # inside the 768 MiB of RAM, below where the initramfs is loaded
REGION_PARAM = "64M@0x10000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
SERIAL = "rl-log"
MIB = 1 << 20
FIO_SPAN = 88 * MIB  # both fio jobs write below this
PATTERN_AT = 96 * MIB
PATTERN = bytes((i * 7 + 13) % 251 for i in range(MIB))
AVAILABLE_FLOOR_MIB = 32  # the hog keeps MemAvailable about this low

# Allocates and touches memory until MemAvailable is down to the floor, then
# keeps it there (memory freed by others is taken again) until killed.
HOG = r"""
import sys, time
floor = int(sys.argv[1]) << 20
chunk = 4 << 20
held = []
def available():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) << 10
def grab():
    while available() > floor + chunk:
        b = bytearray(chunk)
        b[::4096] = b"\x01" * (chunk // 4096)  # touch every page
        held.append(b)
grab()
with open("/tmp/hog.ready", "w") as f:
    f.write("%d MiB held, %d MiB available\n" % (len(held) * chunk >> 20, available() >> 20))
while True:
    time.sleep(0.5)
    grab()
"""

# More than the ring holds (64 MiB region), so writers wait for writeback;
# the buffered job's dirty pages are what reclaim waits for.
FIO = ("fio --output-format=terse --ioengine=psync --bssplit=4k/50:64k/30:256k/20 "
       "--verify=crc32c --verify_fatal=1 --group_reporting --filename=/dev/rapilog0 "
       "--name=direct --direct=1 --rw=randwrite --offset=0 --size=40M "
       "--name=buffered --direct=0 --fsync=16 --rw=write --offset=48M --size=40M")


def rapilog_allocation_failures(log: str) -> list[str]:
    """Each 'page allocation failure' report whose task or trace names rapilog."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "page allocation failure" in line:
            report = "\n".join(lines[i:i + 60])
            if "rapilog" in report:
                found.append(report)
    return found


def test_fio_verifies_and_nothing_hangs_under_memory_pressure(guest_factory, module_path, tmp_path):
    disk_img = tmp_path / "log.img"
    # The log disk is slower than the writers (6 MB/s in 4 KiB units), so
    # the ring fills and writers wait for writeback; a batch (at most a
    # quarter of the ring) still takes well under the detector's 5 s.
    g = guest_factory(rootfs=True, mem="768M", memmap=REGION, files={KO: module_path},
                      disks=[Disk(disk_img, serial=SERIAL, size="128M", iops=1500)])
    g.boot()
    g.check("swapoff -a")
    assert g.check("tail -n +2 /proc/swaps").strip() == "", "swap must be off"
    g.check("echo 5 > /proc/sys/kernel/hung_task_timeout_secs && echo -1 > /proc/sys/kernel/hung_task_warnings")
    disk = g.check(f"disk-by-serial {SERIAL}").strip()
    g.check("dmesg -C")
    g.check(f"{INSMOD} region={REGION_PARAM} backing={disk} disk_id=serial:{SERIAL} writeback_delay_ms=20",
            timeout=scaled(120))
    assert "/dev/rapilog0:" in g.check("dmesg")

    g.write_file("/tmp/hog.py", HOG.encode())
    g.check(f"setsid python3 /tmp/hog.py {AVAILABLE_FLOOR_MIB} </dev/null >/tmp/hog.out 2>&1 &")
    g.check("for i in $(seq 600); do [ -s /tmp/hog.ready ] && exit 0; sleep 0.5; done; cat /tmp/hog.out; exit 1",
            timeout=scaled(400))
    hog = g.check("cat /tmp/hog.ready").strip()
    held = int(re.match(r"(\d+) MiB held", hog).group(1))
    assert held >= 400, f"the hog could not take most of the memory: {hog}"

    g.check(FIO, timeout=scaled(900))

    # The hog held its memory throughout (not OOM-killed) and memory is short.
    g.check("pgrep -f /tmp/hog.py")
    available_mib = int(g.check("awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo"))
    assert available_mib < 3 * AVAILABLE_FLOOR_MIB, f"{available_mib} MiB available: no pressure"

    # A known pattern last, then what the guest reads back through rapilog.
    g.write_file("/tmp/pattern", PATTERN)
    g.check(f"dd if=/tmp/pattern of=/dev/rapilog0 bs=1M seek={PATTERN_AT // MIB} oflag=direct conv=fsync 2>/dev/null")
    seen = g.check(f"dd if=/dev/rapilog0 bs=1M count={FIO_SPAN // MIB} iflag=direct 2>/dev/null | sha256sum",
                   timeout=scaled(300)).split()[0]
    g.check("kill $(pgrep -f /tmp/hog.py)")

    log = g.check("dmesg")
    assert "blocked for more than" not in log, log[-6000:]
    assert rapilog_allocation_failures(log) == [], rapilog_allocation_failures(log)[0]

    g.check("dmesg -C")
    g.check("rmmod rapilog", timeout=scaled(300))
    report = re.search(r"rapilog: unloaded \(region=[^)]*\): (.*)", g.check("dmesg"))
    assert report, g.check("dmesg")
    throttled = int(re.search(r"(\d+) writes throttled", report.group(1)).group(1))
    print(f"hog: {hog}; after fio {available_mib} MiB available; {report.group(1)}")
    assert throttled > 0, f"writers never waited for writeback: the ring never filled: {report.group(1)}"

    # Positive control: the detector reports a task blocked for 5 s here
    # (a write to a frozen filesystem waits uninterruptibly until thawed).
    g.check("dmesg -C")
    g.check("modprobe loop max_loop=1 && truncate -s 16M /root/ctl.img && mkfs.ext4 -q -F /root/ctl.img && "
            "mkdir -p /mnt/ctl && mount -o loop=/dev/loop0 /root/ctl.img /mnt/ctl && fsfreeze -f /mnt/ctl",
            timeout=scaled(60))
    g.check("setsid sh -c 'echo x > /mnt/ctl/f' </dev/null >/dev/null 2>&1 &")
    g.check("for i in $(seq 120); do dmesg | grep -q 'blocked for more than' && exit 0; sleep 0.5; done; exit 1",
            timeout=scaled(120))
    g.check("fsfreeze -u /mnt/ctl && sleep 1 && umount /mnt/ctl", timeout=scaled(60))

    g.send("poweroff -f")
    g.wait_exit(scaled(120))
    data = disk_img.read_bytes()
    assert hashlib.sha256(data[:FIO_SPAN]).hexdigest() == seen, "the log disk differs from what rapilog0 returned"
    assert data[PATTERN_AT:PATTERN_AT + MIB] == PATTERN, "the last write is not on the log disk"
