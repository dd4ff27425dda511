#!/usr/bin/env python3
"""Measure boot-to-agent-ready times of the QEMU guest (the numbers behind
BOOT_MEASURED_S in tests/lib/rapilog_harness/config.py).

    qemu-scripts/measure-boot.py [-k KREL] [-n SAMPLES] [--iommu] [--append ARGS]

Prints, per sample, the host time from QEMU start (unpaused) to the agent's
READY line and the guest's uptime at that moment, then min/median/max.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))  # rapilog_harness

from rapilog_harness import DEFAULT_KREL, Guest, build_initramfs, fetch_kernel  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", "--krel", default=DEFAULT_KREL)
    ap.add_argument("-n", "--samples", type=int, default=5)
    ap.add_argument("--iommu", action="store_true")
    ap.add_argument("--ram-file", action="store_true")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--append", default="")
    a = ap.parse_args()

    t = time.monotonic()
    fetch_kernel(a.krel)
    build_initramfs(a.krel)
    print(f"kernel + initramfs ready in {time.monotonic() - t:.1f} s", flush=True)
    host, guest = [], []
    for i in range(a.samples):
        with Guest(f"measure-boot-{i}", krel=a.krel, mem=a.mem, memmap="64M$0x60000000", iommu=a.iommu,
                   ram_file=a.ram_file, append=a.append) as g:
            b = g.boot().boots[-1]
            assert g.check("uname -r").strip() == a.krel
            host.append(b["t"])
            guest.append(b["uptime"])
            print(f"sample {i + 1}: agent ready {b['t']:.2f} s after QEMU start "
                  f"(guest uptime {b['uptime']:.2f} s)", flush=True)
    print(f"{a.krel} iommu={a.iommu} ram_file={a.ram_file} append={a.append!r}: host "
          f"min {min(host):.2f} median {statistics.median(host):.2f} max {max(host):.2f} s; guest uptime "
          f"median {statistics.median(guest):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
