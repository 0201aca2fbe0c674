#!/usr/bin/env bash
# Cross-builds dae for the CPUs OpenWrt routers have, here on Debian 12
# (bookworm) without docker or rustup targets, runs the unit tests of some
# of them under qemu-user, and prints (and records) the size of each
# stripped binary.
#
#   openwrt/cross-build.sh                 all targets; unit tests for mipsel, aarch64
#   openwrt/cross-build.sh mipsel aarch64  only these
#   openwrt/cross-build.sh --test-all      unit tests for every target built
#   openwrt/cross-build.sh --no-test       build and measure only
#   openwrt/cross-build.sh --ipk mipsel    also assemble installable .ipk files
#   openwrt/cross-build.sh --update-readme write the size table into openwrt/README.md
#
# Targets: aarch64 (filogic, rockchip, mediatek), armv7 (ipq40xx and other
# Cortex-A7/A9), mipsel (ramips mt7621/mt76x8), mips (ath79, big-endian),
# x86_64. How each is built:
#   - Debian's own Rust (rustc-web, cargo-web from bookworm-security, called
#     as /usr/bin/rustc and /usr/bin/cargo), because it ships the standard
#     library for other architectures as multiarch packages:
#     libstd-rust-web-dev:arm64 for aarch64 and :armhf for armv7;
#   - for MIPS (no Debian standard library for it), the standard library is
#     compiled from rust-web-src with -Zbuild-std (RUSTC_BOOTSTRAP=1; armv7
#     falls back to this too when :armhf cannot be installed);
#   - mipsel links musl statically (Rust's mipsel-unknown-linux-musl,
#     soft-float like OpenWrt's mipsel_24kc): Debian's musl-dev:mipsel
#     (libc.a, crt objects, the mipsel-linux-musl-gcc wrapper around the gcc
#     cross compiler), with the members of its libc.a that use the FPU left
#     out (its libm is hard-float; compiler_builtins has soft-float ones) and
#     libgcc_eh.a as the unwinder, with dl_find_object.c for what it needs
#     from glibc. The other targets link glibc statically
#     (`-C target-feature=+crt-static`; Debian has no musl for big-endian
#     mips, and no musl standard library for ARM); DAE_CROSS_LIBC=glibc
#     builds mipsel that way too. Either way the binary is static, so it
#     runs on any Linux kernel, OpenWrt's included; qemu-user-static runs it
#     here.
# The package for the routers' own musl is built by the OpenWrt SDK from
# openwrt/Makefile; the binaries built here are for testing and for owners
# who install by hand (openwrt/build-ipk.sh).
#
# Needs root for apt (it installs what is missing). Output goes to
# $DAE_CROSS_DIR (default target/cross): out/dae-TARGET, out/sizes.md,
# out/sizes.tsv and the logs. Knobs for size experiments:
# DAE_CROSS_LIBC (musl or glibc; musl only for mipsel), DAE_CROSS_SIZE=0
# (without the size settings of the musl build: std features, rustflags),
# DAE_CROSS_FEATURES (cargo features, e.g. "--no-default-features"),
# DAE_CROSS_STD_FEATURES (with a standard library built here, instead of
# the target's: e.g. "optimize_for_size" or "panic_immediate_abort"; set
# and empty for cargo's defaults), DAE_CROSS_STATIC=0 (link
# glibc dynamically: close to the size of the SDK's build, which links the
# router's shared musl; the binary is then for measuring, not for routers),
# DAE_CROSS_RUSTFLAGS (added to the target's rustflags, e.g.
# "-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cross_dir=${DAE_CROSS_DIR:-$repo/target/cross}
out=$cross_dir/out
readme=$here/README.md
# The size budget of the full-featured mipsel binary (bytes): the run fails
# above it. DAE_CROSS_MIPSEL_LIMIT changes it (e.g. while it is not met).
mipsel_limit=${DAE_CROSS_MIPSEL_LIMIT:-$((3 * 1024 * 1024))}

all_targets=(aarch64 armv7 mipsel mips x86_64)
default_tests=(mipsel aarch64)
targets=()
test_all=0
no_test=0
want_ipk=0
update_readme=0

usage() {
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-0}"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--test-all) test_all=1 ;;
	--no-test) no_test=1 ;;
	--ipk) want_ipk=1 ;;
	--update-readme) update_readme=1 ;;
	-h | --help) usage 0 ;;
	aarch64 | armv7 | mipsel | mips | x86_64) targets+=("$1") ;;
	*)
		echo "cross-build: unknown argument '$1'" >&2
		usage 2
		;;
	esac
	shift
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# Per target: Rust triple, gcc prefix, qemu, where std comes from (the
# Debian architecture of its multiarch package, or "build"), the OpenWrt
# package architecture and TC object byte order (for --ipk); musl_arch: the
# Debian architecture whose musl-dev:ARCH links the musl build (empty: no
# musl build here), default_libc: what the target links when DAE_CROSS_LIBC
# is not set.
set_target() {
	musl_arch='' default_libc=glibc size_std='' size_flags='' size_release_flags=''
	case "$1" in
	aarch64)
		triple=aarch64-unknown-linux-gnu gcc=aarch64-linux-gnu qemu=qemu-aarch64-static
		std=arm64 owrt_arch=aarch64_cortex-a53 bpf=bpfel
		;;
	armv7)
		triple=armv7-unknown-linux-gnueabihf gcc=arm-linux-gnueabihf qemu=qemu-arm-static
		std=armhf owrt_arch=arm_cortex-a7_neon-vfpv4 bpf=bpfel
		;;
	mipsel)
		triple=mipsel-unknown-linux-gnu gcc=mipsel-linux-gnu qemu=qemu-mipsel-static
		std=build owrt_arch=mipsel_24kc bpf=bpfel
		musl_arch=mipsel default_libc=musl
		;;
	mips)
		triple=mips-unknown-linux-gnu gcc=mips-linux-gnu qemu=qemu-mips-static
		std=build owrt_arch=mips_24kc bpf=bpfeb
		;;
	x86_64)
		triple=x86_64-unknown-linux-gnu gcc=x86_64-linux-gnu qemu=
		std=amd64 owrt_arch=x86_64 bpf=bpfel
		;;
	esac
	libc=${DAE_CROSS_LIBC:-$default_libc}
	case "$libc" in
	glibc) ;;
	musl)
		if [ -z "$musl_arch" ]; then
			echo "cross-build: $1: no musl build here (DAE_CROSS_LIBC=glibc)" >&2
			return 1
		fi
		if [ "${DAE_CROSS_STATIC:-1}" != 1 ]; then
			echo "cross-build: $1: the musl build is static only (DAE_CROSS_LIBC=glibc for DAE_CROSS_STATIC=0)" >&2
			return 1
		fi
		triple=${triple%-gnu}-musl std=build gcc_musl=${gcc%-gnu}-musl
		# Built for size (what brings the full-featured binary under the
		# budget; DAE_CROSS_SIZE=0 leaves it out): std with optimize_for_size
		# and without backtrace symbolization (panics still print their
		# message and location); MIPS code without PIC (abicalls and the GOT
		# cost about 11%: the static binary is not position-independent
		# anyway); no unwind tables in the release binary (panic=abort: only
		# a backtrace would read them, and a stripped binary has no symbols
		# to show in one); no RELRO segment: only a dynamic loader applies
		# RELRO, and a static musl executable has none (its relocation-time
		# data stays writable either way: checked under qemu-mipsel, whose
		# maps show the region rw-), while the linker pads the file so that
		# the segment ends on a 64 KiB page (MIPS's largest), up to 64 KiB
		# of zeros for nothing.
		if [ "${DAE_CROSS_SIZE:-1}" = 1 ]; then
			size_std=optimize_for_size
			size_flags="-C relocation-model=static"
			size_release_flags="-C force-unwind-tables=no -C link-arg=-Wl,-z,norelro"
		fi
		;;
	*)
		echo "cross-build: DAE_CROSS_LIBC must be musl or glibc, not '$libc'" >&2
		return 1
		;;
	esac
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
	local missing=() p
	for p in "$@"; do
		installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "cross-build: missing packages (install them as root): ${missing[*]}" >&2
		return 1
	fi
	echo "== apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# add_arch ARCH: adds a foreign dpkg architecture unless it is there (the
# next apt_update then fetches its index); arch_added says whether it did.
arch_added=0
add_arch() {
	arch_added=0
	if dpkg --print-foreign-architectures | grep -qx "$1"; then
		return 0
	fi
	dpkg --add-architecture "$1"
	arch_added=1
	apt_updated=0
}

apt_updated=0
apt_update() {
	[ "$apt_updated" = 1 ] && return 0
	# A mirror in the middle of a sync can fail one architecture's index;
	# what was fetched is still used, and the install says what is missing.
	apt-get update -qq || echo "cross-build: apt-get update reported errors (continuing)" >&2
	apt_updated=1
}

# Debian's Rust and the tools every target needs.
setup_common() {
	local need=(rustc-web cargo-web rust-web-src qemu-user-static gcc binutils file)
	local p absent=0
	for p in "${need[@]}"; do installed "$p" || absent=1; done
	if [ "$absent" = 1 ]; then
		apt_update
		apt_install "${need[@]}"
	fi
}

# The cross compiler and standard library of one target. Sets std_mode to
# "prebuilt" or "build".
setup_target() {
	local pkgs=()
	case "$1" in
	x86_64) ;;
	*) pkgs+=("gcc-$gcc" "libc6-dev-${std_libc_arch}-cross") ;;
	esac
	if [ ${#pkgs[@]} -gt 0 ]; then
		local p absent=0
		for p in "${pkgs[@]}"; do installed "$p" || absent=1; done
		if [ "$absent" = 1 ]; then
			apt_update
			apt_install "${pkgs[@]}"
		fi
	fi
	std_mode=build
	case "$std" in
	build) return 0 ;;
	amd64)
		std_mode=prebuilt
		return 0
		;;
	esac
	if [ -d "/usr/lib/rustlib/$triple/lib" ]; then
		std_mode=prebuilt
		return 0
	fi
	if [ "$(id -u)" -eq 0 ]; then
		add_arch "$std"
		local added=$arch_added
		apt_update
		# The :ARCH standard library must be the same version as rustc-web.
		local v
		v=$(dpkg-query -W -f='${Version}' rustc-web)
		if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"libstd-rust-web-dev:$std=$v" >/dev/null 2>"$cross_dir/apt-$1.err"; then
			std_mode=prebuilt
			return 0
		fi
		echo "cross-build: libstd-rust-web-dev:$std=$v could not be installed ($(tail -n 1 "$cross_dir/apt-$1.err")); building the standard library from source instead"
		# Do not leave an architecture behind whose index may fail every
		# later `apt-get update` (and with it scripts that run under set -e).
		if [ "$added" = 1 ]; then
			dpkg --remove-architecture "$std"
			apt_updated=0
		fi
	fi
}

# What the musl build of the current target links, in $musl_dir: Debian's
# musl-dev:ARCH brings libc.a, the crt objects and $musl_gcc (the gcc cross
# compiler with musl's specs). Rust's musl targets want an unwinder as
# libunwind.a: libgcc_eh.a of the gcc cross compiler, plus
# dl_find_object.c, as that libgcc_eh was built against glibc. Rust's MIPS
# musl targets are soft-float, as OpenWrt's userland is, but Debian's musl
# is hard-float: its libc.a is copied without the members that use the FPU
# (libm, fenv, setjmp), so that the link takes compiler_builtins'
# soft-float math instead (or fails, should dae ever need one of the
# others). Kept: printf, scanf and strtod with the frexp and scalbn they
# call, as libc calls them itself (with integers and strings: their FPU
# code runs only to convert floats, which dae never asks of C). So no FPU
# instruction runs outside the unwinder (whose context save runs only for a
# backtrace or an unwinding panic), and routers without an FPU need no FPU
# emulator in the kernel, which OpenWrt does not build by default.
setup_musl() {
	local lib=/usr/lib/$gcc_musl
	musl_dir=$cross_dir/musl-$1
	musl_gcc=$gcc_musl-gcc
	if ! installed "musl-dev:$musl_arch"; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "cross-build: missing package (install it as root): musl-dev:$musl_arch" >&2
			return 1
		fi
		add_arch "$musl_arch"
		apt_update
		apt_install "musl-dev:$musl_arch"
	fi
	mkdir -p "$musl_dir"
	# An FPU instruction is a coprocessor 1 load, store or move, a branch on
	# its condition, or an arithmetic, compare or convert on .s/.d/.w.
	"$gcc-objdump" -d "$lib/libc.a" | awk '
		/file format/ { m = $1; sub(/:$/, "", m); next }
		$3 ~ /^([ls][wd]c1|m[ft]h?c1|[ct]fc1|bc1[tf]l?|(add|sub|mul|div|mov|movn|movz|neg|abs|sqrt|madd|msub|recip|rsqrt)\.[dsw]|cvt\.[a-z]+\.[a-z]+|c\.[a-z]+\.[ds]|(trunc|floor|ceil|round)\.[a-z]+\.[ds])$/ { print m }
	' | sort -u | grep -Ev '^(vfw?printf|vfscanf|floatscan|wcstod|strtod|frexp|scalbn)\.lo$' >"$musl_dir/fpu-members.txt"
	cp "$lib/libc.a" "$musl_dir/libc.a"
	xargs "$gcc-ar" d "$musl_dir/libc.a" <"$musl_dir/fpu-members.txt"
	cp "$("$gcc-gcc" -print-file-name=libgcc_eh.a)" "$musl_dir/libunwind.a"
	"$musl_gcc" -Os -msoft-float -Wall -Wextra -Werror -c "$here/dl_find_object.c" -o "$musl_dir/dl_find_object.o"
	"$gcc-ar" rs "$musl_dir/libunwind.a" "$musl_dir/dl_find_object.o"
	echo "   musl: $lib/libc.a without its $(wc -l <"$musl_dir/fpu-members.txt") FPU members, libgcc_eh as libunwind.a"
}

# The environment of one cargo run for the current target, as NAME=VALUE
# words for `env`.
cargo_env() {
	local t
	t=$(echo "$triple" | tr 'a-z-' 'A-Z_')
	envs=(
		"RUSTC=/usr/bin/rustc"
		"CARGO_TARGET_DIR=$cross_dir/build"
	)
	# A standard library built here needs RUSTC_BOOTSTRAP, and with it rustc
	# takes nightly's v0 symbol mangling; src/layout.ld names functions in
	# stable's legacy mangling, so ask for that.
	local mangling=''
	[ "$std_mode" = build ] && mangling='-Z unstable-options -C symbol-mangling-version=legacy'
	if [ "$libc" = musl ]; then
		# link-self-contained=no: the crt objects and libc of musl-dev (by
		# $musl_gcc's specs) rather than those Rust ships, which are not here.
		# -msoft-float: C code (ring) in the ABI of Rust's target.
		envs+=(
			"CARGO_TARGET_${t}_LINKER=$musl_gcc"
			"CARGO_TARGET_${t}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no -L native=$musl_dir $size_flags $mangling ${DAE_CROSS_RUSTFLAGS:-}"
			"CFLAGS_$(echo "$triple" | tr - _)=-msoft-float"
		)
	else
		# glibc: static unless DAE_CROSS_STATIC=0.
		local crt=+crt-static
		[ "${DAE_CROSS_STATIC:-1}" = 1 ] || crt=-crt-static
		envs+=(
			"CARGO_TARGET_${t}_LINKER=$gcc-gcc"
			"CARGO_TARGET_${t}_RUSTFLAGS=-C target-feature=$crt $mangling ${DAE_CROSS_RUSTFLAGS:-}"
		)
	fi
	# -L: where a dynamically linked binary finds its loader and libc.
	[ -n "$qemu" ] && envs+=("CARGO_TARGET_${t}_RUNNER=$qemu -L /usr/$gcc")
	[ "$std_mode" = build ] && envs+=("RUSTC_BOOTSTRAP=1")
	return 0
}

now() { date +%s; }

# The TC program for one target, the way openwrt/Makefile builds it in the
# SDK: clang straight to the router's byte order (bpfel/bpfeb), with the
# kernel headers of the target's own architecture (here those of Debian's
# cross libc, in the SDK the toolchain's), so that bit fields such as the
# IPv4 header length are laid out for that byte order.
build_tc_object() {
	local inc
	case "$1" in
	x86_64) inc=/usr/include/x86_64-linux-gnu ;;
	*) inc=/usr/$gcc/include ;;
	esac
	apt_install clang llvm libbpf-dev
	clang -O2 -g -Wall -Werror -target "$bpf" -isystem "$inc" \
		-D__MIPS${bpf_mips}__ -I"$repo/ebpf" \
		-c "$repo/ebpf/dae_tc.c" -o "$out/dae_tc.$1.o"
	llvm-strip --strip-debug "$out/dae_tc.$1.o"
}

mkdir -p "$out"
setup_common
echo "== $(/usr/bin/rustc --version) / $(/usr/bin/cargo --version)"

rows=()
failed=()
for name in "${targets[@]}"; do
	set_target "$name"
	if [ "$bpf" = bpfeb ]; then bpf_mips=EB; else bpf_mips=EL; fi
	case "$name" in
	aarch64) std_libc_arch=arm64 ;;
	armv7) std_libc_arch=armhf ;;
	*) std_libc_arch=$name ;;
	esac
	log=$cross_dir/build-$name.log
	setup_target "$name"
	[ "$libc" = musl ] && setup_musl "$name"
	cargo_env
	echo "== $name: $triple (standard library: $std_mode), log $log"
	build_std=()
	std_features=${DAE_CROSS_STD_FEATURES-$size_std}
	if [ "$std_mode" = build ]; then
		build_std=("-Zbuild-std=std,panic_abort")
		[ -n "$std_features" ] && build_std+=("-Zbuild-std-features=$std_features")
	fi
	# Flags for the release build only (the unit tests unwind).
	release_env=()
	if [ -n "$size_release_flags" ]; then
		for e in "${envs[@]}"; do
			case "$e" in CARGO_TARGET_*_RUSTFLAGS=*) release_env+=("$e $size_release_flags") ;; esac
		done
	fi
	# shellcheck disable=SC2206 # cargo options, split on purpose
	features=(${DAE_CROSS_FEATURES:-})
	t0=$(now)
	if ! (cd "$repo" && env "${envs[@]}" "${release_env[@]}" /usr/bin/cargo build --release --locked \
		--target "$triple" "${build_std[@]}" "${features[@]}") >"$log" 2>&1; then
		tail -30 "$log" >&2
		echo "cross-build: $name: build FAILED (log: $log)" >&2
		failed+=("$name: build")
		continue
	fi
	build_s=$(($(now) - t0))
	bin=$out/dae-$name
	"$gcc-strip" --strip-all -o "$bin" "$cross_dir/build/$triple/release/dae"
	size=$(stat -c %s "$bin")
	built=$(stat -c %s "$cross_dir/build/$triple/release/dae")
	# x86_64 links as static-pie; the others as plain static executables.
	link=static
	if [ "${DAE_CROSS_STATIC:-1}" = 1 ]; then
		file -b "$bin" | grep -Eq "statically linked|static-pie linked" || {
			echo "cross-build: $name: not a static binary: $(file -b "$bin")" >&2
			failed+=("$name: not static")
		}
	else
		link=dynamic
	fi
	[ "$built" = "$size" ] || echo "note: $name: strip removed $((built - size)) more bytes"

	# The binary itself, run as on the router.
	if [ -n "$qemu" ]; then run=("$qemu" -L "/usr/$gcc" "$bin"); else run=("$bin"); fi
	version=$("${run[@]}" --version)
	expect="dae $(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)"
	if [ "$version" != "$expect" ]; then
		echo "cross-build: $name: --version says '$version', expected '$expect'" >&2
		failed+=("$name: --version")
	fi
	if ! "${run[@]}" validate -c "$here/files/dae.config" >/dev/null; then
		failed+=("$name: validate of the shipped config")
	fi
	echo "   $version, validate OK, $size bytes stripped, built in ${build_s}s"
	if [ "$name" = mipsel ] && [ "$size" -ge "$mipsel_limit" ]; then
		echo "cross-build: mipsel binary is $size bytes, over the limit of $mipsel_limit bytes" >&2
		failed+=("mipsel: size")
	fi

	tests="not run"
	run_tests=0
	if [ "$no_test" = 0 ]; then
		if [ "$test_all" = 1 ]; then run_tests=1; fi
		for d in "${default_tests[@]}"; do [ "$d" = "$name" ] && run_tests=1; done
	fi
	if [ "$run_tests" = 1 ]; then
		tlog=$cross_dir/test-$name.log
		test_std=()
		[ "$std_mode" = build ] && test_std=(-Zbuild-std)
		t0=$(now)
		# No debug info in the test build: it links faster and nothing reads it.
		if (cd "$repo" && env "${envs[@]}" CARGO_PROFILE_DEV_DEBUG=0 /usr/bin/cargo test --locked --target "$triple" \
			"${test_std[@]}" --lib --bins) >"$tlog" 2>&1; then
			passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$tlog" | awk '{s += $1} END {print s + 0}')
			tests="$passed passed (${qemu:-native}, $(($(now) - t0))s)"
			echo "   unit tests: $tests"
		else
			tail -40 "$tlog" >&2
			tests="FAILED"
			failed+=("$name: unit tests (log: $tlog)")
		fi
	fi

	if [ "$want_ipk" = 1 ]; then
		build_tc_object "$name"
		"$here/build-ipk.sh" --binary "$bin" --arch "$owrt_arch" \
			--bpf-object "$out/dae_tc.$name.o" --out "$out"
	fi
	mib=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')
	read -r -a words <<<"$size_flags $size_release_flags ${DAE_CROSS_RUSTFLAGS:-}"
	flags="${words[*]}"
	variant="$link $libc${DAE_CROSS_FEATURES:+, $DAE_CROSS_FEATURES}${std_features:+, std: $std_features}${flags:+, $flags}"
	rows+=("$name|$owrt_arch|$triple|$std_mode|$variant|$size|$mib|$build_s|$tests")
done

{
	echo "| target | OpenWrt arch | Rust target | std | build | stripped bytes | MiB | build s | unit tests |"
	echo "|---|---|---|---|---|---:|---:|---:|---|"
	for r in "${rows[@]}"; do
		IFS='|' read -r n a t s v b m bs ts <<<"$r"
		echo "| $n | $a | \`$t\` | $s | $v | $b | $m | $bs | $ts |"
	done
} >"$out/sizes.md"
printf '%s\n' "${rows[@]}" | tr '|' '\t' >"$out/sizes.tsv"
echo
cat "$out/sizes.md"
echo "($(/usr/bin/rustc --version), $(date -u +%Y-%m-%d))"

if [ "$update_readme" = 1 ]; then
	# Replaces what is between the two marker lines of openwrt/README.md.
	tmp=$(mktemp)
	awk -v table="$out/sizes.md" -v stamp="$(/usr/bin/rustc --version), $(date -u +%Y-%m-%d)" '
		/<!-- sizes:begin -->/ { print; while ((getline l < table) > 0) print l; print ""; print "Measured with " stamp "."; skip = 1; next }
		/<!-- sizes:end -->/ { skip = 0 }
		!skip { print }
	' "$readme" >"$tmp"
	cat "$tmp" >"$readme"
	rm -f "$tmp"
	echo "== size table written to $readme"
fi

if [ ${#failed[@]} -gt 0 ]; then
	printf 'cross-build: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "cross-build: all done"
