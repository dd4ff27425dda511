#!/bin/bash
# Lint: formatting, clippy and shellcheck. A phase of `make test`
# (tests/run-all.sh) and `make lint`; each failure names the file and the
# tool's own command to fix or see it.
set -u
cd "$(dirname "$0")/.." || exit
rc=0
step() {
	echo "--- lint: $*"
	"$@" || { echo "lint: '$*' failed" >&2; rc=1; }
}
# Userspace and the shared no_std crates (the workspace).
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
# Every shell script the repository ships (by its #! line).
mapfile -t scripts < <(git ls-files -z | xargs -0 grep -lIE '^#!\s*(/usr)?/bin/(env )?(ba)?sh' 2>/dev/null)
step shellcheck -S warning "${scripts[@]}"
[ $rc -eq 0 ] && echo "lint: clean (rustfmt, clippy -D warnings, shellcheck on ${#scripts[@]} scripts)"
exit $rc
