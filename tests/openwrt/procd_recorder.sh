# shellcheck shell=sh
# The recorders are called by the sourced init script, not from here:
# shellcheck disable=SC2317
# Runs one action of init.d/dae off the router, with OpenWrt's functions
# replaced by recorders: every call of procd_*, logger, start, stop and the
# config_* readers is written to $DAE_TEST_RECORD, one call per record:
#   "@" NAME NARGS      then, per argument,   LENGTH ":" BYTES
# so tests/openwrt_init.rs can compare the exact arguments (even ones with
# spaces, quotes or newlines) with what it expects.
#
# The UCI readers (config_load, config_get, config_foreach,
# config_list_foreach) answer from $DAE_TEST_FACTS, which the test writes
# from the same file that `dae validate` reads, lines of
#   section<TAB>TYPE<TAB>NAME      and      option<TAB>SECTION<TAB>NAME<TAB>VALUE
# (one option line per value of a list, in order); `config_load network`
# switches them to $DAE_TEST_NETWORK_FACTS, in the same form. They hand
# values back as OpenWrt's do: as they are, without expanding them.
#
# start, stop, restart and reload do what rc.common's do for a procd
# script: start is procd_open_service, start_service, then (inside
# procd_close_service) service_triggers, and procd_close_service "set";
# stop is stop_service then procd_kill; reload is reload_service if the
# script has one, start otherwise. The marker call "triggers" tells where
# service_triggers begins; tests/openwrt_init.rs applies the record to its
# model of procd's services.
#
# Usage: sh procd_recorder.sh INIT_SCRIPT ACTION
# Environment: DAE_TEST_RECORD, DAE_TEST_FACTS, DAE_TEST_BIN (the dae to
# validate with), DAE_TEST_CONF (the config it validates), DAE_TEST_NETWORK_FACTS,
# DAE_TEST_RUNNING
# (1: procd reports the instance running).

LC_ALL=C
export LC_ALL
dae_test_tab=$(printf '\t')

rec() {
	printf '@ %s %d\n' "$1" "$(($# - 1))" >>"$DAE_TEST_RECORD"
	shift
	for dae_test_arg in "$@"; do
		printf '%d:%s\n' "${#dae_test_arg}" "$dae_test_arg" >>"$DAE_TEST_RECORD"
	done
}

# rc.common and procd.sh
extra_command() { rec extra_command "$@"; }
procd_open_instance() { rec procd_open_instance "$@"; }
procd_set_param() { rec procd_set_param "$@"; }
procd_append_param() { rec procd_append_param "$@"; }
procd_close_instance() { rec procd_close_instance "$@"; }
procd_add_reload_trigger() { rec procd_add_reload_trigger "$@"; }
procd_add_interface_trigger() { rec procd_add_interface_trigger "$@"; }
procd_add_reload_interface_trigger() { rec procd_add_reload_interface_trigger "$@"; }
procd_open_service() { rec procd_open_service "$@"; }
procd_close_service() {
	rec triggers
	service_triggers
	rec procd_close_service "$@"
}
procd_add_raw_trigger() { rec procd_add_raw_trigger "$@"; }
procd_add_validation() { rec procd_add_validation "$@"; }
procd_send_signal() { rec procd_send_signal "$@"; }
procd_kill() { rec procd_kill "$@"; }
procd_running() {
	rec procd_running "$@"
	[ "${DAE_TEST_RUNNING:-0}" = 1 ]
}
# rc.common, as it is for USE_PROCD=1 (the script's own definitions of
# these, if any, replace them when it is sourced below).
start_service() { return 0; }
stop_service() { return 0; }
service_triggers() { return 0; }
start() {
	rec start "$@"
	procd_open_service dae /etc/init.d/dae
	start_service "$@"
	procd_close_service set
}
stop() {
	rec stop "$@"
	stop_service "$@"
	procd_kill dae "$1"
}
restart() {
	rec restart "$@"
	stop "$@"
	start "$@"
}
reload() {
	rec reload "$@"
	if type reload_service >/dev/null 2>&1; then
		reload_service "$@"
	else
		start
	fi
}
logger() { rec logger "$@"; }

# /lib/functions.sh's UCI readers, answering from the facts file.
config_load() {
	rec config_load "$@"
	case "$1" in
	network) dae_test_facts=$DAE_TEST_NETWORK_FACTS ;;
	*) dae_test_facts=${DAE_TEST_FACTS:?} ;;
	esac
}

config_get() {
	# config_get VAR SECTION OPTION [DEFAULT]
	rec config_get "$@"
	dae_test_found=
	dae_test_value=
	while IFS="$dae_test_tab" read -r dae_test_kind dae_test_s dae_test_o dae_test_v; do
		if [ "$dae_test_kind" != option ] || [ "$dae_test_s" != "$2" ] || [ "$dae_test_o" != "$3" ]; then continue; fi
		if [ -n "$dae_test_found" ]; then
			dae_test_value="$dae_test_value $dae_test_v"
		else
			dae_test_value="$dae_test_v"
		fi
		dae_test_found=1
	done <"$dae_test_facts"
	[ -n "$dae_test_found" ] || dae_test_value="$4"
	eval "$1=\$dae_test_value"
}

config_foreach() {
	# config_foreach FUNCTION TYPE: FUNCTION SECTION for each section of TYPE
	rec config_foreach "$@"
	dae_test_names=
	# shellcheck disable=SC2034 # dae_test_rest keeps extra fields out of the name
	while IFS="$dae_test_tab" read -r dae_test_kind dae_test_t dae_test_n dae_test_rest; do
		if [ "$dae_test_kind" != section ] || [ "$dae_test_t" != "$2" ]; then continue; fi
		dae_test_names="$dae_test_names$dae_test_n$dae_test_tab"
	done <"$dae_test_facts"
	while [ -n "$dae_test_names" ]; do
		dae_test_n=${dae_test_names%%"$dae_test_tab"*}
		dae_test_names=${dae_test_names#*"$dae_test_tab"}
		"$1" "$dae_test_n"
	done
}

config_list_foreach() {
	# config_list_foreach SECTION OPTION FUNCTION: FUNCTION VALUE per value
	rec config_list_foreach "$@"
	dae_test_values=
	while IFS="$dae_test_tab" read -r dae_test_kind dae_test_s dae_test_o dae_test_v; do
		if [ "$dae_test_kind" != option ] || [ "$dae_test_s" != "$1" ] || [ "$dae_test_o" != "$2" ]; then continue; fi
		dae_test_values="$dae_test_values$dae_test_v$dae_test_tab"
	done <"$dae_test_facts"
	while [ -n "$dae_test_values" ]; do
		dae_test_v=${dae_test_values%%"$dae_test_tab"*}
		dae_test_values=${dae_test_values#*"$dae_test_tab"}
		"$3" "$dae_test_v"
	done
}

dae_test_facts=${DAE_TEST_FACTS:?}
dae_test_init=$1
dae_test_action=$2
# shellcheck disable=SC1090
. "$dae_test_init"
# The paths the script would use on the router, then the ones for this run.
rec paths "$DAE_PROG" "$DAE_CONF"
DAE_PROG=$DAE_TEST_BIN
DAE_CONF=$DAE_TEST_CONF
"$dae_test_action"
dae_test_status=$?
rec exit "$dae_test_status"
exit "$dae_test_status"
