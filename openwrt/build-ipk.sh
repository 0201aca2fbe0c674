#!/usr/bin/env bash
# Assembles installable OpenWrt packages from a dae binary built for the
# router, without the SDK:
#
#   openwrt/build-ipk.sh --binary target/cross/out/dae-mipsel --arch mipsel_24kc \
#       --bpf-object ebpf/build/dae_tc.bpfel.o [--out DIR] [--version V] [--release R] [--apk]
#
# --arch is the router's package architecture: `opkg print-architecture`
# (or `apk --print-arch`) on the router, or the folder name of its packages
# (mipsel_24kc for ramips mt7621, mips_24kc for ath79, aarch64_cortex-a53
# for filogic/mediatek, arm_cortex-a7_neon-vfpv4 for ipq40xx, x86_64 ...).
# --bpf-object is the TC program for the router's byte order (bpfeb for
# ath79, bpfel for the rest).
#
# The .ipk (opkg: OpenWrt 24.10 and earlier) is what OpenWrt's own
# ipkg-build makes: a gzip'd tar holding ./debian-binary ("2.0"),
# ./data.tar.gz (the files, owned by root) and ./control.tar.gz (control,
# conffiles, postinst, prerm), named dae_VERSION-RELEASE_ARCH.ipk.
# Install on the router with   opkg install /tmp/dae_*.ipk
#
# --apk (apk-tools v3: OpenWrt 25.12 and later) also lays out, for each
# package, the folder that `apk mkpkg` packs, as the SDK's package-pack.mk
# does: NAME-VERSION-rRELEASE.apk.d/ with files/ (the files, and
# lib/apk/packages/NAME.list, .conffiles, .conffiles_static), the
# post-install, post-upgrade and pre-deinstall scripts, and mkpkg.sh, which
# runs `apk mkpkg` with the package's fields. Where apk-tools v3 is
# installed, the .apk is made right away; elsewhere (Debian 12 has no
# apk-tools v3) run mkpkg.sh where it is.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

binary=
arch=
bpf_object=
outdir=$PWD
want_apk=0
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
	--apk) want_apk=1 ;;
	-h | --help)
		sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
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
export LC_ALL=C

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022
made=()

pack() {
	# pack DIR OUTPUT: a gzip'd tar of DIR's content as ./..., owned by root.
	(cd "$1" && tar --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="@$epoch" --format=gnu -cf - .) | gzip -9n >"$2"
}

installed_size() {
	find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'
}

# control_file NAME ARCH DEPENDS SECTION SUMMARY BODY: the ipk's control.
control_file() {
	cat <<EOF
Package: $1
Version: $version-$release
Depends: $3
Source: openwrt/$1
SourceName: $1
License: AGPL-3.0-only
Section: $4
SourceDateEpoch: $epoch
Architecture: $2
Installed-Size: $(installed_size "$work/$1/data")
Description: $5
$(printf '%s\n' "$6" | sed 's/^/ /')
EOF
}

# pack_ipk NAME ARCH: packs $work/NAME/{data,control} into NAME_V-R_ARCH.ipk.
pack_ipk() {
	local name=$1 arch=$2 pkg=$work/$1/ipk
	mkdir -p "$pkg"
	printf '2.0\n' >"$pkg/debian-binary"
	pack "$work/$name/data" "$pkg/data.tar.gz"
	pack "$work/$name/control" "$pkg/control.tar.gz"
	chmod 0644 "$pkg/debian-binary" "$pkg/data.tar.gz" "$pkg/control.tar.gz"
	# The outer archive lists its members in the order ipkg-build uses.
	(cd "$pkg" && tar --numeric-owner --owner=0 --group=0 --mtime="@$epoch" --format=gnu \
		-cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -9n >"$work/out/${name}_${version}-${release}_$arch.ipk"
	made+=("${name}_${version}-${release}_$arch.ipk")
}

# apk_script NAME KIND: an apk install script as package-pack.mk writes
# them. apk runs it with a clean environment and a name of its own as $0,
# so OpenWrt's default_postinst/default_prerm learn the root and the
# package from `root` and `pkgname`; the package's own postinst-pkg, if
# any, follows (as the SDK appends it).
apk_script() {
	local name=$1 kind=$2
	echo '#!/bin/sh'
	echo "# apk runs this $kind script of $name (made by openwrt/build-ipk.sh)."
	case "$kind" in
	post-upgrade) echo 'export PKG_UPGRADE=1' ;;
	esac
	# These lines are for the router's shell, not expanded here.
	# shellcheck disable=SC2016
	case "$kind" in
	post-install | post-upgrade) echo '[ "${IPKG_NO_SCRIPT:-0}" = 1 ] && exit 0' ;;
	esac
	# shellcheck disable=SC2016
	printf '%s\n' '[ -s "${IPKG_INSTROOT:-}/lib/functions.sh" ] || exit 0' \
		'# shellcheck source=/dev/null' \
		'. "${IPKG_INSTROOT:-}/lib/functions.sh"' \
		'export root="${IPKG_INSTROOT:-}"' \
		"export pkgname=\"$name\""
	case "$kind" in
	pre-deinstall) echo 'default_prerm' ;;
	*)
		echo 'default_postinst'
		if [ -f "$work/$name/control/postinst-pkg" ]; then
			sed '/^#!/d' "$work/$name/control/postinst-pkg"
		fi
		;;
	esac
}

# lay_out_apk NAME ARCH DEPENDS SUMMARY: lays out NAME-V-rR.apk.d for apk mkpkg
# from $work/NAME/{data,control}, and packs it where apk-tools v3 is.
lay_out_apk() {
	local name=$1 arch=$2 depends=$3 summary=$4
	local apk_version=$version-r$release
	local dir=$work/out/$name-$apk_version.apk.d
	local meta=lib/apk/packages
	case "$summary$depends" in
	*"'"*) die "a field of $name has a single quote" ;;
	esac
	mkdir -p "$dir/files"
	cp -a "$work/$name/data/." "$dir/files/"
	# The list of the package's files, before the lists themselves are added.
	(cd "$dir/files" && find . -type f,l -printf '/%P\n' | sort) >"$work/$name/list"
	install -d -m 0755 "$dir/files/$meta"
	mv "$work/$name/list" "$dir/files/$meta/$name.list"
	if [ -f "$work/$name/control/conffiles" ]; then
		cp "$work/$name/control/conffiles" "$dir/files/$meta/$name.conffiles"
		: >"$dir/files/$meta/$name.conffiles_static"
		local file
		while read -r file; do
			[ -f "$dir/files$file" ] || continue
			echo "$file $(sha256sum <"$dir/files$file" | cut -d' ' -f1)" >>"$dir/files/$meta/$name.conffiles_static"
		done <"$dir/files/$meta/$name.conffiles"
	fi
	chmod 0644 "$dir/files/$meta"/*
	local kind
	for kind in post-install post-upgrade pre-deinstall; do
		apk_script "$name" "$kind" >"$dir/$kind"
		chmod 0755 "$dir/$kind"
	done
	[ "$arch" = all ] && arch=noarch
	cat >"$dir/mkpkg.sh" <<EOF
#!/bin/sh
# Packs $name-$apk_version.apk from this folder with apk-tools v3:
#   sh mkpkg.sh [OUTPUT]    (as root or under fakeroot: the files' owner goes in)
set -e
cd "\$(dirname "\$0")"
exec apk mkpkg \\
	--info 'name:$name' \\
	--info 'version:$apk_version' \\
	--info 'description:$summary' \\
	--info 'arch:$arch' \\
	--info 'license:AGPL-3.0-only' \\
	--info 'origin:$name' \\
	--info 'depends:$depends' \\
	--script post-install:post-install \\
	--script post-upgrade:post-upgrade \\
	--script pre-deinstall:pre-deinstall \\
	--files files \\
	--output "\${1:-../$name-$apk_version.apk}"
EOF
	chmod 0755 "$dir/mkpkg.sh"
	made+=("$name-$apk_version.apk.d/")
	if command -v apk >/dev/null 2>&1 && apk mkpkg --help >/dev/null 2>&1; then
		sh "$dir/mkpkg.sh" "$work/out/$name-$apk_version.apk" >&2 ||
			die "apk mkpkg failed for $name"
		made+=("$name-$apk_version.apk")
	fi
}

# dae
d=$work/dae/data
install -d -m 0755 "$d/usr/bin" "$d/etc/init.d" "$d/etc/config" "$d/lib/bpf" "$d/lib/upgrade/keep.d"
install -m 0755 "$binary" "$d/usr/bin/dae"
install -m 0755 "$repo/init.d/dae" "$d/etc/init.d/dae"
# Like the SDK's INSTALL_CONF: the config is readable by root only.
install -m 0600 "$here/files/dae.config" "$d/etc/config/dae"
install -m 0644 "$bpf_object" "$d/lib/bpf/dae_tc.o"
# sysupgrade keeps the subscriptions' last good lists with the settings.
install -m 0644 "$here/files/dae.upgrade" "$d/lib/upgrade/keep.d/dae"
c=$work/dae/control
install -d -m 0755 "$c"
dae_summary="Transparent DNS controller for the LAN (dae for OpenWrt)."
control_file dae "$arch" "kmod-sched-core, kmod-sched-bpf, ca-bundle" net "$dae_summary" \
	"A TC eBPF program hands the LAN's DNS queries to the daemon without NAT;
the daemon answers them through request/response rules, a cache and
upstream forwarders. Configured in /etc/config/dae; off until enabled." >"$c/control"
printf '/etc/config/dae\n' >"$c/conffiles"
install -m 0755 "$here/files/postinst" "$c/postinst"
install -m 0755 "$here/files/prerm" "$c/prerm"
chmod 0644 "$c/control" "$c/conffiles"

mkdir -p "$work/out"
pack_ipk dae "$arch"
if [ "$want_apk" = 1 ]; then
	lay_out_apk dae "$arch" "kmod-sched-core kmod-sched-bpf ca-bundle" "$dae_summary"
fi

# luci-app-dae: its htdocs in /www and its root/ (menu.d, the ACL) in /,
# as LuCI's luci.mk installs them.
app=$repo/luci-app-dae
luci_var() {
	# luci_var NAME: a (continued) NAME:= line of luci-app-dae/Makefile, joined.
	awk -v name="$1" '
		index($0, name ":=") == 1 { on = 1; $0 = substr($0, length(name) + 3) }
		on {
			more = sub(/[ \t]*\\$/, "")
			sub(/^[ \t]+/, "")
			out = out (out == "" ? "" : " ") $0
			if (!more) { print out; exit }
		}' "$app/Makefile"
}
d=$work/luci-app-dae/data
install -d -m 0755 "$d/www"
cp -R "$app/htdocs/." "$d/www/"
cp -R "$app/root/." "$d/"
find "$d" -type d -exec chmod 0755 {} +
find "$d" -type f -exec chmod 0644 {} +
c=$work/luci-app-dae/control
install -d -m 0755 "$c"
luci_summary=$(luci_var LUCI_TITLE)
[ -n "$luci_summary" ] || die "no LUCI_TITLE in $app/Makefile"
control_file luci-app-dae all "luci-base, dae" luci "$luci_summary" "$(luci_var LUCI_DESCRIPTION)" >"$c/control"
install -m 0755 "$here/files/postinst" "$c/postinst"
install -m 0755 "$here/files/prerm" "$c/prerm"
install -m 0755 "$here/files/luci-app-dae.postinst-pkg" "$c/postinst-pkg"
chmod 0644 "$c/control"
pack_ipk luci-app-dae all
[ "$want_apk" = 1 ] && lay_out_apk luci-app-dae all "luci-base dae" "$luci_summary"

# luci-i18n-dae-LANG: each translation of luci-app-dae compiled to LuCI's
# catalog (openwrt/po2lmo.py), named and installed as luci.mk does: po/zh_Hans
# is the package luci-i18n-dae-zh-cn with /usr/lib/lua/luci/i18n/dae.zh-cn.lmo.
command -v python3 >/dev/null || die "python3 is needed to compile the translations"
for po_dir in "$app"/po/*/; do
	lang=$(basename "$po_dir")
	case "$lang" in
	templates) continue ;;
	zh_Hans) code=zh-cn title='简体中文 (Chinese Simplified)' ;;
	zh_Hant) code=zh-tw title='繁體中文 (Chinese Traditional)' ;;
	*) die "po/$lang: add its LuCI language code and title to build-ipk.sh" ;;
	esac
	name=luci-i18n-dae-$code
	d=$work/$name/data
	install -d -m 0755 "$d/usr/lib/lua/luci/i18n" "$d/etc/uci-defaults"
	for po in "$po_dir"*.po; do
		domain=$(basename "$po" .po)
		python3 "$here/po2lmo.py" "$po" "$d/usr/lib/lua/luci/i18n/$domain.$code.lmo" ||
			die "cannot compile $po"
	done
	echo "uci set luci.languages.${code//-/_}='$title'; uci commit luci" >"$d/etc/uci-defaults/$name"
	chmod 0644 "$d/etc/uci-defaults/$name"
	c=$work/$name/control
	install -d -m 0755 "$c"
	control_file "$name" all luci-app-dae luci "luci-app-dae - $code translation" \
		"Translation for luci-app-dae - $title" >"$c/control"
	install -m 0755 "$here/files/postinst" "$c/postinst"
	install -m 0755 "$here/files/prerm" "$c/prerm"
	# On a running router the language is offered in LuCI at once (the
	# uci-defaults script would otherwise wait for the next boot).
	cat >"$c/postinst-pkg" <<EOF
#!/bin/sh
[ -n "\${IPKG_INSTROOT}" ] || {
	(. /etc/uci-defaults/$name) && rm -f /etc/uci-defaults/$name
	exit 0
}
EOF
	chmod 0644 "$c/control"
	chmod 0755 "$c/postinst-pkg"
	pack_ipk "$name" all
	[ "$want_apk" = 1 ] && lay_out_apk "$name" all luci-app-dae "luci-app-dae - $code translation"
done

mkdir -p "$outdir"
for m in "${made[@]}"; do
	rm -rf "${outdir:?}/${m%/}"
	mv "$work/out/${m%/}" "$outdir/"
	if [ -d "$outdir/${m%/}" ]; then
		echo "laid out $outdir/$m (sh $outdir/${m}mkpkg.sh makes the .apk with apk-tools v3)"
	else
		echo "built $outdir/$m ($(stat -c %s "$outdir/$m") bytes)"
	fi
done
