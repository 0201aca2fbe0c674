#!/bin/sh
# Run by the packages feed's CI inside the OpenWrt root filesystem (under
# qemu for the router's CPU) after installing the package: test.sh NAME VERSION.
# Checks that the binary runs on that CPU, is the version packaged, and that
# the shipped config passes its own checker.
case "$1" in
dae)
	dae --version 2>&1 | grep -Fx "dae ${2%%-*}" || exit 1
	dae validate -c /etc/config/dae || exit 1
	;;
esac
