#!/usr/bin/env bash
# `make crash-test N=20`: N panic-under-load cycles (tests/qemu/test_crash.py,
# the same test `make test` runs with 3), plus N/5 (at least 1) cycles of
# the ext4 variant and N/5 power cuts after each power-fail signal (power
# button, NMI: tests/qemu/test_powerfail.py), then a summary
# (tests/crash/summary.py): cycles, acknowledged writes checked, losses,
# panic -> report and drain times.
#
#   tests/crash/run.sh [N]        (default 20)
#
# Env: RAPILOG_KO=path uses that rapilog.ko instead of building the tree's;
# RAPILOG_CRASH_SEED replays a run's panic delays (the seed is printed);
# KREL / RAPILOG_KREL, RAPILOG_TIMEOUT_SCALE as for `make test`.
# Exit status: non-zero if a test failed, a cycle lost an acknowledged write,
# or fewer cycles than asked for ran.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit
n=${1:-20}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N>0]" >&2; exit 2; }
ext4=$(((n + 4) / 5))
export RAPILOG_KREL=${KREL:-${RAPILOG_KREL:-7.3.4+deb13-amd64}}
qemu-scripts/host-deps.sh >/dev/null || exit 1
[ -n "${RAPILOG_KO:-}" ] || kernels/build-module.sh "$RAPILOG_KREL" >/dev/null || exit 1
py=$(tests/setup-venv.sh) || exit 1
stats=$(mktemp /tmp/rapilog-crash-stats.XXXXXX)
trap 'rm -f "$stats"' EXIT
t0=$SECONDS
RAPILOG_CRASH_CYCLES=$n RAPILOG_CRASH_EXT4_CYCLES=$ext4 RAPILOG_POWERFAIL_CYCLES=$ext4 \
	RAPILOG_CRASH_STATS=$stats \
	"$py" -m pytest -c tests/pytest.ini -rP tests/qemu/test_crash.py tests/qemu/test_powerfail.py \
	-k "test_panic_under_load_every_acknowledged_write_survives or test_ext4_fsynced_files_survive_panic or test_power_cut_after_the_signal_loses_no_acknowledged_write"
rc=$?
echo
"$py" tests/crash/summary.py "$stats" $((n + 3 * ext4)) $((SECONDS - t0))
src=$?
[ $rc -eq 0 ] || echo "crash-test: pytest failed (exit $rc)"
[ $rc -eq 0 ] && [ $src -eq 0 ]
