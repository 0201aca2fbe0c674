# Stand-in for the packages feed's lang/rust/rust-package.mk (README.md
# beside rules.mk).
$(info included rust-package.mk)
RUST_ARCH_DEPENDS:=@(aarch64||arm||i386||mips||mipsel||x86_64)
# Shows DAE_EMBED_BPF as the package's Makefile exports it to cargo.
define Build/Compile/Cargo
	DAE_EMBED_BPF=$(DAE_EMBED_BPF) cargo build --release --manifest-path $(PKG_BUILD_DIR)/Cargo.toml
endef
define RustBinPackage
$(info RUST_BIN_PACKAGE=$(1))
endef
