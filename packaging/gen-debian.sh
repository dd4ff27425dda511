#!/usr/bin/env bash
# packaging/gen-debian.sh DEBIAN_DIR KREL VERSION: the generated parts of
# debian/ in a build copy of the tree (never in the repository itself):
#   control       from control.in, the module package named for KREL
#   rapilog-modules-KREL.{postinst,postrm}   from rapilog-modules.*.in
#   changelog     one entry for VERSION (packaging/version.sh), dated with the
#                 commit's time, so dpkg's SOURCE_DATE_EPOCH and the man
#                 pages' dates follow the commit, not the clock
# The version lives in one place, the crates' version plus the commit
# (packaging/version.sh): a changelog kept in the tree would be one more
# place to bump, and would not name the commit a package was built from.
# Maintainer: $DEBFULLNAME <$DEBEMAIL> if set, else the commit's author.
set -euo pipefail
dir=$1 krel=$2 version=$3
top=$(cd "$(dirname "$0")/.." && pwd)
[[ $krel =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || { echo "gen-debian.sh: '$krel' is not usable in a package name" >&2; exit 2; }
if [[ -n ${DEBFULLNAME:-} && -n ${DEBEMAIL:-} ]]; then
	maint="$DEBFULLNAME <$DEBEMAIL>"
else
	maint=$(git -C "$top" log -1 --format='%an <%ae>')
fi
commit=$(git -C "$top" rev-parse HEAD)
when=$(LC_ALL=C date -u -R -d "@$(git -C "$top" log -1 --format=%ct)")
dirty=
git -C "$top" diff --quiet HEAD -- 2>/dev/null || dirty=" with uncommitted changes"
sed -e "s/@KREL@/$krel/g" -e "s|@MAINTAINER@|$maint|" "$dir/control.in" >"$dir/control"
for s in postinst postrm; do
	sed "s/@KREL@/$krel/g" "$dir/rapilog-modules.$s.in" >"$dir/rapilog-modules-$krel.$s"
done
cat >"$dir/changelog" <<CHANGELOG
rapilog ($version) unstable; urgency=medium

  * Built by make deb from commit ${commit:0:12}$dirty.

 -- $maint  $when
CHANGELOG
