"""A stray DMA into the region, blocked by the IOMMU or caught by the
per-record checksum (issue 21, item 2).

A real device does the DMA: QEMU's `edu` PCI device (-device edu, QEMU's
docs/specs/edu.rst), driven from user space in the guest by
tests/tools/edu-dma (bus mastering on through sysfs config space, its DMA
registers written at BAR0 through /dev/mem; the device stays unbound, as a
misbehaving or compromised device would be that no driver asked for DMA).
edu copies between its 4 KiB buffer and a bus address it clamps to its
dma_mask, 28 bits by default: the region at 1.5 GiB is out of its reach,
and an address there would be clamped to 0x60081000 & 0x0fffffff, ordinary
guest RAM. So the device is created with dma_mask=0xffffffff (a 32-bit
DMA device, like most).

The region holds 32 numbered 4 KiB blocks (tests/tools/rlio.rs) that
writeback_delay_ms=60000 keeps from writeback. The device first reads
block SOURCE's payload from the region into its buffer, then writes 512
bytes of it over block VICTIM's payload: bytes that are valid data, only
in the wrong place.

- With intel-iommu (strict, translated default domains): the unbound edu
  device is in an IOMMU group with a DMA (translated) default domain, which
  maps nothing of the region; both DMAs fault (DMAR fault lines naming the
  device and the addresses), the region's bytes are unchanged, the fence
  (iommu_fence=require) reports every device fenced, and a drain writes
  every block byte-exact.
- Without an IOMMU: the write lands in the region (the host sees the
  bytes in guest RAM), the fence names edu among the unfenced devices, and
  writeback's check catches the record: the drain writes every other block,
  never that one, the kernel log names it and `rapilogctl status` says
  AT RISK, naming its sequence number and sectors.
"""
import json
import re


from rapilog_harness import REPO, Disk, parse_memmap, scaled
from rapilog_harness.crashload import BLOCK, block, find_record_seq, rlio_binary

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
SERIAL = "rl-log"
SLOTS = 64
COUNT = 32
SOURCE = 5     # the block whose payload the device reads from the region
VICTIM = 20    # the block whose payload it overwrites
AT, LENGTH = 1024, 512  # where in VICTIM's payload, how many bytes
EDU = ["-device", "edu,dma_mask=0xffffffff"]


def make_guest(guest_factory, module_path, ctl_bin, tmp_path, iommu: bool):
    disk = tmp_path / "log.img"
    g = guest_factory(memmap=REGION, ram_file=True, iommu=iommu, qemu_args=EDU,
                      disks=[Disk(disk, serial=SERIAL, size="64M")],
                      files={KO: module_path, "/usr/bin/rlio": rlio_binary(), "/bin/rapilogctl": ctl_bin,
                             "/usr/bin/edu-dma": REPO / "tests/tools/edu-dma"})
    g.boot()
    g.disk_file = disk
    g.dev = g.check(f"disk-by-serial {SERIAL}").strip()
    return g


def load_and_write(g, options: str = "") -> None:
    g.check("echo on > /proc/sys/kernel/printk_devkmsg && dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} region={REGION_PARAM} backing={g.dev} writeback_delay_ms=60000 {options}",
                    timeout=scaled(120))
    assert rc == 0, out + g.check("dmesg")
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {COUNT}", timeout=scaled(60))
    assert all(disk_slot(g, n) == bytes(BLOCK) for n in range(COUNT)), "written back before the DMA"


def disk_slot(g, n: int) -> bytes:
    with open(g.disk_file, "rb") as f:
        f.seek(n * BLOCK)
        return f.read(BLOCK)


def status(g) -> dict:
    rc, out = g.run("rapilogctl status --json 2>/tmp/status.err")
    assert rc == 0, out + g.run("cat /tmp/status.err")[1]
    return json.loads(out)


def edu_name(g) -> str:
    out = g.check("edu-dma info")
    print(out.strip())
    return re.search(r"edu-dma: (\S+) BAR0", out).group(1)


def stray_dma(g) -> tuple[int, int, int, str]:
    """The device reads SOURCE's payload into its buffer and writes LENGTH
    bytes of it at AT into VICTIM's payload. Returns (VICTIM's seq, its
    payload's address, SOURCE's payload's address, the helper's output)."""
    _, src, length = find_record_seq(g, REGION_START, SOURCE * BLOCK // 512)
    seq, dst, length2 = find_record_seq(g, REGION_START, VICTIM * BLOCK // 512)
    assert length == length2 == BLOCK
    assert g.read_phys(src, BLOCK) == block(SOURCE) and g.read_phys(dst, BLOCK) == block(VICTIM)
    out = g.check(f"edu-dma from-ram {src:#x} {BLOCK} && edu-dma to-ram {dst + AT:#x} {LENGTH}",
                  timeout=scaled(120))
    print(out.strip())
    return seq, dst, src, out


def payloads_intact(g) -> None:
    for n in range(COUNT):
        _, addr, _ = find_record_seq(g, REGION_START, n * BLOCK // 512)
        assert g.read_phys(addr, BLOCK) == block(n), f"block {n}'s record changed in the region"


def test_with_an_iommu_the_stray_dma_faults_and_the_region_is_unchanged(guest_factory, module_path, ctl_bin,
                                                                       tmp_path):
    g = make_guest(guest_factory, module_path, ctl_bin, tmp_path, iommu=True)
    name = edu_name(g)
    # The unbound device has a translated default domain (strict).
    assert g.check(f"cat /sys/bus/pci/devices/{name}/iommu_group/type").strip() == "DMA"
    devices = g.check("ls /sys/bus/pci/devices").split()
    assert name in devices
    load_and_write(g, "iommu_fence=require")
    log = g.check("dmesg")
    assert f"IOMMU fence: fenced: an IOMMU translates the DMA of all {len(devices)} PCI devices" in log, log
    mark = g.console_mark()
    seq, dst, src, _ = stray_dma(g)
    # Both DMAs fault: the kernel's DMAR fault handler names the device and
    # the page (fault addresses are page-aligned).
    m_read = g.wait_console(rf"DMAR: \[DMA Read NO_PASID\] Request device \[{re.escape(name)}\] "
                            rf"fault addr {src & ~0xfff:#x} \[fault reason [^\n]*", scaled(60), since=mark)
    m_write = g.wait_console(rf"DMAR: \[DMA Write NO_PASID\] Request device \[{re.escape(name)}\] "
                             rf"fault addr {(dst + AT) & ~0xfff:#x} \[fault reason [^\n]*", scaled(60), since=mark)
    print(m_read.group(0))
    print(m_write.group(0))
    # Nothing reached the region.
    payloads_intact(g)
    # The fence held, and writeback writes every block as it was acknowledged.
    s = status(g)
    assert s["fence"] == {"state": "fenced", "policy": "require", "devices": len(devices), "unfenced": 0,
                          "unfenced_devices": []}, s["fence"]
    rc, out = g.run("rapilogctl flush --json", timeout=scaled(120))
    assert rc == 0 and json.loads(out)["dirty_after"] == 0, out
    for n in range(COUNT):
        assert disk_slot(g, n) == block(n), f"slot {n}: block {n} is not on the disk"
    assert disk_slot(g, COUNT) == bytes(BLOCK)
    s = status(g)
    assert s["writeback"]["bad_records"] == 0 and s["bad_record"] is None, s["writeback"]
    assert not any("region corruption" in p for p in s["verdict"]["problems"]), s["verdict"]
    rc, out = g.run("rapilogctl status")
    print(out)
    assert "\niommu fence   fenced: an IOMMU translates the DMA of all" in out, out
    print(f"seq {seq}: {COUNT} of {COUNT} blocks on the disk byte-exact after the faulted DMA")


def test_without_an_iommu_the_stray_dma_lands_and_the_checksum_keeps_it_off_the_disk(guest_factory, module_path,
                                                                                    ctl_bin, tmp_path):
    g = make_guest(guest_factory, module_path, ctl_bin, tmp_path, iommu=False)
    name = edu_name(g)
    load_and_write(g)
    s = status(g)
    assert s["fence"]["state"] == "unfenced" and name in s["fence"]["unfenced_devices"], s["fence"]
    assert f"IOMMU fence: PCI {name}: not behind an IOMMU: its DMA can reach the region" in g.check("dmesg")
    seq, dst, _, _ = stray_dma(g)
    # The device's write landed: the record now holds SOURCE's bytes there.
    corrupted = g.read_phys(dst, BLOCK)
    want = bytearray(block(VICTIM))
    want[AT:AT + LENGTH] = block(SOURCE)[:LENGTH]
    assert corrupted == bytes(want), "the DMA did not land as programmed"
    sector = VICTIM * BLOCK // 512

    # A drain: everything but the corrupted record reaches the disk.
    rc, out = g.run("rlio drain /dev/rapilog-ctl", timeout=scaled(120))
    assert (rc, out.strip()) == (1, "drain: Input/output error (os error 5)"), out
    for n in range(COUNT):
        got = disk_slot(g, n)
        if n == VICTIM:
            assert got != corrupted, "the corrupted record reached the log disk"
            assert got == bytes(BLOCK), f"slot {n}: something was written for the bad record"
        else:
            assert got == block(n), f"slot {n}: block {n} is not on the disk"
    lines = re.findall(rf"writeback: record seq {seq} \(sectors [^\n]*failed its check[^\n]*", g.check("dmesg"))
    assert len(lines) == 1 and f"(sectors {sector}..{sector + 8} of backing={g.dev})" in lines[0], lines
    print(lines[0])
    s = status(g)
    assert s["verdict"]["level"] == "at_risk", s["verdict"]
    assert any(p.startswith(f"writeback held at bad record seq {seq} (sectors {sector}..{sector + 8}, "
                            "payload checksum mismatch)") for p in s["verdict"]["problems"]), s["verdict"]
    b = s["bad_record"]
    assert (b["seq"], b["sector"], b["length"], b["reason"]) == (seq, sector, BLOCK, "payload_checksum"), b
    rc, out = g.run("rapilogctl status")
    print(out)
    assert rc == 0 and out.startswith("AT RISK: ") and f"\nbad record    seq {seq}, sectors" in out, out
