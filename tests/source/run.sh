#!/usr/bin/env bash
# make source-test: rapilog-source on a pristine Debian 13 system
# (tests/source/test_rapilog_source.py says what it checks). Builds the
# packages first (make deb, about 10 s when its chroot exists), then runs the
# test; OTHER_KREL selects the kernel (default 7.2.12+deb13-amd64).
set -euo pipefail
cd "$(dirname "$0")/../.."
. kernels/lib.sh
packaging/build-deb.sh "$DEFAULT_KREL" >/dev/null
py=$(tests/setup-venv.sh)
exec "$py" -m pytest -c tests/pytest.ini -rP tests/source "$@"
