"""Real workloads on /dev/rapilog0, in the Debian rootfs guest (fio,
mkfs.ext4, fsck.ext4): fio with crc32c verification over mixed sizes and
offsets, sequential and random, read back while writeback is in progress
and verified again on the backing disk alone after unload; and an ext4
filesystem with fsync'ed files that checks clean on rapilog and, after
unload, on the backing disk.
"""
import os

import pytest

from rapilog_harness import Disk, Guest, build_module, scaled

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="build-rootfs.sh needs root (debootstrap)")

KO = "/lib/modules/KREL/extra/rapilog.ko"
# One identity for the log disk whichever path reaches it (the disk itself or
# the device-mapper target over it), as rapilog-rescue would look it up.
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko region=64M@0x60000000 disk_id=serial:rl-log"


@pytest.fixture(scope="module")
def rg(krel):
    ko = build_module(krel)
    g = Guest("test_workloads-shared", krel=krel, rootfs=True, memmap="64M$0x60000000",
              disks=[Disk("log.img", serial="rl-log", size="256M")], files={KO: ko})
    try:
        g.boot()
        yield g
    finally:
        g.close()


def unload(g) -> None:
    g.check("rmmod rapilog", timeout=scaled(180))
    g.check("! grep -q '^rapilog ' /proc/modules")


# Mixed request sizes from one sector to two records; writes of both jobs
# land in the region and are read back (verify) right after, while
# writeback runs (it starts when an eighth of the ring is dirty).
FIO = ("fio --output-format=terse --direct=1 --ioengine=psync --bssplit=512/10:4k/40:16k/20:64k/15:256k/15 "
       "--verify=crc32c --verify_fatal=1 --group_reporting "
       "--name=seq --filename={dev} --rw=write --offset=0 --size=24M "
       "--name=rand --filename={dev} --rw=randwrite --offset=32M --size=24M")


def test_fio_verify_then_the_disk_alone_verifies(rg):
    disk = rg.check("disk-by-serial rl-log").strip()
    rg.check(f"{INSMOD} backing={disk} writeback_delay_ms=60000")
    rg.check(FIO.format(dev="/dev/rapilog0"), timeout=scaled(600))
    unload(rg)
    # The same jobs, verify only, against the backing disk: fio regenerates
    # every block it wrote (same seeds) and checks it there.
    rg.check(FIO.format(dev=disk) + " --verify_only=1", timeout=scaled(600))


def test_ext4_with_fsync_checks_clean_on_rapilog_and_on_the_disk(rg):
    disk = rg.check("disk-by-serial rl-log").strip()
    rg.check(f"{INSMOD} backing={disk}")
    rg.check("mkfs.ext4 -q -F /dev/rapilog0 && mkdir -p /mnt/r && mount /dev/rapilog0 /mnt/r", timeout=scaled(120))
    # A commit-like workload: files written and fsync'ed one by one.
    rg.check("for i in $(seq 1 40); do head -c $((i * 37 * 1024)) /dev/urandom > /mnt/r/f$i && sync /mnt/r/f$i "
             "|| exit 1; done; mkdir /mnt/r/d && cp /mnt/r/f1* /mnt/r/d/ && sync -f /mnt/r && "
             "cd /mnt/r && sha256sum f* d/* > /tmp/sums", timeout=scaled(300))
    rg.check("umount /mnt/r && fsck.ext4 -f -n /dev/rapilog0", timeout=scaled(120))
    rg.check("mount /dev/rapilog0 /mnt/r && cd /mnt/r && sha256sum -c --quiet /tmp/sums; rc=$?; cd /; "
             "umount /mnt/r; exit $rc", timeout=scaled(120))
    unload(rg)
    # Everything is on the backing disk now, consistent on its own.
    rg.check(f"fsck.ext4 -f -n {disk}", timeout=scaled(120))
    rg.check(f"mount -o ro {disk} /mnt/r && cd /mnt/r && sha256sum -c --quiet /tmp/sums; rc=$?; cd /; "
             "umount /mnt/r; exit $rc", timeout=scaled(120))


def test_disk_errors_keep_data_in_the_region_and_writeback_retries(rg):
    """The backing disk is a device-mapper target whose table is switched to
    `error` and back while rapilog runs: writes keep completing from the
    region, writeback fails, counts, logs and retries, and catches up once
    the disk is back; an unload while the disk fails leaves the records in
    the region, and the next load replays them."""
    disk = rg.check("disk-by-serial rl-log").strip()
    size = rg.check(f"blockdev --getsz {disk}").strip()
    linear, error = f"0 {size} linear {disk} 0", f"0 {size} error"
    table = "dmsetup suspend rlback && dmsetup load rlback --table '{}' && dmsetup resume rlback"
    # No udev in the test rootfs: dmsetup makes the /dev/mapper node itself.
    rg.check(f"modprobe dm-mod && dmsetup create rlback --table '{linear}' && dmsetup mknodes rlback")
    try:
        rg.check(f"dmesg -C && {INSMOD} backing=/dev/mapper/rlback writeback_delay_ms=100")
        rg.check(table.format(error))
        rg.check("head -c 2M /dev/urandom > /tmp/d1 && dd if=/tmp/d1 of=/dev/rapilog0 bs=64k seek=64 "
                 "oflag=direct conv=fsync 2>/dev/null && sleep 2")
        assert rg.check("dd if=/dev/rapilog0 bs=64k skip=64 count=32 iflag=direct 2>/dev/null | cmp - /tmp/d1") == ""
        log = rg.check("dmesg")
        assert "writeback: writing" in log and "the data stays in the region, retrying" in log, log
        rg.check(table.format(linear))
        # Back-off is at most 5 s; then the disk catches up without unload.
        rg.check(f"for i in $(seq 30); do dd if={disk} bs=64k skip=64 count=32 iflag=direct 2>/dev/null "
                 "| cmp -s - /tmp/d1 && exit 0; sleep 1; done; exit 1", timeout=scaled(60))
        rg.check("dmesg -C && rmmod rapilog")
        assert "disk errors" in rg.check("dmesg") and " 0 disk errors" not in rg.check("dmesg")

        # Unloading while the disk fails: the records stay in the region...
        rg.check(f"{INSMOD} backing=/dev/mapper/rlback writeback_delay_ms=60000")
        rg.check(table.format(error))
        rg.check("head -c 1M /dev/urandom > /tmp/d2 && dd if=/tmp/d2 of=/dev/rapilog0 bs=64k seek=128 "
                 "oflag=direct 2>/dev/null")
        rg.check("dmesg -C && rmmod rapilog", timeout=scaled(120))
        log = rg.check("dmesg")
        assert "giving up at unload" in log and "are replayed at the next load" in log, log
        # ... and the next load, with the disk back, replays them.
        rg.check(table.format(linear))
        rg.check(f"dmesg -C && {INSMOD} backing=/dev/mapper/rlback")
        assert "replayed 16 records (1024 KiB)" in rg.check("dmesg"), rg.check("dmesg")
        rg.check(f"dd if={disk} bs=64k skip=128 count=16 iflag=direct 2>/dev/null | cmp - /tmp/d2")
        rg.check("rmmod rapilog")
    finally:
        rg.run("rmmod rapilog; dmsetup remove rlback")
