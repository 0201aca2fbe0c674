#!/usr/bin/env bash
# The full test suite, on a fresh Debian 12 machine as root: installs what it
# needs, then checks formatting and lints, then runs every test (unit tests
# and the integration tests that drive the real binary against real servers).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/deps.sh
. tests/deps.sh
need_root
install_packages "${DAE_TEST_PACKAGES[@]}"
install_python_packages
ensure_node
ensure_rust

echo "== shellcheck"
shellcheck -x tests/*.sh tests/luci/*.sh tests/openwrt/*.sh bench/*.sh ebpf/*.sh \
  tests/openwrt/router-root/* openwrt/*.sh openwrt/vm/lab.sh openwrt/vm/init openwrt/files/postinst openwrt/files/prerm openwrt/files/*.postinst-pkg init.d/dae fuzz/run.sh .ci/run
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== LuCI app (luci-app-dae)"
DAE_BIN="$PWD/target/debug/dae" tests/luci/run.sh
