#!/usr/bin/env bash
# Shows that tests/openwrt_init.rs catches a broken init script: makes
# copies of init.d/dae with one fault each (an unquoted or eval'd UCI value,
# a changed command line, reload by restart, no config check ...), runs the
# test against each copy (DAE_INIT_SCRIPT) and fails if any copy passes.
#   tests/openwrt/mutate-init.sh      (about a second per fault once built)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name, then a sed expression that breaks the script (literal on purpose)
# shellcheck disable=SC2016
faults=(
	"netdev unquoted" 's/procd_append_param netdev "\$1"/procd_append_param netdev $1/'
	"netdev eval'd" 's/procd_append_param netdev "\$1"/eval "procd_append_param netdev $1"/'
	"enabled eval'd" 's/config_get value "\$1" enabled 0/config_get value "$1" enabled 0; eval "value=$value"/'
	"enabled too lax" 's/1 | true | yes | on) return 0 ;;/1 | true | yes | on | enabled) return 0 ;;/'
	"no respawn values" 's/respawn 3600 5 5/respawn/'
	"no --syslog" 's/ --syslog$//'
	"short stop timeout" 's/^DAE_TERM_TIMEOUT=15/DAE_TERM_TIMEOUT=1/'
	"reload restarts" 's/^\tstart$/\tstop; start/'
	"reload stops when disabled" 's/^\t\tdae_config_checked=1$/\t\tdae_config_checked=1\n\telse\n\t\tstop; return 0/'
	"no reload signal" 's/procd_set_param reload_signal HUP/:/'
	"no config file compared" 's/procd_set_param file "\$DAE_CONF"/:/'
	"fixed lan trigger" 's/procd_add_reload_interface_trigger "\$1"/procd_add_reload_interface_trigger lan/'
	"no config check" 's/dae_config_ok || return 1/true/'
	"no reload trigger" 's/procd_add_reload_trigger "dae"/:/'
	"error not logged" 's/\[ -n "\$line" \] \&\& dae_log err "\$line"/:/'
	"shellcheck finding" 's/local out line/local out line; local x=$(date)/'
)

cargo test --locked --test openwrt_init --no-run >/dev/null 2>&1 || cargo test --locked --test openwrt_init --no-run
survivors=0
i=0
while [ $i -lt ${#faults[@]} ]; do
	name=${faults[$i]}
	expr=${faults[$((i + 1))]}
	i=$((i + 2))
	mutant=$work/dae
	sed "$expr" init.d/dae >"$mutant"
	if cmp -s init.d/dae "$mutant"; then
		echo "FAULT NOT APPLIED: $name (the script changed; update this list)"
		survivors=$((survivors + 1))
		continue
	fi
	if DAE_INIT_SCRIPT=$mutant cargo test --locked --test openwrt_init >"$work/log" 2>&1; then
		echo "NOT CAUGHT: $name"
		survivors=$((survivors + 1))
	else
		echo "caught: $name ($(grep -c '^test .* FAILED$' "$work/log") test(s) failed)"
	fi
done
[ "$survivors" = 0 ] || {
	echo "$survivors fault(s) not caught" >&2
	exit 1
}
echo "every fault was caught"
