#!/usr/bin/env python3
"""`make demo`: rapilog in the unmodified Debian kernel, under QEMU.

1. A log disk throttled to 200 IOPS (a 10k rpm disk): synchronous 4 KiB
   writes straight to it, then through /dev/rapilog0 on an identical disk.
2. The crash path: the crash kernel is armed, 200 numbered blocks are written
   and acknowledged while writeback is held back (they exist only in the
   region), the kernel panics, the crash kernel's rapilog-rescue replays the
   region, the machine reboots, and the host checks every block on the disk.

The guest runs the stock kernel with a small Debian trixie userland
(qemu-scripts/build-rootfs.sh). Runs with the host's python3 (the harness,
tests/lib/rapilog_harness, is stdlib only).
"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))  # rapilog_harness

from rapilog_harness import CACHE, LOG_ROOT, Disk, Guest, GuestError, build_rootfs, fetch_kernel, scaled  # noqa: E402

KREL = os.environ.get("KREL") or "7.3.4+deb13-amd64"
REGION_BOOT, REGION_PARAM = "64M$0x60000000", "64M@0x60000000"
BLOCKS = 200
TTY = sys.stdout.isatty()


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if TTY else f"\n== {title}", flush=True)


def show(g: Guest, cmd: str, timeout: float | None = None) -> str:
    rc, out = g.run(cmd, timeout=timeout)
    print(f"guest# {cmd}")
    for line in out.rstrip("\n").splitlines():
        print(f"  {line}")
    if rc:
        raise SystemExit(f"demo: the command above failed with exit status {rc}")
    return out


class SetupFailed(Exception):
    """A setup step failed; the message is the one line a user needs."""


def build(*cmd: str) -> str:
    """Runs a build script of the repository; returns the path it prints last."""
    out = subprocess.run([str(REPO / cmd[0]), *cmd[1:]], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def setup(what: str, log: str, fix: str, fn, *args, **kwargs):
    """Runs one setup step; a failure becomes SetupFailed naming the step, the
    log to read and the likely fix (the step's own error lines come first)."""
    try:
        return fn(*args, **kwargs)
    except (subprocess.CalledProcessError, GuestError, OSError) as e:
        why = f"exit status {e.returncode}" if isinstance(e, subprocess.CalledProcessError) else \
            str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SetupFailed(f"demo: setup step '{what}' failed ({why}); log: {log}; likely fix: {fix}") from None


def sync_write_rate(g: Guest, dev: str) -> float:
    """Writes/s of BLOCKS synchronous 4 KiB O_DIRECT writes to dev (dd's own timing)."""
    out = show(g, f"dd if=/dev/zero of={dev} bs=4096 count={BLOCKS} oflag=direct,dsync 2>&1 | tail -n 1",
               timeout=scaled(120))
    m = re.search(r"copied, ([0-9.]+) s", out)
    if not m:
        raise SystemExit(f"demo: cannot read dd's timing from {out!r}")
    return BLOCKS / float(m.group(1))


def main() -> int:
    setup("host packages", "the apt output above", "check that apt reaches the Debian archive (apt-get update)",
          subprocess.run, [str(REPO / "qemu-scripts/host-deps.sh")], check=True)
    step(f"building rapilog.ko against the stock {KREL} headers, and the crash kernel's rescue initramfs")
    kbuild = CACHE / "kbuild" / KREL
    ko = setup("module build", f"{kbuild}/*.log",
               f"if the archive dropped a pinned version, bump kernels/{KREL}.env (kernels/README.md); "
               f"a broken chroot: rm -r {kbuild} and run again", build, "kernels/build-module.sh", KREL)
    kdir = setup("stock kernel download", "the lines above",
                 f"check that the Debian archive serves the kernel pinned in kernels/{KREL}.env",
                 fetch_kernel, KREL)
    rescue = setup("rescue initramfs", "the lines above", "run rapilog-rescue/build-initramfs.sh -h",
                   build, "rapilog-rescue/build-initramfs.sh", "-k", KREL, "-r", str(kdir / "root"))
    print(ko, rescue, sep="\n")
    step("the guest's Debian userland (debootstrap, cached after the first run)")
    rootfs = setup("guest rootfs", f"{CACHE}/guest/{KREL}/rootfs/*.debootstrap.log",
                   "read the error line above; a tree left behind by an interrupted run: "
                   f"rm -r {CACHE}/guest/{KREL}/rootfs and run again", build_rootfs, KREL)
    print(rootfs)

    work = Path(tempfile.mkdtemp(prefix="rapilog-demo-"))
    log_img = work / "log.img"
    disks = [Disk(log_img, serial="rl-log", size="64M", iops=200),
             Disk(work / "raw.img", serial="rl-raw", size="64M", iops=200)]
    step(f"booting the unmodified Debian kernel {KREL} (QEMU, TCG) with memmap={REGION_BOOT} crashkernel=256M")
    # The Debian rootfs: coreutils dd (oflag=dsync) and Debian's kexec-tools.
    with Guest("demo", krel=KREL, memmap=REGION_BOOT, crashkernel="256M", disks=disks, rootfs=rootfs,
               log_dir=LOG_ROOT / "demo",
               files={"/lib/modules/KREL/extra/rapilog.ko": ko, "/boot/vmlinuz": kdir / "vmlinuz",
                      "/boot/rescue.cpio.gz": rescue}) as g:
        setup("guest boot", str(LOG_ROOT / "demo" / "console.log"),
              "read the console log; QEMU must be >= 10 (qemu-scripts/host-deps.sh)", g.boot)
        print(f"booted in {g.ready_times[-1]:.1f} s; console log: {g.log_dir / 'console.log'}")
        show(g, "uname -r")

        step(f"{BLOCKS} synchronous 4 KiB writes on the raw log disk (throttled to 200 IOPS)")
        raw = sync_write_rate(g, "$(disk-by-serial rl-raw)")

        step("the same through rapilog (writes complete once they are in the protected region)")
        insmod = (f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko region={REGION_PARAM} "
                  "backing=$(disk-by-serial rl-log) disk_id=serial:rl-log")
        show(g, insmod + " writeback_delay_ms=60000")
        show(g, "dmesg | grep rapilog: | tail -n 3")
        fast = sync_write_rate(g, "/dev/rapilog0")
        print(f"\n  raw disk: {raw:8.0f} sync writes/s\n  rapilog : {fast:8.0f} sync writes/s "
              f"({fast / raw:.0f}x; TCG-emulated, so ratios matter, not absolute numbers)")

        step("arming the crash kernel (kexec -p, the command rapilog-arm builds)")
        append = "console=ttyS0 nr_cpus=1 irqpoll reset_devices panic=-1 " \
                 f"rapilog.region={REGION_PARAM} rapilog.disk=serial:rl-log"
        show(g, f"kexec -p /boot/vmlinuz --initrd=/boot/rescue.cpio.gz --append='{append}'", timeout=scaled(60))

        step(f"writing {BLOCKS} numbered blocks; each is acknowledged once it is in the region")
        show(g, f"for i in $(seq 0 {BLOCKS - 1}); do printf 'block %08d ' $i | dd of=/tmp/b bs=4096 count=1 "
                "conv=sync 2>/dev/null; cat /tmp/b; done > /tmp/all && "
                "dd if=/tmp/all of=/dev/rapilog0 bs=4096 oflag=direct conv=fsync 2>&1 | tail -n 1",
             timeout=scaled(120))
        on_disk = log_img.read_bytes()[: BLOCKS * 4096]
        print(f"  blocks already on the log disk (read by the host): "
              f"{sum(on_disk[i * 4096:].startswith(b'block ') for i in range(BLOCKS))} of {BLOCKS}")

        step("kernel panic (echo c > /proc/sysrq-trigger): the crash kernel replays the region")
        mark = g.console_mark()
        g.send("echo c > /proc/sysrq-trigger")
        m = g.wait_console(r"rapilog-rescue: report .*", scaled(120), since=mark)
        for _, line in g.console[mark:]:
            if "rapilog-rescue" in line or "Kernel panic" in line:
                print(f"  console: {line.strip()}")
            if line.strip().endswith(m.group(0)):
                break
        g.wait_booted(scaled(120))
        print("  rebooted")

        step("checking the log disk from the host: every acknowledged block must be there")
        data = log_img.read_bytes()[: BLOCKS * 4096]
        missing = [i for i in range(BLOCKS) if not data[i * 4096:].startswith(b"block %08d " % i)]
        print(f"  {BLOCKS - len(missing)} of {BLOCKS} acknowledged blocks on the disk, {len(missing)} lost")
        show(g, insmod)
        show(g, "dmesg | grep rapilog: | tail -n 2")
        show(g, "dd if=/dev/rapilog0 bs=4096 skip=199 count=1 2>/dev/null | head -c 14; echo")
    step("done" if not missing else "FAILED: acknowledged writes were lost")
    return 0 if not missing else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupFailed as e:
        print(f"\n{e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except GuestError as e:
        print(f"\n{e}", file=sys.stderr)
        print(f"\ndemo: FAILED in the guest ({type(e).__name__}); console log: {LOG_ROOT / 'demo' / 'console.log'}",
              file=sys.stderr, flush=True)
        sys.exit(1)
