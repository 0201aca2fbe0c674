#!/usr/bin/env bash
# Assembles an installable OpenWrt package (.ipk, for opkg: OpenWrt 24.10
# and earlier) from a dae binary built for the router, without the SDK:
#
#   openwrt/build-ipk.sh --binary target/cross/out/dae-mipsel --arch mipsel_24kc \
#       --bpf-object ebpf/build/dae_tc.bpfel.o [--out DIR] [--version V] [--release R]
#
# --arch is the router's package architecture: `opkg print-architecture`
# on the router, or the folder name of its packages (mipsel_24kc for ramips
# mt7621, mips_24kc for ath79, aarch64_cortex-a53 for filogic/mediatek,
# arm_cortex-a7_neon-vfpv4 for ipq40xx, x86_64 ...). --bpf-object is the TC
# program for the router's byte order (bpfeb for ath79, bpfel for the rest).
#
# The package is what OpenWrt's own ipkg-build makes: a gzip'd tar holding
# ./debian-binary ("2.0"), ./data.tar.gz (the files, owned by root) and
# ./control.tar.gz (control, conffiles, postinst, prerm), named
# dae_VERSION-RELEASE_ARCH.ipk. Install on the router with
#   opkg install /tmp/dae_*.ipk
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

binary=
arch=
bpf_object=
outdir=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
release=$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile")

die() {
	echo "build-ipk: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--binary) binary=${2:?--binary needs a file} && shift ;;
	--arch) arch=${2:?--arch needs an architecture} && shift ;;
	--bpf-object) bpf_object=${2:?--bpf-object needs a file} && shift ;;
	--out) outdir=${2:?--out needs a folder} && shift ;;
	--version) version=${2:?--version needs a value} && shift ;;
	--release) release=${2:?--release needs a value} && shift ;;
	-h | --help)
		sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

[ -n "$binary" ] || die "--binary is required"
[ -n "$arch" ] || die "--arch is required"
[ -n "$bpf_object" ] || die "--bpf-object is required"
[ -f "$binary" ] || die "no such binary: $binary"
[ -f "$bpf_object" ] || die "no such TC object: $bpf_object"
case "$arch" in
*[!A-Za-z0-9_-]* | "") die "'$arch' is not a package architecture" ;;
esac
case "$version$release" in
*[!A-Za-z0-9.+~_-]*) die "version '$version' or release '$release' has characters opkg does not take" ;;
esac
if [ -z "$version" ] || [ -z "$release" ]; then
	die "could not read the version or the release"
fi

# The binary must be for the router's CPU: its ELF machine and byte order
# against what the package architecture's name says.
elf_byte() {
	# elf_byte OFFSET: one byte of the binary's ELF header, as a number
	od -An -tu1 -j "$1" -N1 "$binary" | tr -d ' '
}
[ "$(od -An -c -N4 "$binary" | tr -d ' ')" = '177ELF' ] || die "$binary is not an ELF file"
elf_data=$(elf_byte 5) # 1: little-endian, 2: big-endian
if [ "$elf_data" = 1 ]; then
	elf_machine=$(($(elf_byte 18) + 256 * $(elf_byte 19)))
else
	elf_machine=$(($(elf_byte 19) + 256 * $(elf_byte 18)))
fi
case "$arch" in
mipsel_* | mips64el_*) want="8 1" ;;
mips_* | mips64_*) want="8 2" ;;
aarch64_*) want="183 1" ;;
arm_*) want="40 1" ;;
x86_64) want="62 1" ;;
i386_*) want="3 1" ;;
riscv64_*) want="243 1" ;;
powerpc_* | powerpc64_*) want="$([ "${arch#powerpc64}" != "$arch" ] && echo 21 || echo 20) 2" ;;
loongarch64_*) want="258 1" ;;
*) die "'$arch' is not an OpenWrt package architecture this script knows" ;;
esac
got="$elf_machine $elf_data"
[ "$got" = "$want" ] || die "$binary is not for $arch: ELF machine $elf_machine, $([ "$elf_data" = 1 ] && echo little || echo big)-endian (wanted machine ${want% *}, $([ "${want#* }" = 1 ] && echo little || echo big)-endian)"

# Same timestamps and order for the same input, so packages compare.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022

data=$work/data
install -d -m 0755 "$data/usr/bin" "$data/etc/init.d" "$data/etc/config" "$data/lib/bpf"
install -m 0755 "$binary" "$data/usr/bin/dae"
install -m 0755 "$repo/init.d/dae" "$data/etc/init.d/dae"
# Like the SDK's INSTALL_CONF: the config is readable by root only.
install -m 0600 "$here/files/dae.config" "$data/etc/config/dae"
install -m 0644 "$bpf_object" "$data/lib/bpf/dae_tc.o"

installed_size=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

ctl=$work/control
install -d -m 0755 "$ctl"
cat >"$ctl/control" <<EOF
Package: dae
Version: $version-$release
Depends: kmod-sched-core, kmod-sched-bpf, ca-bundle
Source: openwrt/dae
SourceName: dae
License: AGPL-3.0-only
Section: net
SourceDateEpoch: $epoch
Architecture: $arch
Installed-Size: $installed_size
Description: Transparent DNS controller for the LAN (dae for OpenWrt).
 A TC eBPF program hands the LAN's DNS queries to the daemon without NAT;
 the daemon answers them through request/response rules, a cache and
 upstream forwarders. Configured in /etc/config/dae; off until enabled.
EOF
printf '/etc/config/dae\n' >"$ctl/conffiles"
install -m 0755 "$here/files/postinst" "$ctl/postinst"
install -m 0755 "$here/files/prerm" "$ctl/prerm"
chmod 0644 "$ctl/control" "$ctl/conffiles"

pack() {
	# pack DIR OUTPUT: a gzip'd tar of DIR's content as ./..., owned by root.
	(cd "$1" && tar --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="@$epoch" --format=gnu -cf - .) | gzip -9n >"$2"
}

pkg=$work/pkg
mkdir -p "$pkg"
printf '2.0\n' >"$pkg/debian-binary"
pack "$data" "$pkg/data.tar.gz"
pack "$ctl" "$pkg/control.tar.gz"
chmod 0644 "$pkg/debian-binary" "$pkg/data.tar.gz" "$pkg/control.tar.gz"

mkdir -p "$outdir"
ipk=$outdir/dae_${version}-${release}_${arch}.ipk
# The outer archive lists its members in the order ipkg-build uses.
(cd "$pkg" && tar --numeric-owner --owner=0 --group=0 --mtime="@$epoch" --format=gnu \
	-cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -9n >"$ipk"
echo "built $ipk ($(stat -c %s "$ipk") bytes)"
