#!/usr/bin/env bash
# `make ha-test`: two QEMU guests, DRBD protocol C over rapilog, commit
# latency against DRBD on the raw disk, and the primary killed outright
# (tests/ha/test_drbd.py; docs/two-nodes.md). Not part of `make test`.
#
#   tests/ha/run.sh [pytest args]
#
# Builds what it needs under .cache/ (host packages, rapilog.ko, the test
# venv, a rootfs image with drbd-utils and postgresql). Env: RAPILOG_KO=path
# uses that rapilog.ko; KREL / RAPILOG_KREL, RAPILOG_TIMEOUT_SCALE as for
# `make test`; RAPILOG_HA_PASS_S (pgbench seconds per run, default 8),
# RAPILOG_HA_ROUNDS (default 3), RAPILOG_HA_MIN_ACKED (acknowledged commits
# before the kill, default 40). Results: .cache/test-logs/ha/results.md.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit
. kernels/lib.sh
export RAPILOG_KREL=${KREL:-${RAPILOG_KREL:-7.3.4+deb13-amd64}}
t0=$SECONDS
# The test skips itself without root (debootstrap): here that is a failure.
[ "$(id -u)" = 0 ] || { echo "ha-test: must run as root (debootstrap, QEMU disks)" >&2; exit 1; }
qemu-scripts/host-deps.sh >/dev/null || exit 1
[ -n "${RAPILOG_KO:-}" ] || kernels/build-module.sh "$RAPILOG_KREL" >/dev/null || exit 1
py=$(tests/setup-venv.sh) || exit 1
qemu-scripts/build-rootfs.sh -k "$RAPILOG_KREL" -p "drbd-utils postgresql" >/dev/null || exit 1
"$py" -m pytest -c tests/pytest.ini -rP tests/ha "$@"
rc=$?
echo "ha-test: exit $rc in $((SECONDS - t0)) s; results: $RAPILOG_CACHE/test-logs/ha/results.md"
exit $rc
