#!/usr/bin/env python3
"""Boot the stock kernel in QEMU and run commands in it (manual debugging).

    qemu-scripts/run-guest.py [options] [CMD ...]

Each CMD runs through the agent and its output is printed; without CMD,
commands are read from stdin, one per line (a simple guest shell; Ctrl-D
ends). The guest is killed at the end; logs stay in .cache/test-logs/NAME/.

Options mirror Guest() of the harness (tests/lib/rapilog_harness): -k KREL,
--mem, --smp, --memmap '64M$0x60000000', --crashkernel 256M, --append ARGS,
--iommu, --pvpanic, --ram-file PATH, --disk PATH:SERIAL[:SIZE[:IOPS]],
--add HOST:GUEST (KREL in GUEST is replaced), --agent virtio|serial.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))  # rapilog_harness

from rapilog_harness import DEFAULT_KREL, Disk, Guest, GuestError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
    ap.add_argument("-k", "--krel", default=DEFAULT_KREL)
    ap.add_argument("--name", default="run-guest")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--memmap", default="64M$0x60000000")
    ap.add_argument("--crashkernel")
    ap.add_argument("--append", default="")
    ap.add_argument("--iommu", action="store_true")
    ap.add_argument("--pvpanic", action="store_true")
    ap.add_argument("--ram-file")
    ap.add_argument("--disk", action="append", default=[], metavar="PATH:SERIAL[:SIZE[:IOPS]]")
    ap.add_argument("--add", action="append", default=[], metavar="HOST:GUEST")
    ap.add_argument("--agent", default="virtio", choices=("virtio", "serial"))
    ap.add_argument("--timeout", type=float, default=None, help="per command (s)")
    ap.add_argument("cmd", nargs="*")
    a = ap.parse_args()

    disks = []
    for d in a.disk:
        f = d.split(":")
        disks.append(Disk(Path(f[0]).resolve(), serial=f[1], size=f[2] if len(f) > 2 and f[2] else None,
                          iops=int(f[3]) if len(f) > 3 else None))
    files = {}
    for x in a.add:
        src, _, dst = x.partition(":")
        files[dst] = src
    rc_all = 0
    with Guest(a.name, krel=a.krel, mem=a.mem, smp=a.smp, memmap=a.memmap or None, crashkernel=a.crashkernel,
               append=a.append, iommu=a.iommu, pvpanic=a.pvpanic, ram_file=a.ram_file or False,
               disks=disks, files=files, agent=a.agent) as g:
        b = g.boot().boots[-1]
        print(f"# {b['krel']} ready after {b['t']:.1f} s; logs: {g.log_dir}", file=sys.stderr, flush=True)
        cmds = a.cmd or (line.rstrip("\n") for line in sys.stdin)
        for c in cmds:
            if not c.strip():
                continue
            try:
                rc, out = g.run(c, a.timeout)
            except GuestError as e:
                print(f"# {type(e).__name__}: {e}", file=sys.stderr)
                return 1
            sys.stdout.write(out)
            if rc:
                print(f"# exit status {rc}", file=sys.stderr)
                rc_all = rc
            sys.stdout.flush()
    return rc_all


if __name__ == "__main__":
    sys.exit(main())
