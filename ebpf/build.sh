#!/usr/bin/env bash
# Builds the TC program for both byte orders:
#   ebpf/build/dae_tc.bpfel.o  (x86, ARM, mipsel: little-endian routers)
#   ebpf/build/dae_tc.bpfeb.o  (ath79 and other big-endian MIPS)
# Needs clang (any version with the BPF target) and the kernel/libbpf
# headers: apt-get install -y clang llvm libbpf-dev linux-libc-dev.
# The OpenWrt package builds the same source with the SDK's BPF toolchain.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build"
mkdir -p "$out"
multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
for order in bpfel bpfeb; do
  clang -O2 -g -Wall -Werror -target "$order" \
    -I"/usr/include/$multiarch" -I"$here" \
    -c "$here/dae_tc.c" -o "$out/dae_tc.$order.o"
done
echo "built $out/dae_tc.bpfel.o $out/dae_tc.bpfeb.o"
