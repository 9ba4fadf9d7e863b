#!/usr/bin/env bash
# Builds the phantom-token-agent RPM from the git tree and checks the package.
#
#   contrib/rpm/build-rpm.sh [--worktree | --head] [--topdir DIR] [--jobs N]
#
#   --head       package the last commit (git archive HEAD)
#   --worktree   package the working tree: every file git tracks or would track
#                (git ls-files -co --exclude-standard), committed or not
#                The default is --worktree when there are uncommitted changes, else --head.
#   --topdir DIR rpmbuild's _topdir (default: a new directory under ${TMPDIR:-/tmp}); the RPM
#                ends up in DIR/RPMS/<arch>/
#   --jobs N     parallel compile jobs (default: the number of CPUs)
#
# Needs git, tar, gzip, rpmbuild and rpm (Debian: apt-get install rpm); the build dependencies are
# not checked by rpmbuild (--nodeps), since on Debian they are deb packages. The checks:
#   - rpm -qlp lists every path in EXPECTED_FILES below;
#   - rpm -qp --configfiles lists both /etc files, marked noreplace;
#   - the packaged binary, extracted from the RPM, runs --version.
# Prints "RPM: <path>" and, at the end, "build-rpm: all checks passed"; exits 1 on any failure.
set -euo pipefail

name=phantom-token-agent

# Every path the package must contain (a trailing * matches a compression suffix).
EXPECTED_FILES=(
  /usr/sbin/phantom-token-agent
  /etc/phantom-token-agent
  /etc/phantom-token-agent/agent.conf
  /etc/haproxy/phantom-token.conf
  /usr/lib/systemd/system/phantom-token-agent.service
  '/usr/share/man/man8/phantom-token-agent.8*'
  /usr/share/doc/phantom-token-agent/README.md
  /usr/share/doc/phantom-token-agent/LICENSE
  /usr/share/doc/phantom-token-agent/examples/haproxy.cfg
  /usr/share/licenses/phantom-token-agent/LICENSE
)
EXPECTED_CONFIG=(
  /etc/phantom-token-agent/agent.conf
  /etc/haproxy/phantom-token.conf
)

die() {
  echo "build-rpm: $*" >&2
  exit 1
}

mode=auto
topdir=
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --head) mode="head" ;;
    --worktree) mode="worktree" ;;
    --topdir) topdir=${2:?--topdir needs a directory}; shift ;;
    --topdir=*) topdir=${1#--topdir=} ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

for tool in git tar gzip rpmbuild rpm; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install rpm)"
done

# Read-only git use only: no index refresh, nothing written to .git.
export GIT_OPTIONAL_LOCKS=0
src=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) || die "not inside the git tree"
cd "$src"

version=$(sed -n 's/^project([^)]*VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt | head -n1)
[ -n "$version" ] || die "cannot read the version from CMakeLists.txt"

if [ "$mode" = auto ]; then
  if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then mode="worktree"; else mode="head"; fi
fi

if [ -z "$topdir" ]; then
  topdir=$(mktemp -d "${TMPDIR:-/tmp}/$name-rpm.XXXXXX")
fi
mkdir -p "$topdir"/{BUILD,BUILDROOT,RPMS,SOURCES,SPECS,SRPMS}
topdir=$(cd "$topdir" && pwd)
tarball="$topdir/SOURCES/$name-$version.tar.gz"

# ---- the source tarball ----------------------------------------------------------------------
echo "build-rpm: $name $version from $src ($mode)"
if [ "$mode" = head ]; then
  git archive --format=tar.gz --prefix="$name-$version/" -o "$tarball" HEAD
else
  # Tracked and untracked-but-not-ignored files; tracked files deleted in the tree are skipped.
  list="$topdir/SOURCES/files.txt"
  : >"$list"
  while IFS= read -r -d '' f; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    printf '%s\0' "$f" >>"$list"
  done < <(git ls-files -z -co --exclude-standard)
  tar --null -T "$list" --transform "s,^,$name-$version/," --owner=0 --group=0 --numeric-owner \
    -czf "$tarball"
  rm -f "$list"
fi
# (grep without -q reads all of tar's output: with pipefail, an early exit would fail tar.)
tar -tzf "$tarball" | grep -x "$name-$version/contrib/rpm/$name.spec" >/dev/null ||
  die "the tarball has no contrib/rpm/$name.spec"

# ---- rpmbuild --------------------------------------------------------------------------------
cp "contrib/rpm/$name.spec" "$topdir/SPECS/"
log="$topdir/rpmbuild.log"
echo "build-rpm: rpmbuild -bb (log: $log)"
if ! rpmbuild -bb --nodeps \
  --define "_topdir $topdir" \
  --define "pta_version $version" \
  --define "_smp_mflags -j$jobs" \
  --define "debug_package %{nil}" \
  "$topdir/SPECS/$name.spec" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "rpmbuild failed (full log: $log)"
fi

rpmfile=$(find "$topdir/RPMS" -name "$name-$version-*.rpm" ! -name '*debug*' | head -n1)
[ -n "$rpmfile" ] || die "rpmbuild produced no $name RPM in $topdir/RPMS"
echo "RPM: $rpmfile"

# ---- checks ----------------------------------------------------------------------------------
failures=0
fail() {
  echo "build-rpm: CHECK FAILED: $*" >&2
  failures=$((failures + 1))
}

files=$(rpm -qlp "$rpmfile")
echo "build-rpm: package contents:"
awk '{ print "  " $0 }' <<<"$files"
for want in "${EXPECTED_FILES[@]}"; do
  found=no
  while IFS= read -r f; do
    # shellcheck disable=SC2053 # $want may hold a glob on purpose
    if [[ "$f" == $want ]]; then found=yes; break; fi
  done <<<"$files"
  [ $found = yes ] || fail "rpm -qlp lacks $want"
done

configs=$(rpm -qp --configfiles "$rpmfile")
flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmfile")
for want in "${EXPECTED_CONFIG[@]}"; do
  grep -qx "$want" <<<"$configs" || fail "rpm -qp --configfiles lacks $want"
  grep -Eq "^[a-z]*n[a-z]* $want\$" <<<"$flags" || fail "$want is not %config(noreplace)"
done

extract=$(mktemp -d "${TMPDIR:-/tmp}/$name-extract.XXXXXX")
trap 'rm -rf "$extract"' EXIT
if command -v cpio >/dev/null; then
  (cd "$extract" && rpm2cpio "$rpmfile" | cpio -idm --quiet) || fail "rpm2cpio | cpio failed"
elif command -v rpm2archive >/dev/null; then
  # Debian's rpm package does not pull in cpio; rpm2archive writes a tarball next to its input.
  cp "$rpmfile" "$extract/pkg.rpm"
  (cd "$extract" && rpm2archive pkg.rpm && tar -xzf pkg.rpm.tgz && rm -f pkg.rpm pkg.rpm.tgz) ||
    fail "rpm2archive failed"
else
  fail "neither cpio nor rpm2archive is installed: cannot extract the package"
fi
bin="$extract/usr/sbin/$name"
if [ -x "$bin" ]; then
  out=$("$bin" --version 2>&1) || fail "the packaged binary failed: $bin --version: $out"
  head -n1 <<<"$out" | grep -qx "$name $version" ||
    fail "the packaged binary printed '$(head -n1 <<<"$out")', expected '$name $version'"
  echo "build-rpm: packaged binary: $(head -n1 <<<"$out")"
else
  fail "no executable usr/sbin/$name in the package payload"
fi

if [ $failures -ne 0 ]; then
  die "$failures check(s) failed for $rpmfile"
fi
echo "build-rpm: all checks passed"
