"""rapilog's data path in the unmodified Debian kernel: /dev/rapilog0 over a
log disk, writes completed from the reserved region, reads of the newest
data, writeback (the newest version of each sector, once per batch), I/O
statistics, back-pressure, replay at load after a warm reboot, and every
load-time refusal leaving region and disk untouched.

Data is checked against a model: every write to /dev/rapilog0 is also
applied to a file in the guest's tmpfs, and ranges are compared by SHA-256.
"""
import hashlib
import re

import pytest

from rapilog_harness import Disk, parse_memmap, scaled
from rapilog_harness.crashload import block, rlio_binary

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
MODEL = "/tmp/model.img"
SPAN = 8 << 20  # bytes of the log disk the tests write and compare


def boot(guest_factory, module_path, disks, memmap=REGION, files=None, **kw):
    g = guest_factory(memmap=memmap, disks=disks, files={KO: module_path, **(files or {})}, **kw)
    g.boot()
    return g


def dev_of(g, serial: str) -> str:
    return g.check(f"disk-by-serial {serial}").strip()


def insmod(g, params: str) -> tuple[int, str]:
    """insmod; returns (rc, output + the kernel log lines it caused)."""
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} {params}", timeout=scaled(120))
    return rc, out + g.check("dmesg")


def load(g, params: str) -> str:
    rc, log = insmod(g, params)
    assert rc == 0, log
    assert "/dev/rapilog0:" in log, log
    return log


def unload(g) -> str:
    """rmmod (drains the ring); returns the unload report line."""
    g.check("dmesg -c > /dev/null")
    g.check("rmmod rapilog", timeout=scaled(180))
    log = g.check("dmesg")
    m = re.search(r"rapilog: unloaded \(region=[^)]*\): (.*)", log)
    assert m, log
    return m.group(1)


def loaded(g) -> bool:
    return g.run("grep -q '^rapilog ' /proc/modules")[0] == 0


def stat(report: str, pattern: str) -> int:
    m = re.search(pattern, report)
    assert m, f"{pattern!r} not in {report!r}"
    return int(m.group(1))


def sha(g, path: str, length: int = SPAN, direct: bool = True) -> str:
    flag = " iflag=direct" if direct else ""
    return g.check(f"dd if={path} bs=64k count={length // 65536}{flag} 2>/dev/null | sha256sum").split()[0]


def write(g, dev: str, offset: int, size: int, direct: bool = True) -> None:
    """Writes `size` random bytes at `offset` to dev and to the model:
    O_DIRECT, or through the page cache followed by fsync. (busybox dd's
    small buffers are not always 512-byte aligned; it then retries without
    O_DIRECT, so small "direct" writes may also go through the page cache
    and reach the device as whole pages, after a read of each page.)"""
    oflag, conv = ("seek_bytes,direct", "notrunc") if direct else ("seek_bytes", "notrunc,fsync")
    g.check(f"dd if=/dev/urandom of=/tmp/chunk bs={size} count=1 iflag=fullblock 2>/dev/null && "
            f"dd if=/tmp/chunk of={dev} bs={size} seek={offset} oflag={oflag} conv={conv} 2>/dev/null && "
            f"dd if=/tmp/chunk of={MODEL} bs={size} seek={offset} oflag=seek_bytes conv=notrunc 2>/dev/null")


def prefill(g, disk: str) -> str:
    """Random content on the disk's first SPAN bytes, copied to the model."""
    g.check(f"dd if=/dev/urandom of={MODEL} bs=1M count={SPAN >> 20} 2>/dev/null && "
            f"dd if={MODEL} of={disk} bs=1M oflag=direct 2>/dev/null")
    return sha(g, disk)


# Mixed sizes and offsets, overlapping one another: 4 KiB-aligned and not,
# single sectors, records split at 128 KiB, layered overwrites.
WRITES = [
    (0, 4096),
    (3 * 4096, 65536),
    (7 * 512, 1536),
    (1 << 20, 1 << 20),
    ((1 << 20) + (256 << 10) + 512, 8192),
    ((5 << 20) + 512, 512),
    (6 << 20, 128 << 10),
    ((6 << 20) + 4096, 4096),
    (6 << 20, 512),
    ((7 << 20) - 1024, 200 << 10),
]


def test_newest_data_wins_and_the_disk_gets_exactly_it(guest_factory, module_path):
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="64M")])
    disk = dev_of(g, "rl-log")
    before = prefill(g, disk)
    # Writeback held back, so everything below is read from the region.
    load(g, f"region={REGION_PARAM} backing={disk} writeback_delay_ms=60000")
    for offset, size in WRITES:
        write(g, "/dev/rapilog0", offset, size)
    # Buffered writes through the page cache, made durable with fsync
    # (a flush request, which the region absorbs).
    write(g, "/dev/rapilog0", 3 << 20, 300 << 10, direct=False)
    write(g, "/dev/rapilog0", (3 << 20) + 4096, 4096, direct=False)
    model = sha(g, MODEL, direct=False)
    assert model != before

    # Reads before writeback: pieces from records and from the disk, at
    # several request sizes (one piece per bio, many pieces per bio).
    assert sha(g, "/dev/rapilog0") == model
    out = g.check(f"dd if=/dev/rapilog0 bs=1M count={SPAN >> 20} iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == model
    g.check(f"cmp /dev/rapilog0 {MODEL} -n {SPAN}")  # buffered reads (page cache)
    small = g.check("dd if=/dev/rapilog0 bs=512 skip=2040 count=32 iflag=direct 2>/dev/null | sha256sum").split()[0]
    assert small == g.check(f"dd if={MODEL} bs=512 skip=2040 count=32 2>/dev/null | sha256sum").split()[0]
    # Reads split at extent edges, served from the region and handed to
    # the disk, all counted and none left in flight.
    counted = disk_stat(g, "rapilog0")
    assert counted["reads"] > 0 and counted["in_flight"] == 0, counted
    # Nothing reached the disk yet, not even with fsync: the flushes were
    # absorbed by the region.
    assert sha(g, disk) == before
    # Discard is not offered, and refused without touching anything.
    rc, out = g.run("blkdiscard /dev/rapilog0")
    assert rc != 0, out
    assert sha(g, "/dev/rapilog0") == model

    report = unload(g)
    assert stat(report, r"(\d+) flushes absorbed") >= 1
    assert stat(report, r"reads (\d+) from region") >= 1
    assert stat(report, r"(\d+) disk errors") == 0
    records = stat(report, r"writeback (\d+) records")
    ios = stat(report, r"records in (\d+) disk writes")
    assert ios < records, report  # adjacent records were merged
    # The backing disk alone now holds exactly what was written.
    assert sha(g, disk) == model

    # Loaded again: reads come from the disk, and an idle ring is written
    # back after the bounded age (1 s by default) without unloading.
    load(g, f"region={REGION_PARAM} backing={disk}")
    assert sha(g, "/dev/rapilog0") == model
    write(g, "/dev/rapilog0", 2 << 20, 64 << 10)
    g.check("sleep 3")
    assert sha(g, disk) == sha(g, MODEL, direct=False)
    unload(g)


def disk_stat(g, name: str) -> dict[str, int]:
    """The I/O counters of /sys/block/NAME/stat (Documentation/block/stat.rst)."""
    fields = [int(x) for x in g.check(f"cat /sys/block/{name}/stat").split()]
    keys = ["reads", "read_merges", "read_sectors", "read_ms",
            "writes", "write_merges", "write_sectors", "write_ms", "in_flight"]
    return dict(zip(keys, fields))


def test_a_rewritten_log_page_reaches_the_disk_once_per_batch(guest_factory, module_path):
    # A database log's commit pattern: the current 8 KiB page rewritten,
    # with new content, at every commit (here 200 commits alternating
    # between its two 4 KiB halves). Writeback must write only the newest
    # version, not replay the history onto the disk one write per commit.
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="64M")],
             files={"/usr/bin/rlio": rlio_binary()})
    disk = dev_of(g, "rl-log")
    prefill(g, disk)
    load(g, f"region={REGION_PARAM} backing={disk} writeback_delay_ms=60000")
    commits = 200
    before = disk_stat(g, "rapilog0")
    g.check(f"rlio numbered /dev/rapilog0 0 2 {commits} > /dev/null", timeout=scaled(300))
    # iostat sees the device: every 4 KiB write is counted (the empty
    # flushes of fdatasync are not; a bio-based driver cannot count them).
    after = disk_stat(g, "rapilog0")
    assert after["writes"] - before["writes"] == commits, (before, after)
    assert after["write_sectors"] - before["write_sectors"] == commits * 8, (before, after)
    assert after["in_flight"] == 0, after
    newest = block(commits - 2) + block(commits - 1)
    got = g.check("dd if=/dev/rapilog0 bs=8k count=1 iflag=direct 2>/dev/null | sha256sum").split()[0]
    assert got == hashlib.sha256(newest).hexdigest()
    # That read came from two records: split in two, each half counted,
    # none left in flight.
    read = disk_stat(g, "rapilog0")
    assert read["read_sectors"] - after["read_sectors"] >= 16, (after, read)
    assert read["in_flight"] == 0, read

    report = unload(g)
    assert stat(report, r"writeback (\d+) records") == commits, report
    assert stat(report, r"(\d+) disk errors") == 0
    # One batch at unload (the delay holds writeback back until then; a
    # second one only if TCG took a whole minute for the loop): one 8 KiB
    # write each. Without coalescing: ~100 writes, 800 KiB.
    assert stat(report, r"records in (\d+) disk writes") <= 2, report
    assert stat(report, r"disk writes \((\d+) KiB\)") <= 16, report
    on_disk = g.check(f"dd if={disk} bs=8k count=1 iflag=direct 2>/dev/null | sha256sum").split()[0]
    assert on_disk == hashlib.sha256(newest).hexdigest()


def timed(g, cmd: str) -> float:
    """Seconds of wall time `cmd` takes in the guest (busybox time)."""
    out = g.check(f"time sh -c '{cmd}' 2>&1", timeout=scaled(300))
    m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", out)
    assert m, out
    return int(m.group(1)) * 60 + float(m.group(2))


def sync_writes(g, dev: str, count: int) -> dict[str, float]:
    """`count` x (4 KiB O_DIRECT write + fdatasync) on dev, timed in the guest."""
    out = g.check(f"rlio sync-writes {dev} {count} 4096", timeout=scaled(300))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}


def test_flushes_complete_from_the_region(guest_factory, module_path):
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="64M", iops=200),
                                          Disk("raw.img", serial="rl-raw", size="64M", iops=200)],
             files={"/usr/bin/rlio": rlio_binary()})
    disk, raw = dev_of(g, "rl-log"), dev_of(g, "rl-raw")
    load(g, f"region={REGION_PARAM} backing={disk}")
    # A database's commit: write 4 KiB, fdatasync (a flush), on rapilog and
    # on an identical raw disk throttled to 200 IOPS (a 10k rpm disk).
    fast = sync_writes(g, "/dev/rapilog0", 1000)
    slow = sync_writes(g, raw, 200)
    report = unload(g)
    print(f"\n4 KiB write + fdatasync: rapilog {fast}\n                        raw disk {slow}\nunload: {report}")
    assert stat(report, r"(\d+) flushes absorbed") >= 1000
    assert stat(report, r"(\d+) disk errors") == 0
    # The flush completes from the region, not after a disk round trip.
    assert fast["iops"] > 3 * slow["iops"], (fast, slow)


def test_full_ring_makes_writers_wait_not_fail(guest_factory, module_path):
    # A 1 MiB region (about seven 128 KiB records) in front of a 200 IOPS
    # disk: writing 4 MiB must stall for writeback, resume, and lose nothing.
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="64M", iops=200)],
             memmap="1M$0x60000000")
    disk = dev_of(g, "rl-log")
    before = prefill(g, disk)
    load(g, f"region=1M@0x60000000 backing={disk}")
    g.check("dd if=/dev/urandom of=/tmp/big bs=1M count=4 2>/dev/null")
    took = timed(g, "dd if=/tmp/big of=/dev/rapilog0 bs=64k seek=16 oflag=direct conv=notrunc")
    g.check(f"dd if=/tmp/big of={MODEL} bs=64k seek=16 conv=notrunc 2>/dev/null")
    model = sha(g, MODEL, direct=False)
    assert model != before
    assert sha(g, "/dev/rapilog0") == model
    report = unload(g)
    print(f"\n4 MiB through a 1 MiB region onto a 200 IOPS disk: {took:.1f} s; {report}")
    assert stat(report, r"(\d+) writes throttled") >= 1
    assert stat(report, r"(\d+) disk errors") == 0
    assert sha(g, disk) == model


def test_records_left_by_a_warm_reboot_are_replayed_at_load(guest_factory, module_path):
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="64M")])
    disk = dev_of(g, "rl-log")
    before = prefill(g, disk)
    load(g, f"region={REGION_PARAM} backing={disk} writeback_delay_ms=60000")
    for offset, size in WRITES:
        write(g, "/dev/rapilog0", offset, size)
    expected = sha(g, MODEL, direct=False)
    assert sha(g, "/dev/rapilog0") == expected
    assert sha(g, disk) == before  # still only in the region
    # A reset without the kernel's shutdown path (a hang, a watchdog,
    # sysrq-b): no unload, no drain; RAM (and the region) survives. (An
    # orderly reboot drains: test_lifecycle.py.)
    g.reset()
    assert not loaded(g)
    disk = dev_of(g, "rl-log")
    assert sha(g, disk) == before
    log = load(g, f"region={REGION_PARAM} backing={disk}")
    m = re.search(r"rapilog: region=64M@0x60000000: replayed (\d+) records \((\d+) KiB\) from seq 0 "
                  r"onto backing=\S+ in \d+ ms; skipped (\d+) empty, (\d+) torn", log)
    assert m, log
    assert int(m.group(1)) >= len(WRITES)
    assert int(m.group(2)) >= sum(size for _, size in WRITES) // 1024
    assert int(m.group(4)) == 0
    # Replayed onto the disk before the device went live.
    assert sha(g, disk) == expected
    assert sha(g, "/dev/rapilog0") == expected
    unload(g)
    # Loading once more finds nothing left to replay.
    log = load(g, f"region={REGION_PARAM} backing={disk}")
    assert "nothing to replay" in log, log
    unload(g)
    assert sha(g, disk) == expected


def region_sha(g) -> str:
    """SHA-256 of the reserved region, read through /dev/mem in the guest."""
    mib = 1 << 20
    return g.check(f"dd if=/dev/mem bs=1M skip={REGION_START // mib} count={REGION_SIZE // mib} "
                   f"2>/dev/null | sha256sum").split()[0]


def region_byte(g, phys: int, value: int | None = None) -> int:
    """Reads (or first writes) one byte of physical memory via /dev/mem."""
    if value is not None:
        g.check(f"printf '\\{value:03o}' | dd of=/dev/mem bs=1 seek={phys} conv=notrunc 2>/dev/null")
    return int(g.check(f"dd if=/dev/mem bs=1 skip={phys} count=1 2>/dev/null | od -An -tx1"), 16)


class Snapshot:
    """The region's and every disk's hash."""

    def __init__(self, g, disks):
        self.region = region_sha(g)
        self.disks = {d: g.check(f"sha256sum {d}").split()[0] for d in disks}

    def __eq__(self, other):
        return self.region == other.region and self.disks == other.disks


def test_refusals_leave_region_and_disks_untouched(guest_factory, module_path):
    g = boot(guest_factory, module_path,
             [Disk("log.img", serial="rl-log", size="16M"),
              Disk("ro.img", serial="rl-ro", size="16M", readonly=True),
              Disk("small.img", serial="rl-small", size="512K"),
              Disk("swap.img", serial="rl-swap", size="16M")])
    log_disk, ro, small, swap = (dev_of(g, s) for s in ("rl-log", "rl-ro", "rl-small", "rl-swap"))
    # The region holds a formatted region of log_disk with history, and the
    # disks hold data: a refusal that wrote anything would show.
    g.check(f"dd if=/dev/urandom of={log_disk} bs=1M count=16 oflag=direct 2>/dev/null")
    g.check(f"dd if=/dev/urandom of={small} bs=64k count=8 oflag=direct 2>/dev/null")
    load(g, f"region={REGION_PARAM} backing={log_disk}")
    g.check("dd if=/dev/urandom of=/dev/rapilog0 bs=4k count=16 oflag=direct 2>/dev/null")
    unload(g)
    g.check(f"mkswap {swap} >/dev/null && swapon {swap}")
    # A busy range with no RAM behind it: a virtio device's BAR.
    bar = g.check("grep -m1 virtio-pci-modern /proc/iomem").split(":")[0].strip()
    bar_start, bar_end = (int(x, 16) for x in bar.split("-"))
    bar_region = f"{(bar_end + 1 - bar_start) // 1024}K@{bar_start:#x}"
    cases = [
        (f"region={REGION_PARAM} backing=/dev/nonexistent",
         "rapilog: backing=/dev/nonexistent refused: no such file; give the log disk's path"),
        (f"region={REGION_PARAM} backing=/dev/null",
         "rapilog: backing=/dev/null refused: not a block device"),
        (f"region={REGION_PARAM} backing={ro}",
         f"rapilog: backing={ro} refused: the disk is read-only"),
        (f"region={REGION_PARAM} backing={swap}",
         f"rapilog: backing={swap} refused: the disk is busy: claimed exclusively by someone else"),
        (f"region={REGION_PARAM} backing={small}",
         f"rapilog: backing={small} refused: 524288 bytes is too small for a log disk"),
        (f"region=64M@0x10000000 backing={log_disk}",
         "rapilog: region=64M@0x10000000 refused: that range is usable RAM; "
         "reserve it at boot with memmap=64M$0x10000000"),
        (f"region={bar_region} backing={log_disk}",
         f"rapilog: region={bar_region} refused: it overlaps a range claimed by someone else"),
        (f"region=8K@0x60000000 backing={log_disk}",
         "rapilog: region=8K@0x60000000 refused: too small for the format"),
        (f"region={REGION_PARAM} backing={log_disk} disk_id=another-disk",
         f"rapilog: region={REGION_PARAM} refused: it holds records of disk \"serial:rl-log\", but "
         f"backing={log_disk} is disk \"another-disk\"; nothing was replayed or written"),
    ]
    disks = [log_disk, ro, small, swap]
    snapshot = Snapshot(g, disks)
    for params, message in cases:
        rc, log = insmod(g, params)
        assert rc != 0, f"insmod {params} succeeded:\n{log}"
        assert message in log, log
        assert not loaded(g)
        assert Snapshot(g, disks) == snapshot, f"insmod {params} changed the region or a disk"
    # And the region is still this disk's: it loads (and replays nothing).
    g.check(f"swapoff {swap}")
    log = load(g, f"region={REGION_PARAM} backing={log_disk}")
    assert "nothing to replay" in log, log
    unload(g)


@pytest.mark.parametrize("protect, mode, faults", [
    ("window", 1, "permissions violation"),  # the read-only view
    ("window", 2, "not-present page"),  # a write window after it closed
    ("off", 1, None),  # control: without protection the byte changes
])
def test_stray_writes_into_the_region_fault(guest_factory, module_path, protect, mode, faults):
    g = boot(guest_factory, module_path, [Disk("log.img", serial="rl-log", size="16M")])
    disk = dev_of(g, "rl-log")
    last = REGION_START + REGION_SIZE - 1  # in the ring: nothing live there
    region_byte(g, last, 0xA5)
    mark = g.console_mark()
    rc, log = insmod(g, f"region={REGION_PARAM} backing={disk} protect={protect} test_stray_write={mode}")
    if faults:
        # The kernel oopsed in insmod, and the byte is what it was.
        assert rc != 0, log
        g.wait_console(r"BUG: unable to handle page fault for address", scaled(30), since=mark)
        g.wait_console(r"#PF: supervisor write access in kernel mode", scaled(30), since=mark)
        g.wait_console(faults, scaled(30), since=mark)
        # The region stays claimed by the half-loaded module, which keeps
        # /dev/mem away from it; a warm reboot keeps RAM and frees it.
        g.reboot()
        assert region_byte(g, last) == 0xA5
    else:
        assert rc == 0, log
        assert "did not fault: the region is not write-protected" in log, log
        unload(g)
        assert region_byte(g, last) == 0x5A


def test_4k_sector_disk(guest_factory, module_path, tmp_path):
    # A disk with 4 KiB logical blocks (attached by hand: Disk() has no
    # device properties): /dev/rapilog0 takes its block size, so anything
    # that runs on the disk runs on rapilog, and records are whole blocks.
    img = tmp_path / "4k.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    g = boot(guest_factory, module_path, [], qemu_args=[
        "-drive", f"file={img},format=raw,if=none,id=drv-4k,cache=directsync,aio=threads",
        "-device", "virtio-blk-pci,drive=drv-4k,serial=rl-4k,logical_block_size=4096,physical_block_size=4096"])
    disk = dev_of(g, "rl-4k")
    assert g.check(f"cat /sys/block/{disk[5:]}/queue/logical_block_size").strip() == "4096"
    before = prefill(g, disk)
    load(g, f"region={REGION_PARAM} backing={disk} writeback_delay_ms=60000")
    assert g.check("cat /sys/block/rapilog0/queue/logical_block_size").strip() == "4096"
    for offset, size in [(0, 4096), (12288, 65536), (1 << 20, 300 << 10), ((1 << 20) + 8192, 4096)]:
        write(g, "/dev/rapilog0", offset, size)
    model = sha(g, MODEL, direct=False)
    assert model != before and sha(g, "/dev/rapilog0") == model
    unload(g)
    assert sha(g, disk) == model
