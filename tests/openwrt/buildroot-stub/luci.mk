# Stand-in for the LuCI feed's luci.mk (README.md beside rules.mk).
$(info included luci.mk)
PKG_NAME?=$(notdir $(CURDIR))
PKG_VERSION?=git
Package/$(PKG_NAME)=
$(info PACKAGE=$(PKG_NAME))
$(foreach v,LUCI_TITLE LUCI_DESCRIPTION LUCI_DEPENDS LUCI_PKGARCH PKG_MAINTAINER PKG_LICENSE,$(info $(v)=$(strip $($(v)))))
.DEFAULT_GOAL:=metadata
metadata:
	@:
