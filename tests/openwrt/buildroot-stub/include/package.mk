# Stand-in for OpenWrt's include/package.mk (README.md beside rules.mk).
$(info included package.mk)
PKG_BUILD_DIR?=$(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
PKG_INSTALL_DIR?=$(PKG_BUILD_DIR)/ipkg-install
.DEFAULT_GOAL:=metadata
metadata:
	@:

define BuildPackage
$(eval $(Package/$(1)))
$(info PACKAGE=$(1))
$(foreach v,PKG_NAME PKG_VERSION PKG_RELEASE PKG_SOURCE PKG_SOURCE_URL PKG_HASH \
	PKG_MAINTAINER PKG_LICENSE PKG_LICENSE_FILES PKG_BUILD_DEPENDS PKG_FLAGS \
	SECTION CATEGORY TITLE URL DEPENDS CONFLICTS PKGARCH,$(info $(v)=$(strip $($(v)))))
$(info CONFFILES=$(strip $(Package/$(1)/conffiles)))
$(info BUILD/PREPARE=$(if $(Build/Prepare),own,default))
prepare:
	$$(Build/Prepare)
compile:
	$$(Build/Compile)
endef
