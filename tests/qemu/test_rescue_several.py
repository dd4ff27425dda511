"""rapilog-rescue replaying several regions in the crash kernel, one of
them for a disk that is absent: the others still land on their disks.

Three regions, slices of one memmap= range (as three rapilog devices would
have them), each for its own disk: rl-a and rl-c are attached, rl-b is not.
The region images are built on the host (rapilog-rescue's make-test-image
example, records written as the kernel writer writes them) and put into
guest RAM through the shared RAM file, so the test does not need the
driver: the crash kernel is armed by kexec-tools-config/rapilog-arm from a
three-device rapilog.conf (the line it builds names every region and disk
in pairs), a panic boots it, rapilog-rescue replays regions 0 and 2, fails
region 1 without stopping, says so, and reboots. The host reads both disks
byte for byte and region 1 from guest RAM (untouched, still for the
module's own replay at its next load).
"""
import re
import shutil
import subprocess

import pytest

from rapilog_harness import REPO, Disk, fetch_kernel, parse_memmap, scaled
from rapilog_harness.crashload import PANIC, SUMMARY, Device, config_devices, rescue_reports, rescue_words

MEMMAP = "64M$0x60000000"
START, _ = parse_memmap(MEMMAP)
SLICE = 16 << 20
DEVICES = [Device(f"16M@{START + k * SLICE:#x}", serial, backing)
           for k, (serial, backing) in enumerate([("rl-a", None), ("rl-b", "/dev/disk/by-id/virtio-rl-b"),
                                                   ("rl-c", None)])]
ABSENT = 1


def _last_line(args: list) -> str:
    return subprocess.run([str(a) for a in args], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip().splitlines()[-1]


def newest_state(region_head: bytes) -> int:
    """The state of the superblock copy with the newer generation (FORMAT.md:
    1 clean, 2 dirty); the report's checksums are rapilog-rescue's own test."""
    copies = [region_head[c * 512:(c + 1) * 512] for c in (0, 1)]
    copies = [sb for sb in copies if sb[:8] == b"RAPILOGS"]
    assert copies, "no superblock"
    newest = max(copies, key=lambda sb: int.from_bytes(sb[16:24], "little"))
    return int.from_bytes(newest[12:16], "little")


@pytest.mark.slow
def test_crash_kernel_replays_every_region_and_survives_a_missing_disk(guest_factory, test_image_tool, krel,
                                                                      tmp_path):
    rescue = _last_line([REPO / "rapilog-rescue/build-static.sh"])
    kexec = _last_line([REPO / "rapilog-rescue/fetch-kexec-tools.sh", krel])
    kdir = fetch_kernel(krel)
    cpio = _last_line([REPO / "rapilog-rescue/build-initramfs.sh", "-k", krel, "-r", kdir / "root",
                       "-b", rescue, "-o", tmp_path / "rescue.cpio.gz"])
    images = []
    for k, d in enumerate(DEVICES):
        out = tmp_path / f"image-{d.serial}"
        subprocess.run([test_image_tool, "--out", str(out), "--disk-id", f"serial:{d.serial}",
                        "--region-bytes", "16M", "--seed", str(20 + k), "--records", "24"],
                       check=True, stdout=subprocess.DEVNULL)
        images.append(out)
    disks = {}
    for k, d in enumerate(DEVICES):
        if k != ABSENT:
            disks[k] = tmp_path / f"{d.serial}.img"
            shutil.copy(images[k] / "disk.img", disks[k])
    g = guest_factory(memmap=MEMMAP, crashkernel="256M", ram_file=True, overlays=[kexec],
                      disks=[Disk(path, serial=DEVICES[k].serial) for k, path in disks.items()],
                      files={"/boot/vmlinuz": kdir / "vmlinuz", "/boot/rescue.cpio.gz": cpio,
                             "/usr/sbin/rapilog-arm": REPO / "kexec-tools-config/rapilog-arm"})
    first = g.boot().boots[-1]["boot_id"]
    regions = [(images[k] / "region.img").read_bytes() for k in range(len(DEVICES))]
    for k, region in enumerate(regions):
        assert len(region) == SLICE
        g.write_phys(START + k * SLICE, region)

    # The crash kernel line, built by rapilog-arm from a three-device rapilog.conf.
    conf = config_devices(DEVICES, crash_console="console=ttyS0,115200", crash_append="rapilog.wait=5")
    g.check("mkdir -p /etc/rapilog && cat > /etc/rapilog/rapilog.conf <<'EOF'\n" + conf + "EOF")
    words = rescue_words([(d.region, f"serial:{d.serial}") for d in DEVICES])
    assert words in g.check("rapilog-arm command"), conf
    g.check("rapilog-arm arm", timeout=scaled(60))
    assert g.check("rapilog-arm status").strip() == "armed"

    mark = g.console_mark()
    g.send("echo c > /proc/sysrq-trigger")
    g.wait_console(PANIC, scaled(30), since=mark)
    m = g.wait_console(SUMMARY, scaled(180), since=mark)
    info = g.wait_booted(scaled(180))
    assert info["boot_id"] != first
    console = g.console_text(mark)
    print("\n".join(line for line in console.splitlines() if "rapilog-rescue" in line))

    # What rapilog-rescue said: two regions replayed, region 1 failed and named.
    absent = DEVICES[ABSENT]
    assert (m.group(1), m.group(2)) == ("2", "3"), m.group(0)
    assert m.group(3).strip() == f"; region {ABSENT} ({absent.region}): exit 4, disk refused or not found", m.group(0)
    assert re.search(rf"rapilog-rescue: FAILED \(exit 4\): region {ABSENT} \({absent.region}\): "
                     rf"no disk has identity serial:{absent.serial} ", console), console[-3000:]
    reports = rescue_reports(console)
    assert sorted(reports) == [0, 2], reports
    for k in (0, 2):
        assert reports[k]["exit"] == "0" and reports[k]["region"] == "written", reports[k]
    assert "rapilog-rescue: done in" in console and "(exit 4), rebooting" in console, console[-3000:]

    # The host reads the disks and the regions: every record of regions 0
    # and 2 on its disk, their regions clean; region 1 exactly as it was.
    for k, path in disks.items():
        assert path.read_bytes() == (images[k] / "expected.img").read_bytes(), f"{DEVICES[k].serial} differs"
        assert newest_state(g.read_phys(START + k * SLICE, 1024)) == 1, f"region {k} not clean"
    assert g.read_phys(START + ABSENT * SLICE, SLICE) == regions[ABSENT], "region 1 changed"
    assert newest_state(regions[ABSENT][:1024]) == 2
