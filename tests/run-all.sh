#!/usr/bin/env bash
# `make test`: every test rapilog has, in phases, with a timing summary.
#
#   host-deps     packages this host needs (QEMU, busybox, debootstrap, ...)
#   host-tests    cargo test of the workspace (format crate, rescue, CLI) and
#                 pytest tests/host (scripts such as kexec-tools-config/rapilog-arm)
#   module        rapilog.ko for the stock kernel KREL (build chroot made once)
#   module-check  symbols and vermagic against the stock kernel
#   qemu-tests    pytest tests/qemu: the stock kernel booted under QEMU (TCG)
#
# Stops at the first failing phase. Env: KREL (default 7.3.4+deb13-amd64),
# PYTEST_ARGS (e.g. "-k boot" to select QEMU tests).
set -uo pipefail
cd "$(dirname "$0")/.."
. kernels/lib.sh

KREL=${KREL:-7.3.4+deb13-amd64}
export KREL RAPILOG_KREL=$KREL
names=() times=() results=()
failed=0

phase() {
	local name=$1 t0=$SECONDS rc
	shift
	echo
	echo "=== phase $name: $*"
	"$@"
	rc=$?
	names+=("$name") times+=($((SECONDS - t0)))
	if [ $rc -eq 0 ]; then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
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
}
trap summary EXIT

host_tests() {
	cargo test --workspace || return 1
	tests/setup-venv.sh >/dev/null || return 1
	"$RAPILOG_CACHE/venv/bin/python" -m pytest -c tests/pytest.ini tests/host
}
build_module() { kernels/build-module.sh "$KREL" >/dev/null; }
check_module() { tests/check-module.sh "$KREL" "$RAPILOG_CACHE/build/$KREL/rapilog.ko"; }
qemu_tests() {
	tests/setup-venv.sh >/dev/null || return 1
	# shellcheck disable=SC2086
	# -rP: show what passing tests printed (the kernel release, the module's lines).
	"$RAPILOG_CACHE/venv/bin/python" -m pytest -c tests/pytest.ini -rP tests/qemu ${PYTEST_ARGS:-}
}

phase host-deps qemu-scripts/host-deps.sh &&
	phase host-tests host_tests &&
	phase module build_module &&
	phase module-check check_module &&
	phase qemu-tests qemu_tests
exit $failed
