"""Orderly stops lose nothing: every acknowledged write is on the log disk
before the machine goes down in an ordinary way (rapilog-blk/lifecycle.rs).

Each test acknowledges numbered 4 KiB blocks (`rlio numbered`: O_DIRECT +
fdatasync each) with writeback_delay_ms=60000, so that at the stop every one
of them is only in the region (checked on the disk image from the host
first), then stops the machine one way and reads the log disk image from the
host: every block must be there, byte for byte. Guest RAM is not kept (no RAM
file): after the stop the region is gone with QEMU, as after a power-off or a
reboot whose firmware wipes memory.
"""
import hashlib
import re

import pytest

from rapilog_harness import REPO, Disk, QMPError, fetch_kernel, scaled
from rapilog_harness.crashload import block, rlio_binary
from rapilog_harness.images import _run_script

REGION = "64M$0x60000000"
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
SERIAL = "rl-log"
BLOCKS = 200
DRAIN_LINE = r"rapilog: shutdown drain: (\d+) bytes in ([0-9.]+) ms \(([a-z-]+)\)"


def missing_blocks(disk, first: int = 0, count: int = BLOCKS) -> list[int]:
    data = disk.read_bytes()
    return [n for n in range(first, first + count) if data[n * 4096:(n + 1) * 4096] != block(n)]


def boot(guest_factory, tmp_path, *, kexec: bool = False, **kw):
    disk = tmp_path / "log.img"
    files = {KO: kw.pop("module_path"), "/usr/bin/rlio": rlio_binary(), **kw.pop("extra_files", {})}
    overlays = []
    if kexec:
        overlays.append(_run_script([str(REPO / "rapilog-rescue/fetch-kexec-tools.sh"), kw["krel"]]))
        files["/boot/vmlinuz"] = kw.pop("vmlinuz")
    kw.pop("krel", None)
    disks = [Disk(disk, serial=SERIAL, size="64M", iops=200), *kw.pop("extra_disks", [])]
    g = guest_factory(memmap=REGION, disks=disks, files=files, overlays=overlays, **kw)
    g.boot()
    return g, disk


def load(g, options: str = "writeback_delay_ms=60000") -> str:
    g.check("dmesg -c > /dev/null")
    g.check(f"{INSMOD} region={REGION_PARAM} backing=$(disk-by-serial {SERIAL}) disk_id=serial:{SERIAL} {options}",
            timeout=scaled(120))
    return g.check("dmesg")


def acknowledge(g, disk, first: int = 0, count: int = BLOCKS) -> None:
    """count numbered blocks acknowledged by /dev/rapilog0, none on the disk yet."""
    g.check(f"rlio numbered /dev/rapilog0 {first} 100000 {count} > /dev/null", timeout=scaled(120))
    assert len(missing_blocks(disk, first, count)) == count, "writeback ran before the stop: the test proves nothing"


def drain_line(g, since: int) -> re.Match:
    m = g.wait_console(DRAIN_LINE, scaled(60), since=since)
    assert int(m.group(1)) == BLOCKS * 4096, m.group(0)
    return m


@pytest.mark.parametrize("command", ["poweroff -f", "poweroff"])
def test_power_off_drains_the_region(guest_factory, tmp_path, module_path, command):
    # `poweroff -f` is what the last stage of an orderly shutdown does (sync,
    # then the reboot system call); plain `poweroff` has busybox init run its
    # shutdown actions and kill every process first.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path)
    load(g)
    acknowledge(g, disk)
    mark = g.console_mark()
    g.send(command)
    m = drain_line(g, mark)
    assert m.group(3) == "power-off"
    g.wait_exit(scaled(120))
    assert missing_blocks(disk) == []


def test_reboot_with_memory_wiped_loses_nothing(guest_factory, tmp_path, module_path):
    # -no-reboot: QEMU exits at the reset instead of rebooting, so the next
    # boot starts with zeroed RAM: the firmware wiped memory.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, no_reboot=True)
    load(g)
    acknowledge(g, disk)
    mark = g.console_mark()
    g.send("reboot -f")
    assert drain_line(g, mark).group(3) == "reboot"
    g.wait_exit(scaled(120))
    assert missing_blocks(disk) == []
    # The next boot finds a zeroed region and a disk that holds everything.
    g.start()
    g.wait_booted(scaled(120))
    log = load(g, "")
    assert "/dev/rapilog0:" in log, log
    got = g.check(f"dd if=/dev/rapilog0 bs=4096 count={BLOCKS} 2>/dev/null | sha256sum").split()[0]
    assert got == hashlib.sha256(b"".join(block(n) for n in range(BLOCKS))).hexdigest()


def test_halt_drains_the_region(guest_factory, tmp_path, module_path):
    g, disk = boot(guest_factory, tmp_path, module_path=module_path)
    load(g)
    acknowledge(g, disk)
    mark = g.console_mark()
    g.send("halt -f")
    assert drain_line(g, mark).group(3) == "halt"
    g.wait_console(r"reboot: System halted", scaled(60), since=mark)
    assert missing_blocks(disk) == []


def test_kexec_reboot_drains_the_region(guest_factory, tmp_path, module_path, krel):
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, kexec=True, krel=krel,
                   vmlinuz=fetch_kernel(krel) / "vmlinuz")
    load(g)
    g.check("kexec -l /boot/vmlinuz --append='console=ttyS0 panic=-1'", timeout=scaled(60))
    acknowledge(g, disk)
    mark = g.console_mark()
    g.send("kexec -e")
    assert drain_line(g, mark).group(3) == "reboot"
    # The next kernel is starting: everything was on the disk before it did.
    g.wait_console(r"Linux version", scaled(120), since=mark)
    assert missing_blocks(disk) == []


def test_writes_after_the_drain_go_to_the_disk(guest_factory, tmp_path, module_path):
    # A suspend drains like a stop, then passes writes through until resume:
    # QMP system_wakeup resumes the machine; the region is formatted afresh
    # and buffers again.
    # The agent on a serial port: a virtio-serial port does not come back
    # from S3 here. The guest may wake by itself at once; else QMP wakes it.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, agent="serial",
                   qemu_args=["-global", "ICH9-LPC.disable_s3=0"])
    load(g)
    acknowledge(g, disk)
    mark, events = g.console_mark(), g.event_mark()
    rid = g.send("echo mem > /sys/power/state")
    m = g.wait_console(r"rapilog: suspend drain: (\d+) bytes in ([0-9.]+) ms", scaled(60), since=mark)
    assert int(m.group(1)) == BLOCKS * 4096
    assert missing_blocks(disk) == []
    g.wait_event("SUSPEND", scaled(60), since=events)
    try:
        g.qmp("system_wakeup")
    except QMPError:
        pass  # already awake
    g.wait_console(r"rapilog: resumed: region=\S+ formatted afresh", scaled(60), since=mark)
    rc, _ = g.result(rid, scaled(60))
    assert rc == 0
    # Buffered again: new blocks only in the region, readable, and drained
    # by the next stop.
    acknowledge(g, disk, first=BLOCKS, count=BLOCKS)
    mark = g.console_mark()
    g.send("poweroff -f")
    drain_line(g, mark)
    # QEMU's ACPI power-off does not work after an S3 resume (the kernel
    # gives up after 10 s): the drain is what matters.
    g.wait_console(r"reboot: Power down", scaled(60), since=mark)
    g.kill()
    assert missing_blocks(disk, 0, 2 * BLOCKS) == []


def test_hibernation_drains_before_the_image(guest_factory, tmp_path, module_path):
    # The region is not part of a hibernation image: it must be drained
    # before the image is made. Hibernate to a swap disk, then power off.
    swap = tmp_path / "swap.img"
    g, disk = boot(guest_factory, tmp_path, module_path=module_path,
                   extra_disks=[Disk(swap, serial="rl-swap", size="1G")])
    g.check("mkswap $(disk-by-serial rl-swap) > /dev/null && swapon $(disk-by-serial rl-swap)")
    load(g)
    acknowledge(g, disk)
    mark = g.console_mark()
    g.send("echo shutdown > /sys/power/disk && echo 0 > /sys/power/image_size && echo disk > /sys/power/state")
    m = g.wait_console(r"rapilog: hibernation drain: (\d+) bytes in ([0-9.]+) ms", scaled(60), since=mark)
    assert int(m.group(1)) == BLOCKS * 4096
    assert missing_blocks(disk) == []
    g.wait_exit(scaled(600))
    assert missing_blocks(disk) == []


def test_a_drain_that_cannot_finish_is_bounded_and_the_region_replays(guest_factory, tmp_path, module_path):
    # The log disk slows to 1 request/s at the stop: the drain gives up after
    # stop_drain_ms, says so, and leaves the region consistent. Guest RAM is
    # kept in a file (memory that survives, as on a warm reboot): the next
    # load replays what the drain could not write.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, ram_file=True)
    load(g, "writeback_delay_ms=60000 stop_drain_ms=2000")
    acknowledge(g, disk)
    # QEMU lets one request through a throttle at once, whatever its size:
    # a 1 MiB read spends ~256 s of it, and the drain's writes then wait.
    # In the background: the block layer may split the read, and its later
    # pieces wait too.
    g.set_throttle(SERIAL, 1)
    g.check(f"setsid dd if=$(disk-by-serial {SERIAL}) of=/dev/null bs=1M count=1 iflag=direct "
            "</dev/null >/dev/null 2>&1 & sleep 1")
    mark = g.console_mark()
    g.send("poweroff -f")
    m = g.wait_console(r"rapilog: shutdown drain incomplete after ([0-9.]+) ms \(power-off\): (\d+) records",
                       scaled(60), since=mark)
    assert float(m.group(1)) >= 2000, m.group(0)  # it waited stop_drain_ms, then gave up
    assert int(m.group(2)) > 0
    g.wait_exit(scaled(120))
    g.start()
    g.wait_booted(scaled(120))
    g.set_throttle(SERIAL, 0)
    log = load(g, "")
    assert re.search(r"replayed \d+ records", log), log
    g.check("rmmod rapilog", timeout=scaled(120))
    assert missing_blocks(disk) == []


RESUME_HOOK = """#!/bin/sh
# Resume from the hibernation image on the swap disk, if there is one: the
# initramfs loads virtio_blk, so the kernel's own resume= comes too early.
dev=$(disk-by-serial rl-swap) || exit 0
cat /sys/block/${dev#/dev/}/dev > /sys/power/resume
"""


def test_hibernate_and_resume(guest_factory, tmp_path, module_path):
    # Writes before the hibernation are on the disk before the image is
    # made; after the resume (a reboot that restores the image) the driver
    # serves from a region formatted afresh: reads return the newest data,
    # new writes are buffered again and drained by the next stop.
    swap = tmp_path / "swap.img"
    hook = tmp_path / "05-resume"
    hook.write_text(RESUME_HOOK)
    hook.chmod(0o755)
    # The agent on a serial port: a virtio-serial port does not come back
    # from a restored image here.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, agent="serial",
                   extra_disks=[Disk(swap, serial="rl-swap", size="1G")],
                   extra_files={"/etc/rapilog/init.d/05-resume": hook})
    g.check("mkswap $(disk-by-serial rl-swap) > /dev/null && swapon $(disk-by-serial rl-swap)")
    load(g)
    acknowledge(g, disk)
    boot_id = g.check("cat /proc/sys/kernel/random/boot_id").strip()
    mark = g.console_mark()
    rid = g.send("echo reboot > /sys/power/disk && echo 0 > /sys/power/image_size && echo disk > /sys/power/state")
    m = g.wait_console(r"rapilog: hibernation drain: (\d+) bytes in ([0-9.]+) ms", scaled(60), since=mark)
    assert int(m.group(1)) == BLOCKS * 4096
    g.wait_console(r"rapilog: resumed: region=\S+ formatted afresh", scaled(600), since=mark)
    rc, _ = g.result(rid, scaled(120))
    assert rc == 0
    # The same kernel instance, restored from the image.
    assert g.check("cat /proc/sys/kernel/random/boot_id").strip() == boot_id
    assert missing_blocks(disk) == []
    want = lambda first: hashlib.sha256(b"".join(block(n) for n in range(first, first + BLOCKS))).hexdigest()  # noqa: E731
    read = lambda first: g.check(  # noqa: E731
        f"dd if=/dev/rapilog0 bs=4096 skip={first} count={BLOCKS} 2>/dev/null | sha256sum").split()[0]
    assert read(0) == want(0)
    acknowledge(g, disk, first=BLOCKS, count=BLOCKS)
    assert read(BLOCKS) == want(BLOCKS)
    mark = g.console_mark()
    g.send("poweroff -f")
    drain_line(g, mark)
    g.wait_exit(scaled(120))
    assert missing_blocks(disk, 0, 2 * BLOCKS) == []


def test_a_wiped_region_is_a_loss_that_is_never_silent(guest_factory, tmp_path, module_path, ctl_bin):
    # Records acknowledged, then a stop that neither drains nor replays
    # (sysrq-b: an immediate reset, no notifiers), and the memory wiped
    # before the next load (the host zeroes the region in the guest's RAM
    # file, as a firmware scrub would). The disk's marker still says `Live`.
    g, disk = boot(guest_factory, tmp_path, module_path=module_path, ram_file=True,
                   extra_files={"/bin/rapilogctl": ctl_bin})
    load(g)
    acknowledge(g, disk)
    g.send("echo b > /proc/sysrq-trigger")
    g.wait_booted(scaled(120))
    start, size = 0x60000000, 64 << 20
    g.write_phys(start, bytes(size))
    before = disk.read_bytes()
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} region={REGION_PARAM} backing=$(disk-by-serial {SERIAL}) disk_id=serial:{SERIAL}",
                    timeout=scaled(120))
    log = out + g.check("dmesg")
    assert rc != 0, log
    assert re.search(r"rapilog: backing=\S+ refused: the log disk's marker says .* acknowledged writes may have "
                     r"been lost", log), log
    assert disk.read_bytes() == before, "a refused load wrote to the disk"
    # The administrator accepts it: the device goes live, and says so.
    log = load(g, "accept_loss=1")
    assert "accepted (accept_loss=1)" in log, log
    out = g.check("rapilogctl status")
    print(out)
    assert re.search(r"(?i)possible loss", out), out
    g.check("rmmod rapilog", timeout=scaled(120))
    # A clean unload clears it: the next load goes live without a word.
    log = load(g, "")
    assert "refused" not in log and "accept_loss" not in log, log
