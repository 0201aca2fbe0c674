#!/usr/bin/env bash
# Runs dae on a router's CPU and kernel: a small kernel built from Debian's
# linux-source-6.1 without BTF (as OpenWrt's), booted in qemu-system with an
# initramfs of busybox, the target's static dae (TC program inside, in the
# target's byte order) and a small DNS client; inside the guest, the
# namespace lab (client -> br-lan -> dae -> upstream) and its checks
# (openwrt/vm/lab.sh), once with the eBPF JIT and once with the interpreter.
#
#   openwrt/vm-test.sh mipsel          build what is missing, then run
#   openwrt/vm-test.sh mipsel --fast   reuse the cached kernel and the dae
#                                      binary already built (minutes)
#   openwrt/vm-test.sh mipsel --jit 0  one run only, with this JIT setting
#
# Targets: mipsel (Malta, MIPS32r2 24Kc little-endian, as ramips mt7621).
# Not yet: mips (big-endian, ath79), aarch64 (virt); see openwrt/README.md.
#
# Prints the guest's PASS/FAIL lines and a summary; exits 0 only if every
# check of every run passed. Needs root (apt-get, the kernel build's
# packages). Heavy steps run under `nice -n 19` with `make -j2`. Cache:
# $DAE_VM_CACHE (default /var/cache/dae-vm): the kernel source, one kernel
# per target and config (keyed by the hash of openwrt/vm/kernel-*.config
# and the source version), busybox. Leaves nothing running: qemu is killed
# and the temporary directory removed on any exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${DAE_VM_CACHE:-/var/cache/dae-vm}
cross_out=${DAE_CROSS_DIR:-$repo/target/cross}/out

usage() {
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-0}"
}

target='' fast=0 jits=(1 0)
while [ $# -gt 0 ]; do
	case "$1" in
	mipsel) target=$1 ;;
	mips | aarch64)
		echo "vm-test: $1 is not done yet (see openwrt/README.md, 'Routers in a VM')" >&2
		exit 2
		;;
	--fast) fast=1 ;;
	--jit)
		if [ $# -lt 2 ] || ! [[ "$2" =~ ^[01]$ ]]; then usage 2; fi
		jits=("$2")
		shift
		;;
	-h | --help) usage 0 ;;
	*)
		echo "vm-test: unknown argument '$1'" >&2
		usage 2
		;;
	esac
	shift
done
[ -n "$target" ] || usage 2

# Per target: the kernel's architecture and config fragments, the cross
# compiler prefix (kernel and dnsq), the Debian architecture of busybox,
# qemu and its machine.
case "$target" in
mipsel)
	karch=mips kcross=mipsel-linux-gnu- kimage=vmlinux
	kfrags=(kernel-common.config kernel-mips.config)
	kextra=CONFIG_CPU_LITTLE_ENDIAN=y
	cc=mipsel-linux-musl-gcc deb_arch=mipsel
	qemu=(qemu-system-mipsel -M malta -cpu 24Kc -m 256M)
	apt_pkgs=(qemu-system-mips gcc-mipsel-linux-gnu linux-libc-dev-mipsel-cross musl-dev:mipsel)
	kheaders=/usr/mipsel-linux-gnu/include
	;;
esac

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
need() {
	local missing=() p
	for p in "$@"; do installed "$p" || missing+=("$p"); done
	[ ${#missing[@]} -gt 0 ] || return 0
	echo "== apt-get install ${missing[*]}"
	case " ${missing[*]}" in *:"$deb_arch"*)
		dpkg --print-foreign-architectures | grep -qx "$deb_arch" || dpkg --add-architecture "$deb_arch"
		;;
	esac
	apt-get update -qq || echo "vm-test: apt-get update reported errors (continuing)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

tmp=''
qemu_pid=''
cleanup() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	[ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need linux-source-6.1 flex bison bc cpio gzip xz-utils libssl-dev libelf-dev "${apt_pkgs[@]}"
mkdir -p "$cache"
tmp=$(mktemp -d /tmp/dae-vm.XXXXXX)

# --- the kernel --------------------------------------------------------------
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
src=$cache/src/linux-source-6.1
if [ "$(cat "$src/.debian-version" 2>/dev/null)" != "$src_version" ]; then
	[ "$fast" = 0 ] || {
		echo "vm-test: --fast: no kernel source in $src (run once without --fast)" >&2
		exit 1
	}
	echo "== unpacking linux-source-6.1 $src_version into $src"
	rm -rf "$src" && mkdir -p "$src"
	nice -n 19 tar -xf /usr/src/linux-source-6.1.tar.xz -C "$src" --strip-components=1
	echo "$src_version" >"$src/.debian-version"
fi
frag=$tmp/kernel.config
for f in "${kfrags[@]}"; do cat "$here/vm/$f"; done >"$frag"
echo "$kextra" >>"$frag"
key=$( (echo "$target $src_version" && cat "$frag") | sha256sum | cut -c1-16)
kdir=$cache/kernel-$target-$key
kernel=$kdir/$kimage
if [ ! -f "$kernel" ]; then
	[ "$fast" = 0 ] || {
		echo "vm-test: --fast: no kernel built for this config ($kdir; run once without --fast)" >&2
		exit 1
	}
	echo "== building the $target kernel (linux $src_version) in $kdir (log: $kdir/build.log)"
	# From the newest build of this target, if any: make then rebuilds only
	# what the changed options touch (minutes instead of half an hour).
	seed=$(find "$cache" -maxdepth 1 -name "kernel-$target-*" -type d -printf '%T@ %p\n' |
		sort -n | tail -n 1 | cut -d' ' -f2-)
	if [ -n "$seed" ] && [ -f "$seed/.config" ]; then
		echo "   (starting from $seed)"
		rm -rf "$kdir.part"
		cp -a "$seed" "$kdir.part"
		rm -f "$kdir.part/$kimage"
		mv "$kdir.part" "$kdir"
	fi
	mkdir -p "$kdir"
	# allnoconfig plus the fragment; the =n lines only document.
	grep -v '=n$' "$frag" >"$kdir/fragment.config"
	make -s -C "$src" ARCH="$karch" CROSS_COMPILE="$kcross" O="$kdir" \
		KCONFIG_ALLCONFIG="$kdir/fragment.config" allnoconfig >"$kdir/build.log" 2>&1
	unmet=$(grep '^CONFIG_' "$kdir/fragment.config" | while read -r line; do
		grep -qx "$line" "$kdir/.config" || echo "$line"
	done)
	if [ -n "$unmet" ]; then
		echo "vm-test: the kernel config lacks (a dependency is missing in openwrt/vm/*.config): $unmet" >&2
		exit 1
	fi
	if ! nice -n 19 make -C "$src" ARCH="$karch" CROSS_COMPILE="$kcross" O="$kdir" \
		-j2 "$kimage" >>"$kdir/build.log" 2>&1; then
		tail -n 30 "$kdir/build.log" >&2
		echo "vm-test: the kernel build failed (log: $kdir/build.log)" >&2
		exit 1
	fi
fi
if grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$kdir/.config"; then
	echo "vm-test: the kernel in $kdir has BTF, which OpenWrt's have not" >&2
	exit 1
fi
kversion=$(make -s -C "$src" kernelversion)

# --- the guest's programs ------------------------------------------------------
dae=$cross_out/dae-$target
if [ "$fast" = 0 ] || [ ! -x "$dae" ]; then
	echo "== openwrt/cross-build.sh --no-test $target"
	nice -n 19 "$here/cross-build.sh" --no-test "$target" | sed 's/^/   /'
fi
# busybox-static for the target, unpacked here: installing it would replace
# the host's own busybox.
bb_version=$(apt-cache policy "busybox-static:$deb_arch" | sed -n 's/^ *Candidate: //p')
busybox=$cache/busybox-$deb_arch-$bb_version/bin/busybox
if [ ! -x "$busybox" ]; then
	if [ -z "$bb_version" ] || [ "$bb_version" = "(none)" ]; then
		echo "vm-test: no busybox-static:$deb_arch in apt's lists" >&2
		exit 1
	fi
	(cd "$tmp" && apt-get download -q "busybox-static:$deb_arch=$bb_version" >/dev/null 2>&1)
	dpkg-deb -x "$tmp"/busybox-static_*"_$deb_arch.deb" "$cache/busybox-$deb_arch-$bb_version"
fi
# The lab's client and filter lister (the kernel's uapi headers after
# the libc's own).
for tool in dnsq tcls; do
	"$cc" -Os -static -Wall -Wextra -Werror -idirafter "$kheaders" -o "$tmp/$tool" "$here/vm/$tool.c"
done

# --- the initramfs ---------------------------------------------------------------
root=$tmp/root
mkdir -p "$root/bin" "$root/dev"
cp "$busybox" "$root/bin/busybox"
cp "$dae" "$root/bin/dae"
cp "$tmp/dnsq" "$tmp/tcls" "$root/bin/"
cp "$here/vm/init" "$root/init"
cp "$here/vm/lab.sh" "$root/lab.sh"
mknod "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initramfs.gz"
echo "== $target: linux $kversion ($kernel), dae $(stat -c %s "$dae") bytes, initramfs $(stat -c %s "$tmp/initramfs.gz") bytes"

# --- the runs --------------------------------------------------------------------
fails=0
for jit in "${jits[@]}"; do
	log=$tmp/console-jit$jit.log
	: >"$log"
	"${qemu[@]}" -kernel "$kernel" -initrd "$tmp/initramfs.gz" \
		-append "console=ttyS0 panic=1 dae_jit=$jit" \
		-display none -vga none -monitor none -serial "file:$log" -nic none -no-reboot \
		</dev/null 2>"$log.qemu" &
	qemu_pid=$!
	# Emulated MIPS: the boot takes seconds, each dae start up to a minute.
	deadline=$((SECONDS + ${DAE_VM_TIMEOUT:-900}))
	while kill -0 "$qemu_pid" 2>/dev/null && ! grep -q '^VM-END' "$log" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "vm-test: the guest did not finish in time" >&2
			break
		fi
		sleep 2
	done
	sleep 1
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=''
	tr -d '\r' <"$log" >"$log.txt"
	echo "== $target, linux $kversion, bpf_jit_enable=$jit"
	grep -E '^(PASS|FAIL|INFO|LAB-DONE|VM-BEGIN|VM-END)' "$log.txt" | sed 's/^/   /'
	if ! grep -q '^VM-END rc=0' "$log.txt"; then
		fails=$((fails + 1))
		echo "   FAIL run: the lab did not finish cleanly; the console's last lines:"
		tail -n 25 "$log.txt" | sed 's/^/   | /'
		sed 's/^/   qemu: /' "$log.qemu"
	fi
	[ -z "${DAE_VM_KEEP_LOG:-}" ] || cp "$log.txt" "$DAE_VM_KEEP_LOG.jit$jit"
done
if [ "$fails" = 0 ]; then
	echo "== vm-test $target: every check passed (${#jits[@]} run(s))"
else
	echo "== vm-test $target: $fails run(s) with failures"
	exit 1
fi
