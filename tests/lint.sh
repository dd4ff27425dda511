#!/bin/bash
# Lint: formatting, clippy, ruff (Python) and shellcheck. A phase of `make
# test` (tests/run-all.sh) and `make lint`; each failure names the file and
# the tool's own command to fix or see it.
set -u
cd "$(dirname "$0")/.." || exit
rc=0
step() {
	echo "--- lint: $*"
	"$@" || { echo "lint: '$*' failed" >&2; rc=1; }
}
# Userspace and the shared no_std crates (the workspace).
step cargo fmt --all -- --check
# The kernel module is not in the workspace: rustfmt follows its `mod`s from the root.
step rustfmt --edition 2021 --check rapilog-blk/rapilog_blk.rs
step cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
# Every Python file (the harness tests/lib/rapilog_harness, the tests, the
# scripts, bench/): ruff, pinned in tests/requirements.txt, from the test venv
# that tests/setup-venv.sh makes (as for pytest); rules in ruff.toml.
mapfile -t pyfiles < <(git ls-files '*.py')
ruff_check() {
	local py
	py=$(tests/setup-venv.sh) || return 1
	"$py" -m ruff check --output-format concise "${pyfiles[@]}" && return 0
	echo "lint: fix: '$py -m ruff check --fix' applies the safe fixes; the rest by hand (file:line above)" >&2
	return 1
}
step ruff_check
# Every shell script the repository ships (by its #! line).
mapfile -t scripts < <(git ls-files -z | xargs -0 grep -lIE '^#!\s*(/usr)?/bin/(env )?(ba)?sh' 2>/dev/null)
step shellcheck -S warning "${scripts[@]}"
[ $rc -eq 0 ] && echo "lint: clean (rustfmt, clippy -D warnings, ruff on ${#pyfiles[@]} Python files," \
	"shellcheck on ${#scripts[@]} scripts)"
exit $rc
