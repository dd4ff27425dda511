#!/bin/sh
# The Debian packages' version, from one place: the version of the crates
# (userspace-ctl/Cargo.toml, as `rapilogctl --version` prints it), then the
# git commit it was built from, so every commit builds a distinct, ordered
# version: 0.1.0+git187.ca27505 is the 187th commit on the branch, ca27505.
#   packaging/version.sh        prints it
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
base=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/userspace-ctl/Cargo.toml" | head -n1)
[ -n "$base" ] || { echo "version.sh: no version in userspace-ctl/Cargo.toml" >&2; exit 1; }
count=$(git -C "$top" rev-list --count HEAD)
hash=$(git -C "$top" rev-parse --short=7 HEAD)
echo "$base+git$count.$hash"
