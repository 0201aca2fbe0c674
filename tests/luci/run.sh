#!/usr/bin/env bash
# The checks of luci-app-dae, in one run:
#   - every JS file parses (node --check; LuCI class files inside the
#     function luci.js wraps them in),
#   - eslint with LuCI's globals and its 'require ...' directives,
#   - the views against `dae schema --json` (options, types, values,
#     defaults) and their field checks against `dae validate`,
#   - the status page against a running daemon's report, and the ACL
#     against the commands the pages run,
#   - menu.d and acl.d,
#   - the translation template is what the sources give; zh_Hans is complete.
# Uses $DAE_BIN when set, else builds dae with cargo. Installs eslint from
# tests/luci/package-lock.json (npm ci). Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

here=tests/luci
for tool in node npm; do
	if ! command -v "$tool" >/dev/null; then
		echo "tests/luci/run.sh: $tool is needed (Node.js 20 or later)" >&2
		exit 1
	fi
done
failed=()
passed=0

step() {
	local name=$1
	shift
	echo "== $name"
	if "$@"; then
		passed=$((passed + 1))
	else
		echo "!! FAILED: $name"
		failed+=("$name")
	fi
}

if [ -z "${DAE_BIN:-}" ]; then
	echo "== building dae (set DAE_BIN to use a built binary)"
	cargo build -q
	DAE_BIN="${CARGO_TARGET_DIR:-target}/debug/dae"
fi
DAE_BIN=$(realpath "$DAE_BIN")
export DAE_BIN
"$DAE_BIN" --version

echo "== npm ci (eslint, pinned by $here/package-lock.json)"
npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null

step "node --check" node "$here/syntax.js"
step "eslint" "$here/node_modules/.bin/eslint" -c "$here/eslint.config.mjs" --max-warnings 0 luci-app-dae "$here"
step "views against the dae schema and dae validate" node --test --test-reporter=spec "$here/views.test.js"
step "status page and ACL" node --test --test-reporter=spec "$here/status.test.js"
step "menu.d, acl.d, Makefile" node --test --test-reporter=spec "$here/files.test.js"
step "translations" node "$here/i18n.js" --check
if command -v shellcheck >/dev/null; then
	step "shellcheck" shellcheck "$here/run.sh"
else
	echo "== shellcheck: not installed, skipped"
fi

echo
echo "luci: ${passed} passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
	printf '  failed: %s\n' "${failed[@]}"
	exit 1
fi
