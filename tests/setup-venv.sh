#!/bin/bash
# Create (or reuse) the test venv .cache/venv with the pinned pytest from
# tests/requirements.txt, and print the path of its python. Re-installs only
# when requirements.txt changed (stamp = its sha256). Env: PYTHON (default
# python3, >= 3.11), RAPILOG_CACHE.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${RAPILOG_CACHE:-$top/.cache}
venv=$cache/venv
req=$top/tests/requirements.txt
py=${PYTHON:-python3}

die() { echo "error: $*" >&2; exit 1; }
command -v "$py" >/dev/null || die "$py not found"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$py is older than 3.11"

want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x $venv/bin/python && $(cat "$venv/.requirements-sha256" 2>/dev/null) == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.venv.lock"
flock 9
if [[ ! -x $venv/bin/python ]]; then
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" >&2 ||
    die "pip install -r $req failed"
echo "$want" >"$venv/.requirements-sha256"
echo "$venv/bin/python"
