#!/usr/bin/env bash
# `make test`: every test rapilog has, in phases, with a timing summary.
#
#   host-deps     packages this host needs (QEMU, busybox, debootstrap, ...)
#   demo          `make demo`, the README's first command, exactly as a
#                 newcomer runs it: builds what it needs from nothing, and
#                 fails unless every acknowledged block survives the panic
#   host-tests    cargo test of the workspace (format crate, replay library,
#                 rescue, CLI) and pytest tests/host (scripts such as
#                 kexec-tools-config/rapilog-arm)
#   module        rapilog.ko for the stock kernel KREL (build chroot made once)
#   module-check  symbols and vermagic against the stock kernel
#   module-other  the pin of KREL still matches the archive, and rapilog.ko
#                 builds for a second Rust-enabled kernel, OTHER_KREL, whose
#                 settings are derived (kernels/kernel-env.py), and passes the
#                 same symbol and vermagic check there
#   module-source rapilog-source on a pristine trixie system (make source-test,
#                 tests/source/): rapilog-build-module refuses a kernel whose
#                 compiler set apt cannot install, then builds rapilog.ko for
#                 OTHER_KREL from the archive alone (by hand, then from the
#                 headers' kernel hook inside dpkg), checked as module-check
#   qemu-tests    pytest tests/qemu: the stock kernel booted under QEMU (TCG)
#
# Stops at the first failing phase; its last line names the phase, its log
# (.cache/logs/make-test/PHASE.log) and the likely fix. Env: KREL (default
# 7.3.4+deb13-amd64), OTHER_KREL (default 7.2.12+deb13-amd64), PYTEST_ARGS
# (e.g. "-k boot" to select QEMU tests).
set -uo pipefail
cd "$(dirname "$0")/.." || exit
. kernels/lib.sh

KREL=${KREL:-7.3.4+deb13-amd64}
# Another trixie-backports kernel, without a committed pin: the module must
# build for kernels a server may upgrade to, from derived settings (issue 20).
OTHER_KREL=${OTHER_KREL:-7.2.12+deb13-amd64}
export KREL RAPILOG_KREL=$KREL
names=() times=() results=()
failed=0

logdir=$RAPILOG_CACHE/logs/make-test
mkdir -p "$logdir"
failed_phase=

# What to try first when a phase fails (the phase's own last lines say more).
hint() {
	case $1 in
	host-deps) echo "check that apt reaches the Debian archive (apt-get update), then run qemu-scripts/host-deps.sh" ;;
	demo) echo "read the demo's last lines: a setup step names its own log; guest console logs are under $RAPILOG_CACHE/test-logs/demo" ;;
	host-tests) echo "cargo test --workspace and the pytest tests/host output above name the failing test" ;;
	lint) echo "run tests/lint.sh: 'cargo fmt --all' fixes formatting, '.cache/venv/bin/python -m ruff check --fix' the safe Python fixes; clippy, ruff and shellcheck name file and line" ;;
	module) echo "read $RAPILOG_CACHE/kbuild/$KREL/*.log; if the archive dropped a pinned version, bump kernels/$KREL.env (kernels/README.md)" ;;
	module-other) echo "if kernel-env.py check failed, bump kernels/$KREL.env as it says; if $OTHER_KREL fails to build, read $RAPILOG_CACHE/kbuild/$OTHER_KREL/*.log (Rust API drift between kernels is absorbed in rapilog-blk/sys/)" ;;
	module-source) echo "the failing step of tests/source/test_rapilog_source.py shows its command and output (rapilog-build-module prints the end of its make prepare or module build log); rerun alone with make source-test" ;;
	module-check) echo "the module does not match the stock kernel's exports: rebuild the chroot (rm -r $RAPILOG_CACHE/kbuild/$KREL) and see kernels/README.md" ;;
	qemu-tests) echo "each failing test names its guest's console log under $RAPILOG_CACHE/test-logs/" ;;
	*) echo "read the log" ;;
	esac
}

phase() {
	local name=$1 t0=$SECONDS rc
	shift
	echo
	echo "=== phase $name: $*"
	"$@" 2>&1 | tee "$logdir/$name.log"
	rc=${PIPESTATUS[0]}
	names+=("$name") times+=($((SECONDS - t0)))
	if [ $rc -eq 0 ]; then
		results+=(ok)
	else
		results+=("FAILED (exit $rc)")
		failed=1 failed_phase=$name
	fi
	return $rc
}

summary() {
	echo
	echo "=== make test summary (kernel $KREL)"
	local i passed=0
	for i in "${!names[@]}"; do
		printf '  %-14s %6s s  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
		[ "${results[$i]}" = ok ] && passed=$((passed + 1))
	done
	echo "phases: $passed passed, $failed failed"
	if [ -n "$failed_phase" ]; then
		echo "make test: phase '$failed_phase' failed; log: $logdir/$failed_phase.log; likely fix: $(hint "$failed_phase")"
	fi
}
trap summary EXIT

host_tests() {
	cargo test --workspace || return 1
	tests/setup-venv.sh >/dev/null || return 1
	"$RAPILOG_CACHE/venv/bin/python" -m pytest -c tests/pytest.ini tests/host
}
build_module() { kernels/build-module.sh "$KREL" >/dev/null; }
check_module() { tests/check-module.sh "$KREL" "$RAPILOG_CACHE/build/$KREL/rapilog.ko"; }
other_kernel() {
	python3 kernels/kernel-env.py check "$KREL" || return 1
	kernels/build-module.sh "$OTHER_KREL" >/dev/null || return 1
	tests/check-module.sh "$OTHER_KREL" "$RAPILOG_CACHE/build/$OTHER_KREL/rapilog.ko"
}
source_package() { OTHER_KREL=$OTHER_KREL tests/source/run.sh; }
qemu_tests() {
	tests/setup-venv.sh >/dev/null || return 1
	# shellcheck disable=SC2086
	# -rP: show what passing tests printed (the kernel release, the module's lines).
	"$RAPILOG_CACHE/venv/bin/python" -m pytest -c tests/pytest.ini -rP tests/qemu ${PYTEST_ARGS:-}
}

phase host-deps qemu-scripts/host-deps.sh &&
	phase demo qemu-scripts/demo.py &&
	phase host-tests host_tests &&
	phase lint tests/lint.sh &&
	phase module build_module &&
	phase module-check check_module &&
	phase module-other other_kernel &&
	phase module-source source_package &&
	phase qemu-tests qemu_tests
exit $failed
