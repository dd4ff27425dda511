"""Paths, the default kernel and the timeouts of the harness.

Every timeout is a multiple of a time measured on this project's machine
kind (the measurements are in the comments below) and scales with
$RAPILOG_TIMEOUT_SCALE (e.g. 3 on a slow CI).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "qemu-scripts"
CACHE = Path(os.environ.get("RAPILOG_CACHE", REPO / ".cache"))
LOG_ROOT = CACHE / "test-logs"
DEFAULT_KREL = os.environ.get("RAPILOG_KREL", "7.3.4+deb13-amd64")
QEMU = os.environ.get("RAPILOG_QEMU", "qemu-system-x86_64")

# --- timeouts ------------------------------------------------------------------
# Boot-to-agent-ready, measured on this project's machine kind (2 cores, QEMU
# 10.0.2 TCG, -smp 2 -m 2G, memmap region, stock kernel + busybox initramfs;
# host seconds from QEMU start to the agent's READY line) on 2026-11-23 with
# qemu-scripts/measure-boot.py:
#   7.3.4+deb13-amd64   6.19 6.54 6.73 7.21 7.22 7.94  (median 6.97)
#     + intel-iommu     6.24 6.65 9.23; shared-file RAM 6.46 6.83 8.04
#     + "quiet"         5.38 5.56 5.79
#   7.2.13+deb14-amd64  8.05 8.27 8.68 9.76            (median 8.48)
# Timeouts derive from the slower kernel's median: 5x + 20 s.
BOOT_MEASURED_S = 8.5
TIMEOUT_SCALE = float(os.environ.get("RAPILOG_TIMEOUT_SCALE", "1") or 1)


def scaled(seconds: float) -> float:
    """A timeout in seconds, scaled by $RAPILOG_TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


BOOT_TIMEOUT = scaled(5 * BOOT_MEASURED_S + 20)  # 62.5 s at scale 1
# Guest(rootfs=...): boot to agent ready with the Debian rootfs image
# (initramfs -> rapilog-root-init -> switch_root -> busybox init + rcS +
# agent), 7.3.4+deb13-amd64, same host seconds as above, measured 2026-11-23
# interleaved with initramfs boots while other guests loaded the host
# (load average 3.5-5.7 on 2 cores):
#   rootfs     10.30 14.92 15.37 15.66 18.16  (median 15.4; guest uptime 11.4)
#   initramfs   9.38  9.56 11.96 12.56 17.54  (median 12.0; uptime 6.8)
# and 11.1 12.3 14.2 s for the rootfs on a less loaded host: ~1.3-1.6x the
# initramfs (Debian's dynamically linked tools start slowly under TCG, on a
# cold page cache). The timeout derives from the loaded median: 5x + 20 s.
ROOTFS_BOOT_MEASURED_S = 15.4
ROOTFS_BOOT_TIMEOUT = scaled(5 * ROOTFS_BOOT_MEASURED_S + 20)  # 97 s at scale 1
# build-rootfs.sh from scratch (empty cache, kernel already fetched), measured
# 2026-11-23 with other guests running (load 4-5 on 2 cores): debootstrap
# 139 s (first stage: 73 MB of .debs from the Debian archive + extract 66 s;
# second stage with dpkg force-unsafe-io 73 s), modules + depmod +
# mkfs.ext4 -d 14 s: 152.8 s (an earlier one-stage run: 135.5 s). In a fresh
# clone at load ~3 (test_rootfs.py paying it): 84.5 s (debootstrap 73.8 s,
# pack 10.7 s). The timeout uses the slowest. The first Guest(rootfs=...) of
# a fresh checkout pays it; cached afterwards (~0.1 s); a change of the boot
# files only repacks (~15-25 s).
ROOTFS_BUILD_MEASURED_S = 152.8
ROOTFS_BUILD_TIMEOUT = scaled(5 * ROOTFS_BUILD_MEASURED_S + 120)  # 884 s: a hung download fails, not hangs
# How long an incomplete console line must stay unchanged before a match
# reaching its end counts (ConsoleMixin.wait_console).
PARTIAL_SETTLE_S = 1.0
CMD_TIMEOUT = scaled(60)  # default for run()/check()
QMP_TIMEOUT = scaled(10)
EXIT_TIMEOUT = scaled(30)
