#!/usr/bin/env bash
# Builds the Debian packages of a build tree (cpack -G DEB), checks their
# names and dependencies, unpacks them into a temporary root and builds and
# runs a separate project against that root with find_package(leasehold).
set -euo pipefail
build_dir=$(cd "$1" && pwd) source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "deb.sh: $*" >&2; exit 1; }

(cd "$work" && cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$work/debs" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack failed"; }
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build_dir/CPackConfig.cmake")
[[ -n $version ]] || fail "no CPACK_PACKAGE_VERSION in CPackConfig.cmake"
cli=$(ls "$work"/debs/leasehold_*.deb 2>/dev/null) || fail "no leasehold_*.deb"
dev=$(ls "$work"/debs/libleasehold-dev_*.deb 2>/dev/null) || fail "no libleasehold-dev_*.deb"

field() { dpkg-deb -f "$1" "$2"; }
expect_field() {  # deb field pattern
  local value
  value=$(field "$1" "$2")
  grep -qE -- "$3" <<<"$value" || fail "$(basename "$1"): $2 is '$value', expected to match '$3'"
}
expect_field "$cli" Package '^leasehold$'
expect_field "$cli" Version "^$version$"
expect_field "$dev" Package '^libleasehold-dev$'
# The CLI's shared libraries, from dpkg-shlibdeps.
expect_field "$cli" Depends 'libc6'
expect_field "$cli" Depends 'libsqlite3-0'
# What leaseholdConfig.cmake finds for the exported targets.
expect_field "$dev" Depends 'libsqlite3-dev'
expect_field "$dev" Depends 'cmake'
cli_files=$(dpkg-deb -c "$cli") dev_files=$(dpkg-deb -c "$dev")
grep -q " \./usr/bin/leasehold\$" <<<"$cli_files" || fail "leasehold.deb has no /usr/bin/leasehold"
for f in /usr/include/leasehold/lease.h /usr/lib/cmake/leasehold/leaseholdConfig.cmake; do
  grep -q " \.$f\$" <<<"$dev_files" || fail "libleasehold-dev.deb has no $f"
done

mkdir "$work/root"
dpkg-deb -x "$cli" "$work/root"
dpkg-deb -x "$dev" "$work/root"
[[ $("$work/root/usr/bin/leasehold" --version) == "leasehold $version" ]] ||
  fail "the packaged CLI's --version does not say $version"
cmake -S "$source_dir/tests/install/consumer" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/root/usr" -DCMAKE_BUILD_TYPE="${3:-RelWithDebInfo}" \
  "-DCMAKE_CXX_FLAGS=${4:-}" >"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log" >&2; fail "the consumer does not configure against the packages"; }
grep -q "$work/root/usr/lib/cmake/leasehold" "$work/build/CMakeCache.txt" ||
  fail "the consumer found a leasehold other than the unpacked one"
cmake --build "$work/build" >>"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log" >&2; fail "the consumer does not build against the packages"; }
"$work/build/consumer"
echo "deb.sh: $(basename "$cli"), $(basename "$dev"): OK"
