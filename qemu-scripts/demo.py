#!/usr/bin/env python3
"""`make demo`: boot the unmodified Debian kernel under QEMU and show rapilog in it.

What it shows grows with the driver; today: the stock kernel, the module
loading with its parameters, a refused bad parameter, and a clean unload.
Runs with the host's python3 (the harness in tests/lib is stdlib only).
"""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

from guest import Guest, LOG_ROOT  # noqa: E402

KREL = os.environ.get("KREL") or "7.3.4+deb13-amd64"
REGION_BOOT, REGION_PARAM = "64M$0x60000000", "64M@0x60000000"


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def show(g: Guest, cmd: str) -> int:
    rc, out = g.run(cmd)
    print(f"guest# {cmd}")
    for line in out.rstrip("\n").splitlines():
        print(f"  {line}")
    if rc:
        print(f"  (exit status {rc})")
    return rc


def main() -> int:
    subprocess.run([str(REPO / "qemu-scripts/host-deps.sh")], check=True)
    step(f"building rapilog.ko against the stock {KREL} headers")
    ko = subprocess.run([str(REPO / "kernels/build-module.sh"), KREL], check=True,
                        stdout=subprocess.PIPE, text=True).stdout.strip()
    print(ko)

    step(f"booting the unmodified Debian kernel {KREL} (QEMU, TCG) with memmap={REGION_BOOT}")
    with Guest("demo", krel=KREL, memmap=REGION_BOOT, log_dir=LOG_ROOT / "demo",
               files={"/lib/modules/KREL/extra/rapilog.ko": ko}) as g:
        g.boot()
        print(f"booted in {g.ready_times[-1]:.1f} s; console log: {g.log_dir / 'console.log'}")
        show(g, "uname -r")
        show(g, "grep -i reserved /proc/iomem | grep -i 60000000")

        step("loading rapilog")
        show(g, f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko region={REGION_PARAM} backing=/dev/vda")
        show(g, "dmesg | grep rapilog")
        show(g, "grep . /sys/module/rapilog/parameters/*")
        show(g, "rmmod rapilog && dmesg | grep rapilog | tail -n 1")

        step("a bad parameter is refused with one clear line")
        show(g, "dmesg -c >/dev/null; insmod /lib/modules/$(uname -r)/extra/rapilog.ko "
                "region=64M@0x60000001 backing=/dev/vda")
        show(g, "dmesg | grep rapilog")
    step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
