"""The region names its log disk by what the disk itself reports, not by
its path (rapilog-blk/disk_identity.rs), so that records left in the region
are never replayed onto another disk when kernel names move between boots.

Two disks of the same size with different serials. Records are acknowledged
on the first (/dev/vda) and left only in the region; the machine loses power
with its RAM kept (a RAM file, as a warm reboot keeps memory), and comes
back with the disks attached the other way round, so /dev/vda is now the
other disk. Loading with backing=/dev/vda must be refused with a message
naming both disks, and neither disk image may change (read by the host);
loading with the path that now names the first disk replays every record
onto it, checked byte for byte from the host.
"""
import hashlib
import re

from rapilog_harness import Disk, scaled
from rapilog_harness.crashload import block, rlio_binary

REGION = "64M$0x60000000"
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko region={REGION_PARAM}"
BLOCKS = 200


def digest(disk: Disk) -> str:
    return hashlib.sha256(disk.path.read_bytes()).hexdigest()


def missing_blocks(disk: Disk) -> list[int]:
    data = disk.path.read_bytes()
    return [n for n in range(BLOCKS) if data[n * 4096:(n + 1) * 4096] != block(n)]


def test_swapped_disks_refuse_replay_and_the_right_disk_gets_it(guest_factory, tmp_path, module_path):
    first = Disk(tmp_path / "first.img", serial="rl-first", size="64M")
    second = Disk(tmp_path / "second.img", serial="rl-second", size="64M")
    g = guest_factory(memmap=REGION, disks=[first, second], ram_file=True,
                      files={KO: module_path, "/usr/bin/rlio": rlio_binary()})
    g.boot()
    assert g.check("cat /sys/block/vda/serial").strip() == "rl-first"

    # Loaded by kernel name, without disk_id=: the identity is the disk's.
    g.check("dmesg -c > /dev/null")
    g.check(f"{INSMOD} backing=/dev/vda writeback_delay_ms=60000", timeout=scaled(120))
    first_load = g.check("dmesg")
    g.check(f"rlio numbered /dev/rapilog0 0 100000 {BLOCKS} > /dev/null", timeout=scaled(120))
    assert len(missing_blocks(first)) == BLOCKS, "writeback ran before the power cut: the test proves nothing"

    # Power cut with RAM kept; the disks come back swapped.
    g.kill()
    g.disks = [second, first]
    g.start()
    g.wait_booted(scaled(120))
    assert g.check("cat /sys/block/vda/serial").strip() == "rl-second"
    before = (digest(first), digest(second))

    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} backing=/dev/vda", timeout=scaled(120))
    log = out + g.check("dmesg")
    print(log)
    assert rc != 0, log
    assert re.search(r'rapilog: region=\S+ refused: it holds records of disk "serial:rl-first", but '
                     r'backing=/dev/vda is disk "serial:rl-second"; nothing was replayed or written\. '
                     r'Load with backing= naming disk "serial:rl-first"', log), log
    assert g.run("test -e /dev/rapilog0")[0] != 0, "a refused load created the device"
    assert (digest(first), digest(second)) == before, "a refused load wrote to a disk"
    assert missing_blocks(first) == list(range(BLOCKS))

    # The path that names the first disk now: its records are replayed.
    g.check("dmesg -c > /dev/null")
    g.check(f"{INSMOD} backing=/dev/vdb", timeout=scaled(120))
    log = g.check("dmesg")
    assert re.search(r"replayed \d+ records .* onto backing=/dev/vdb", log), log
    g.check("rmmod rapilog", timeout=scaled(120))
    assert missing_blocks(first) == []
    assert digest(second) == before[1], "the other disk was written"
    assert 'disk identity "serial:rl-first" (reported by the disk)' in first_load, first_load


def test_disk_id_parameter_overrides_the_disks_own(guest_factory, tmp_path, module_path):
    # An explicit disk_id= is recorded as given, and a disk that reports its
    # own identity is still found by it on the next load.
    disk = Disk(tmp_path / "log.img", serial="rl-log", size="64M")
    g = guest_factory(memmap=REGION, disks=[disk], files={KO: module_path})
    g.boot()
    g.check("dmesg -c > /dev/null")
    g.check(f"{INSMOD} backing=/dev/vda disk_id=my-log", timeout=scaled(120))
    log = g.check("dmesg")
    assert 'disk identity "my-log" (from disk_id=)' in log, log
    assert 'formatted for disk_id "my-log"' in log, log
    g.check("rmmod rapilog", timeout=scaled(120))
