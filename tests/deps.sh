# shellcheck shell=bash
# Sourced by the README's commands: makes sure this Debian machine has what
# the tests and the demo need, installing only what is missing.

# Debian packages each script needs (read by the scripts that source this
# file). The lab demo: the lab (iproute2, procps), unbound and dig, a
# Shadowsocks node, curl, nftables (masquerade) and python3 (a web site), and what
# the build needs (clang and libbpf's headers for the TC program, which
# build.rs compiles into the binary). The suite: all that, and the other
# DNS servers and clients, the proxy servers and the lint tools.
# shellcheck disable=SC2034
DAE_DEMO_PACKAGES=(
  unbound bind9-dnsutils iproute2 procps clang llvm libbpf-dev gcc libc6-dev
  shadowsocks-libev curl nftables python3
)
# shellcheck disable=SC2034
DAE_TEST_PACKAGES=(
  "${DAE_DEMO_PACKAGES[@]}"
  dnsmasq dnsdist dnsperf knot-dnsutils psmisc shellcheck bpftool openssl busybox curl
  shadowsocks-libev trojan v2ray microsocks dante-server nftables
)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "run this as root: the tests use network namespaces, eBPF and port 53" >&2
    exit 1
  fi
}

install_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    # apt's and debconf's chatter (such as "debconf: delaying package
    # configuration, since apt-utils is not installed") goes to a log,
    # shown only if the install fails.
    local log
    log=$(mktemp /tmp/dae-apt.XXXXXX)
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 ||
      ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >>"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "installing ${missing[*]} failed" >&2
      return 1
    fi
    rm -f "$log"
    # Debian starts the servers it just installed as services; the tests
    # start their own. Servers that were already here are left alone.
    for p in "${missing[@]}"; do
      case "$p" in
        unbound | dnsmasq | dnsdist)
          if command -v systemctl >/dev/null 2>&1; then
            systemctl stop "$p" 2>/dev/null || true
            systemctl disable "$p" 2>/dev/null || true
          fi
          pkill -x "$p" 2>/dev/null || true
          ;;
      esac
    done
  fi
}

# A Rust toolchain: the one on PATH if it is new enough, else Debian's
# rustc-web/cargo-web (bookworm-security carries a current Rust).
ensure_rust() {
  if command -v cargo >/dev/null 2>&1 && cargo --version >/dev/null 2>&1; then
    return
  fi
  install_packages rustc-web cargo-web gcc libc6-dev
  export PATH="/usr/bin:$PATH"
}

# Python packages from PyPI that some tests need (aioquic: the DoQ and DoH3
# servers), installed into target/pydeps, where the tests look for them.
install_python_packages() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/pydeps"
  if ! PYTHONPATH="$dir" python3 -c "import aioquic" 2>/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || install_packages python3-pip
    echo "installing into $dir: aioquic"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --target "$dir" "aioquic==1.7.2"
  fi
}

# Node.js 18.18+ and npm, for the LuCI app's checks (tests/luci/run.sh):
# the one on PATH if new enough, else Debian's.
ensure_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a == 18 && b >= 18) ? 0 : 1)'; then
    return
  fi
  install_packages nodejs npm
}
