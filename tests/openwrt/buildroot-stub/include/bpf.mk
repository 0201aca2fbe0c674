# Stand-in for OpenWrt's include/bpf.mk (README.md beside rules.mk).
$(info included bpf.mk)
BPF_DEPENDS:=@HAS_BPF_TOOLCHAIN
BPF_TARGET:=bpf$(if $(CONFIG_BIG_ENDIAN),eb,el)
CLANG:=$(STAGING_DIR_HOST)/llvm-bpf/bin/clang
LLVM_STRIP:=$(STAGING_DIR_HOST)/llvm-bpf/bin/llvm-strip
BPF_HEADERS_DIR:=$(BUILD_DIR)/bpf-headers
