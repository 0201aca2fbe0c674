#!/usr/bin/env bash
# Makes the release tarball the OpenWrt package downloads, and the hash its
# Makefile must carry:
#
#   openwrt/release.sh [--ref REF] [--out DIR] [--write | --check]
#
# The version is Cargo.toml's; REF defaults to the tag v<version>. The
# tarball is `git archive` of REF with the prefix dae-<version>/, gzip'd
# without a name or time stamp (the same bytes for the same tree), named
# dae-<version>.tar.gz as PKG_SOURCE says. openwrt/Makefile is left out of
# it (.gitattributes: export-ignore), so writing the hash into the
# Makefile does not change the tarball.
#
# Prints the PKG_VERSION and PKG_HASH lines. --write puts them into
# openwrt/Makefile; --check exits 1 if the Makefile's differ.
# Release: bump Cargo.toml's version, commit, `git tag v<version>`, then
# `openwrt/release.sh --write`, commit the Makefile, and publish the
# tarball at PKG_SOURCE_URL.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
makefile=$here/Makefile

die() {
	echo "release: $*" >&2
	exit 1
}

ref=
outdir=$PWD
mode=print
while [ $# -gt 0 ]; do
	case "$1" in
	--ref) ref=${2:?--ref needs a git revision} && shift ;;
	--out) outdir=${2:?--out needs a folder} && shift ;;
	--write) mode="write" ;;
	--check) mode="check" ;;
	-h | --help)
		sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -1)
[ -n "$version" ] || die "no version in Cargo.toml"
ref=${ref:-v$version}
git -C "$repo" rev-parse -q --verify "$ref^{commit}" >/dev/null ||
	die "no such revision: $ref (tag the release first: git tag v$version)"
# The tagged tree must be of this version.
tagged=$(git -C "$repo" show "$ref:Cargo.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -1)
[ "$tagged" = "$version" ] || die "$ref has version '$tagged' in Cargo.toml, not '$version'"

mkdir -p "$outdir"
tarball=$outdir/dae-$version.tar.gz
git -C "$repo" archive --format=tar --prefix="dae-$version/" "$ref" | gzip -9n >"$tarball"
hash=$(sha256sum "$tarball" | cut -d' ' -f1)
echo "built $tarball ($(stat -c %s "$tarball") bytes) from $ref" >&2
echo "PKG_VERSION:=$version"
echo "PKG_HASH:=$hash"

case "$mode" in
write)
	sed -i -e "s/^PKG_VERSION:=.*/PKG_VERSION:=$version/" \
		-e "s/^PKG_HASH:=.*/PKG_HASH:=$hash/" "$makefile"
	echo "wrote them into $makefile" >&2
	;;
check)
	mk_version=$(sed -n 's/^PKG_VERSION:=//p' "$makefile")
	mk_hash=$(sed -n 's/^PKG_HASH:=//p' "$makefile")
	ok=1
	[ "$mk_version" = "$version" ] || {
		echo "release: openwrt/Makefile has PKG_VERSION:=$mk_version, the release is $version" >&2
		ok=0
	}
	[ "$mk_hash" = "$hash" ] || {
		echo "release: openwrt/Makefile has PKG_HASH:=$mk_hash, the tarball's is $hash" >&2
		ok=0
	}
	[ "$ok" = 1 ] || exit 1
	echo "openwrt/Makefile matches the tarball" >&2
	;;
esac
