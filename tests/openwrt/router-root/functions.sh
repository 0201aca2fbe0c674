# shellcheck shell=sh
# A scratch root's /lib/functions.sh for tests/openwrt_apk.rs and
# tests/openwrt_luci_ipk.rs: our own minimal version of what OpenWrt's
# default_postinst and default_prerm do with a package's init scripts (the
# rest of OpenWrt's functions.sh is not needed by the packages' scripts).
#
# Both find the package's file list (opkg: /usr/lib/opkg/info/PKG.list;
# apk: /lib/apk/packages/PKG.list, which wins when it exists), PKG being
# $pkgname or else the script's name without its extension (opkg names
# the scripts PKG.postinst ...); the root is $IPKG_INSTROOT (empty on a
# running router). On a running router default_postinst sources opkg's
# PKG.postinst-pkg, then enables (not on an upgrade, PKG_UPGRADE=1) and
# starts each /etc/init.d/ script of the list; default_prerm disables (not
# on an upgrade) and stops them. While an image is built (IPKG_INSTROOT
# set) they only enable and disable, through $root/etc/rc.common.

dae_test_filelist() {
	dae_test_list="$root/usr/lib/opkg/info/$pkgname.list"
	[ -f "$root/lib/apk/packages/$pkgname.list" ] && dae_test_list="$root/lib/apk/packages/$pkgname.list"
	echo "$dae_test_list"
}

default_postinst() {
	root="${IPKG_INSTROOT}"
	[ -n "$pkgname" ] || pkgname=$(basename "${1%.*}")
	filelist=$(dae_test_filelist)
	ret=0
	if [ -z "$root" ]; then
		rm -f /tmp/luci-indexcache.*
	fi
	if [ -f "$root/usr/lib/opkg/info/$pkgname.postinst-pkg" ]; then
		# shellcheck source=/dev/null
		(. "$root/usr/lib/opkg/info/$pkgname.postinst-pkg")
		ret=$?
	fi
	grep -s "^/etc/init.d/" "$filelist" | while read -r i; do
		if [ -n "$root" ]; then
			/bin/sh "$root/etc/rc.common" "$root$i" enable
		else
			[ "$PKG_UPGRADE" = 1 ] || "$i" enable
			"$i" start
		fi
	done
	return $ret
}

default_prerm() {
	root="${IPKG_INSTROOT}"
	[ -n "$pkgname" ] || pkgname=$(basename "${1%.*}")
	filelist=$(dae_test_filelist)
	grep -s "^/etc/init.d/" "$filelist" | while read -r i; do
		if [ -n "$root" ]; then
			/bin/sh "$root/etc/rc.common" "$root$i" disable
		else
			[ "$PKG_UPGRADE" = 1 ] || "$i" disable
			"$i" stop
		fi
	done
	return 0
}
