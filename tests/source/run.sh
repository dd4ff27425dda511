#!/usr/bin/env bash
# make source-test: rapilog-source on a pristine Debian 13 system
# (tests/source/test_rapilog_source.py says what it checks). Builds the
# packages first (make deb KREL=OTHER_KREL, about 10 s when its chroots
# exist), then runs the test; OTHER_KREL selects the kernel (default
# 7.2.12+deb13-amd64).
set -euo pipefail
cd "$(dirname "$0")/../.."
. kernels/lib.sh
# rapilog-source (and rapilog-modules-OTHER_KREL, for the check that a
# prebuilt module package wins).
packaging/build-deb.sh "${OTHER_KREL:-7.2.12+deb13-amd64}" >/dev/null
py=$(tests/setup-venv.sh)
exec "$py" -m pytest -c tests/pytest.ini -rP tests/source "$@"
