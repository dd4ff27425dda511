"""Regions of any size and position (sys/region.rs maps them without
`struct page`).

A 128 MiB memory section gets a memory map only if part of it is RAM, so a
memmap=$ range that covers whole sections has frames without `struct
page`: every region of 256 MiB or more, and a smaller one across a section
boundary (then some frames have one and some do not). The memory blocks
in /sys/devices/system/memory show which sections have a memory map, and
each test first checks that its region is of the kind it is about.

Each region: data written with O_DIRECT through /dev/rapilog0 (records all
over the ring, in the struct-page-less sections), read back from the region
before writeback and from the disk after it, compared by SHA-256 with a
model in the guest's tmpfs; the stray-write self-test still faults with
protect=window on a 512 MiB region; a range that is not reserved memory is
refused with a message saying so; and a panic with records only in a 512
MiB region is replayed by the crash kernel through /dev/mem.
"""
import re

import pytest

from rapilog_harness import Disk, parse_memmap, scaled
from rapilog_harness.crashload import BLOCK, CrashRig, artifacts, block, guest_files

KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
MODEL = "/tmp/model.img"
SECTION = 128 << 20

# (id, guest RAM, memmap=, MiB written with writeback held back, then MiB
# written with writeback running). q35 puts the first 2 GiB of RAM below
# 4 GiB once the guest has 2.75 GiB or more (guest.q35_phys_to_offset), so
# 0x40000000.. is RAM before memmap=$ takes it.
REGIONS = [
    # 4 whole sections: no frame has a struct page.
    ("512M", "3G", "512M$0x40000000", 160, 0),
    # 8 whole sections, mapped by memremap() with a 1 GiB page.
    ("1G", "4G", "1G$0x40000000", 160, 0),
    # 0x5C000000..0x68800000: the section 0x60000000..0x68000000 (region
    # offsets 64..192 MiB) has no memory map, the two around it do. 150 MiB
    # of records reach into it; 300 MiB more wrap the ~196 MiB ring.
    ("mixed-200M", "2G", "200M$0x5C000000", 150, 300),
]


def region_param(memmap: str) -> str:
    start, size = parse_memmap(memmap)
    return f"{size >> 20}M@{start:#x}"


def boot(guest_factory, module_path, mem, memmap, disks, **kw):
    g = guest_factory(mem=mem, memmap=memmap, disks=disks, files={KO: module_path, **kw.pop("files", {})}, **kw)
    g.boot()
    return g


def insmod(g, params: str) -> tuple[int, str]:
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} {params}", timeout=scaled(300))
    return rc, out + g.check("dmesg")


def unload(g) -> str:
    g.check("dmesg -c > /dev/null")
    g.check("rmmod rapilog", timeout=scaled(600))
    log = g.check("dmesg")
    m = re.search(r"rapilog: unloaded \(region=[^)]*\): (.*)", log)
    assert m, log
    return m.group(1)


def sha(g, path: str, mib: int, direct: bool = True) -> str:
    flag = " iflag=direct" if direct else ""
    return g.check(f"dd if={path} bs=1M count={mib}{flag} 2>/dev/null | sha256sum", timeout=scaled(600)).split()[0]


def struct_pages(g, memmap: str) -> tuple[int, int]:
    """(sections with, sections without a memory map) among those the
    region touches: a present section is a memory block in
    /sys/devices/system/memory (one 128 MiB section per block below 64 GiB
    of RAM). (/proc/kpageflags cannot tell: it reads 0 for a reserved hole
    of a present section too.)"""
    start, size = parse_memmap(memmap)
    assert int(g.check("cat /sys/devices/system/memory/block_size_bytes"), 16) == SECTION
    sections = range(start // SECTION, (start + size - 1) // SECTION + 1)
    present = [g.run(f"test -d /sys/devices/system/memory/memory{n}")[0] == 0 for n in sections]
    return present.count(True), present.count(False)


def clean_log(log: str) -> None:
    for bad in ("WARNING:", "BUG:", "Oops", "ioremap error", "memtype"):
        assert bad not in log, log


def write_and_check(g, disk: str, param: str, mib: int, delay: bool) -> str:
    """Loads rapilog, writes `mib` MiB of random data and a few small,
    unaligned writes through /dev/rapilog0, reads them back (from the
    region, if writeback was held back), unloads (draining) and checks the
    disk. Returns the unload report."""
    g.check(f"dd if=/dev/urandom of={MODEL} bs=1M count={mib} 2>/dev/null")
    rc, log = insmod(g, f"region={param} backing={disk}" + (" writeback_delay_ms=60000" if delay else ""))
    assert rc == 0 and "/dev/rapilog0:" in log, log
    clean_log(log)
    g.check(f"dd if={MODEL} of=/dev/rapilog0 bs=1M oflag=direct 2>/dev/null", timeout=scaled(900))
    # Two-part windows at high offsets: 512 bytes, 4 KiB straddling a
    # page, 128 KiB + 512.
    for off, n in [(512, 512), (3 << 20 | 2048, 4096), (7 << 20 | 512, (128 << 10) + 512)]:
        g.check(f"dd if=/dev/urandom of=/tmp/chunk bs={n} count=1 2>/dev/null && "
                f"dd if=/tmp/chunk of=/dev/rapilog0 bs={n} seek={off} oflag=seek_bytes,direct conv=notrunc "
                f"2>/dev/null && dd if=/tmp/chunk of={MODEL} bs={n} seek={off} oflag=seek_bytes conv=notrunc "
                f"2>/dev/null")
    model = sha(g, MODEL, mib, direct=False)
    assert sha(g, "/dev/rapilog0", mib) == model
    report = unload(g)
    print(f"{mib} MiB, writeback {'held back' if delay else 'running'}: {report}")
    assert re.search(r"\b0 disk errors", report), report
    if delay:
        assert re.search(r"reads \d+ from region", report) and " 0 from region" not in report, report
    assert sha(g, disk, mib) == model
    return model


@pytest.mark.parametrize("mem, memmap, mib, wrap_mib", [r[1:] for r in REGIONS], ids=[r[0] for r in REGIONS])
def test_region_without_struct_pages_takes_writes(guest_factory, module_path, mem, memmap, mib, wrap_mib):
    g = boot(guest_factory, module_path, mem, memmap,
             [Disk("log.img", serial="rl-log", size=f"{max(mib, wrap_mib) + 64}M")])
    start, size = parse_memmap(memmap)
    with_page, without = struct_pages(g, memmap)
    print(f"\n{memmap}: {with_page} sections with a memory map, {without} without")
    assert without > 0, "the test is about frames without a struct page"
    if size % SECTION == 0 and start % SECTION == 0:
        assert with_page == 0
    else:
        assert with_page > 0
    disk = g.check("disk-by-serial rl-log").strip()
    param = region_param(memmap)
    # Records in the region, read back from it before writeback.
    model = write_and_check(g, disk, param, mib, delay=True)
    # Loaded again over the same region: nothing to replay, same data.
    rc, log = insmod(g, f"region={param} backing={disk}")
    assert rc == 0 and "nothing to replay" in log, log
    assert sha(g, "/dev/rapilog0", mib) == model
    unload(g)
    if wrap_mib:
        # More than the ring holds: it wraps, writers wait for writeback.
        write_and_check(g, disk, param, wrap_mib, delay=False)
    clean_log(g.check("dmesg"))


@pytest.mark.parametrize("mode, faults", [(1, "permissions violation"), (2, "not-present page")])
def test_stray_writes_fault_on_a_512m_region(guest_factory, module_path, mode, faults):
    memmap = "512M$0x40000000"
    g = boot(guest_factory, module_path, "3G", memmap, [Disk("log.img", serial="rl-log", size="16M")])
    disk = g.check("disk-by-serial rl-log").strip()
    start, size = parse_memmap(memmap)
    last = start + size - 1
    g.check(f"printf '\\245' | dd of=/dev/mem bs=1 seek={last} conv=notrunc 2>/dev/null")
    mark = g.console_mark()
    rc, log = insmod(g, f"region={region_param(memmap)} backing={disk} protect=window test_stray_write={mode}")
    assert rc != 0, log
    g.wait_console(r"BUG: unable to handle page fault for address", scaled(30), since=mark)
    g.wait_console(r"#PF: supervisor write access in kernel mode", scaled(30), since=mark)
    g.wait_console(faults, scaled(30), since=mark)
    g.reboot()
    byte = g.check(f"dd if=/dev/mem bs=1 skip={last} count=1 2>/dev/null | od -An -tx1").strip()
    assert byte == "a5"


def test_a_range_that_is_not_reserved_memory_is_refused(guest_factory, module_path):
    g = boot(guest_factory, module_path, "2G", "64M$0x60000000", [Disk("log.img", serial="rl-log", size="16M")])
    disk = g.check("disk-by-serial rl-log").strip()
    # Beyond the end of RAM: no resource at all, so nothing to claim it first.
    rc, log = insmod(g, f"region=1M@0x200000000 backing={disk}")
    assert rc != 0
    assert ("rapilog: region=1M@0x200000000 refused: 0x200000000 is not reserved memory "
            "(no \"Reserved\" range of /proc/iomem covers it); reserve the region at boot with "
            "memmap=1M$0x200000000") in log, log
    assert "rapilog" not in g.check("cat /proc/iomem")


@pytest.mark.slow
def test_panic_with_records_in_a_512m_region_is_replayed(guest_factory, krel, tmp_path, tmp_path_factory):
    art = artifacts(krel, tmp_path_factory.mktemp("crash-artifacts"))
    memmap = "512M$0x40000000"
    disk = tmp_path / "log.img"
    g = guest_factory(mem="3G", memmap=memmap, crashkernel="256M", overlays=[art["kexec"]],
                      disks=[Disk(disk, serial="rl-log", size="32M")], files=guest_files(art, krel))
    g.boot()
    rig = CrashRig(g, disk, "rl-log", region_param(memmap), "writeback_delay_ms=60000")
    log = rig.load_and_arm()
    clean_log(log)
    count, slots = 512, 8192
    g.check(f"rlio numbered /dev/rapilog0 0 {slots} {count}", timeout=scaled(300))
    assert disk.read_bytes()[:count * BLOCK] == bytes(count * BLOCK), "written back before the panic"
    r = rig.panic_and_replay()
    print("\n".join(line for line in r["console"].splitlines() if "rapilog-rescue" in line))
    assert (r["report"]["applied"], r["report"]["exit"]) == (str(count), "0"), r["report"]
    data = disk.read_bytes()
    for n in range(count):
        assert data[n * BLOCK:(n + 1) * BLOCK] == block(n), f"block {n}"
    log = rig.load_and_arm()
    assert "last replay by rapilog-rescue (crash kernel)" in log, log
