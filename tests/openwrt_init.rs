//! `init.d/dae`, the procd init script, run off the router: OpenWrt's
//! functions (`procd_*`, `logger`, `start`, `stop`, the `config_*` readers)
//! are recorders (`tests/openwrt/procd_recorder.sh`), the config check is
//! the real `dae validate` on a real file, and the shell is the router's
//! (busybox ash) and dash, whichever are here. Checked: the exact command
//! line, respawn, triggers, reload by SIGHUP, refusal of a bad config with
//! its reason in the log, and that no UCI value is ever expanded by a shell.
//!
//! Sequences of actions (disable, reload, enable, reload; a change of
//! `lan_interface`) are applied to `Procd`, a model of what procd keeps
//! per service (its instances and triggers) and of what it does with a
//! service handed to it again (`ubus call service set`: triggers replaced,
//! a changed instance sent its reload_signal, a missing one stopped) or
//! deleted (`procd_kill`: the triggers go too), as procd's service.c and
//! instance.c do; events are fired at the triggers the model holds.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shells to run the script with: OpenWrt's is busybox ash.
fn shells() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for dir in ["/usr/bin", "/bin"] {
        let bb = Path::new(dir).join("busybox");
        if bb.exists() {
            out.push(vec![bb.display().to_string(), "ash".to_string()]);
            break;
        }
    }
    if out.is_empty() {
        eprintln!("NOTE: busybox is not installed (apt-get install busybox): the init script is run with dash only");
    }
    for dash in ["/usr/bin/dash", "/bin/dash"] {
        if Path::new(dash).exists() {
            out.push(vec![dash.to_string()]);
            break;
        }
    }
    assert!(!out.is_empty(), "neither busybox nor dash is installed");
    out
}

/// A UCI file as the test writes it: (type, name, [(option, values)]).
/// Each value is written single-quoted, so it may hold anything but a
/// single quote or a newline.
struct Uci(Vec<(&'static str, &'static str, Options)>);

/// A section's options: (name, values).
type Options = Vec<(&'static str, Vec<String>)>;

impl Uci {
    fn text(&self) -> String {
        let mut t = String::new();
        for (ty, name, options) in &self.0 {
            t.push_str(&format!("config {ty} '{name}'\n"));
            for (opt, values) in options {
                let word = if values.len() == 1 && !is_list(opt) {
                    "option"
                } else {
                    "list"
                };
                for v in values {
                    assert!(!v.contains(['\'', '\n', '\t']), "{v:?}");
                    t.push_str(&format!("\t{word} {opt} '{v}'\n"));
                }
            }
            t.push('\n');
        }
        t
    }

    fn facts(&self) -> String {
        let mut f = String::new();
        for (ty, name, options) in &self.0 {
            f.push_str(&format!("section\t{ty}\t{name}\n"));
            for (opt, values) in options {
                for v in values {
                    f.push_str(&format!("option\t{name}\t{opt}\t{v}\n"));
                }
            }
        }
        f
    }
}

fn is_list(opt: &str) -> bool {
    matches!(
        opt,
        "lan_interface" | "request_rule" | "response_rule" | "dns_listen"
    )
}

/// The shipped default, as the test's own type (checked against the file).
fn shipped(enabled: &str, lan: &[&str], extra: Vec<(&'static str, Vec<String>)>) -> Uci {
    let mut general = vec![
        ("enabled", vec![enabled.to_string()]),
        ("log_level", vec!["info".to_string()]),
        ("lan_interface", lan.iter().map(|s| s.to_string()).collect()),
        ("tproxy_port", vec!["12345".to_string()]),
        ("fail_closed", vec!["0".to_string()]),
    ];
    general.extend(extra);
    Uci(vec![
        ("dae", "config", general),
        (
            "dns",
            "dns",
            vec![
                ("cache_size", vec!["4096".to_string()]),
                ("ipversion_prefer", vec!["0".to_string()]),
                ("request_fallback", vec!["asis".to_string()]),
                ("response_fallback", vec!["accept".to_string()]),
            ],
        ),
    ])
}

/// One recorded call: its name and exact arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call(String, Vec<String>);

fn call(name: &str, args: &[&str]) -> Call {
    Call(
        name.to_string(),
        args.iter().map(|s| s.to_string()).collect(),
    )
}

fn parse_record(bytes: &[u8]) -> Vec<Call> {
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 record");
    let mut calls = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let (head, tail) = rest.split_once('\n').expect("record header");
        let mut words = head.split(' ');
        assert_eq!(words.next(), Some("@"), "record: {head:?}");
        let name = words.next().unwrap().to_string();
        let n: usize = words.next().unwrap().parse().unwrap();
        rest = tail;
        let mut args = Vec::new();
        for _ in 0..n {
            let (len, tail) = rest.split_once(':').expect("argument length");
            let len: usize = len.parse().unwrap();
            args.push(tail[..len].to_string());
            assert_eq!(&tail[len..len + 1], "\n");
            rest = &tail[len + 1..];
        }
        calls.push(Call(name, args));
    }
    calls
}

struct Run {
    calls: Vec<Call>,
    status: i32,
    stdout: String,
    stderr: String,
    /// Files in the working directory after the run (a shell that expanded
    /// a value would have made some, or globbed them into arguments).
    files: Vec<String>,
    conf: String,
    /// What the config file held during the run (procd hashes a `file`).
    conf_text: String,
}

impl Run {
    fn named(&self, name: &str) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.0 == name).collect()
    }

    /// The calls that tell procd something (what the router acts on).
    fn procd(&self) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|c| {
                c.0.starts_with("procd_") || matches!(c.0.as_str(), "start" | "stop" | "restart")
            })
            .cloned()
            .collect()
    }

    fn logged(&self) -> Vec<(String, String)> {
        self.named("logger")
            .iter()
            .map(|c| {
                assert_eq!(c.1.len(), 6, "logger -t dae -p LEVEL -- MESSAGE: {c:?}");
                assert_eq!(&c.1[..2], ["-t", "dae"]);
                assert_eq!(c.1[2], "-p");
                assert_eq!(c.1[4], "--");
                (c.1[3].clone(), c.1[5].clone())
            })
            .collect()
    }
}

fn init_script() -> PathBuf {
    std::env::var_os("DAE_INIT_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("init.d/dae"))
}

/// Runs ACTION of the init script with every shell; the runs must agree.
fn run(uci: &Uci, action: &str, running: bool) -> Run {
    run_net(uci, &default_network(), action, running)
}

/// /etc/config/network's interfaces as (name, `device`, `type`).
type Network = Vec<(&'static str, &'static str, &'static str)>;

fn default_network() -> Network {
    vec![
        ("loopback", "lo", ""),
        ("lan", "br-lan", ""),
        ("guest", "br-guest", ""),
        ("wan", "eth1", ""),
    ]
}

fn network_facts(net: &Network) -> String {
    let mut f = String::new();
    for (name, device, ty) in net {
        f.push_str(&format!("section\tinterface\t{name}\n"));
        if !device.is_empty() {
            f.push_str(&format!("option\t{name}\tdevice\t{device}\n"));
        }
        if !ty.is_empty() {
            f.push_str(&format!("option\t{name}\ttype\t{ty}\n"));
        }
    }
    f
}

fn run_net(uci: &Uci, net: &Network, action: &str, running: bool) -> Run {
    let mut runs: Vec<Run> = shells()
        .iter()
        .map(|sh| run_with(sh, uci, net, action, running))
        .collect();
    let first = runs.remove(0);
    for other in &runs {
        assert_eq!(first.calls, other.calls, "the shells disagree");
        assert_eq!(first.status, other.status);
    }
    first
}

fn run_with(shell: &[String], uci: &Uci, net: &Network, action: &str, running: bool) -> Run {
    let dir = TempDir::new("openwrt-init");
    let work = dir.path("cwd");
    std::fs::create_dir(&work).unwrap();
    // Something for an unquoted `*` to glob.
    std::fs::write(work.join("bystander"), "").unwrap();
    let conf = dir.path("dae.uci");
    std::fs::write(&conf, uci.text()).unwrap();
    let facts = dir.path("facts");
    std::fs::write(&facts, uci.facts()).unwrap();
    let network = dir.path("network-facts");
    std::fs::write(&network, network_facts(net)).unwrap();
    let record = dir.path("record");
    std::fs::write(&record, "").unwrap();
    let out = Command::new(&shell[0])
        .args(&shell[1..])
        .arg(repo().join("tests/openwrt/procd_recorder.sh"))
        .arg(init_script())
        .arg(action)
        .current_dir(&work)
        .env("DAE_TEST_RECORD", &record)
        .env("DAE_TEST_FACTS", &facts)
        .env("DAE_TEST_NETWORK_FACTS", &network)
        .env("DAE_TEST_BIN", env!("CARGO_BIN_EXE_dae"))
        .env("DAE_TEST_CONF", &conf)
        .env("DAE_TEST_RUNNING", if running { "1" } else { "0" })
        .output()
        .unwrap();
    // The run's own temporary directory reads "<dir>", so that runs compare.
    let calls: Vec<Call> = parse_record(&std::fs::read(&record).unwrap())
        .into_iter()
        .map(|Call(name, args)| {
            let base = dir.0.display().to_string();
            Call(
                name,
                args.into_iter()
                    .map(|a| a.replace(&base, "<dir>"))
                    .collect(),
            )
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let status = out.status.code().expect("exit status");
    assert_eq!(
        calls.last(),
        Some(&call("exit", &[&status.to_string()])),
        "{shell:?}: the action ran to its end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        calls.iter().find(|c| c.0 == "paths"),
        Some(&call("paths", &["/usr/bin/dae", "/etc/config/dae"])),
        "the paths the script uses on the router"
    );
    Run {
        calls,
        status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        files,
        conf: "<dir>/dae.uci".to_string(),
        conf_text: uci.text(),
    }
}

fn expected_instance(conf: &str, netdevs: &[&str]) -> Vec<Call> {
    let bin = env!("CARGO_BIN_EXE_dae");
    let mut v = vec![
        call("procd_open_instance", &["dae"]),
        call(
            "procd_set_param",
            &["command", bin, "run", "-c", conf, "--syslog"],
        ),
        call("procd_set_param", &["respawn", "3600", "5", "5"]),
        call("procd_set_param", &["term_timeout", "15"]),
        call("procd_set_param", &["reload_signal", "HUP"]),
        call("procd_set_param", &["limits", "nofile=32768 32768"]),
        call("procd_set_param", &["file", conf]),
        call("procd_set_param", &["stdout", "1"]),
        call("procd_set_param", &["stderr", "1"]),
    ];
    for n in netdevs {
        v.push(call("procd_append_param", &["netdev", n]));
    }
    v.push(call("procd_close_instance", &[]));
    v
}

#[test]
fn the_test_config_is_the_shipped_default() {
    let path = repo().join("openwrt/files/dae.config");
    let file = dae::config::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ours = dae::config::parse_str(&shipped("0", &["br-lan"], vec![]).text()).unwrap();
    assert!(
        !file.general.enabled,
        "the shipped config must not enable dae"
    );
    assert_eq!(file.general.lan_interfaces, ["br-lan"]);
    assert_eq!(format!("{:?}", file), format!("{:?}", ours));
}

#[test]
fn disabled_starts_nothing_and_says_how_to_enable() {
    for off in ["0", "no", "off", "false", "", "2", "enabled"] {
        let r = run(&shipped(off, &["br-lan"], vec![]), "start_service", false);
        assert_eq!(r.status, 0, "enabled={off:?}: not an error");
        assert_eq!(r.procd(), [], "enabled={off:?}: no instance");
        let log = r.logged();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].0, "daemon.notice");
        assert!(log[0].1.contains("set option enabled '1'"), "{log:?}");
    }
}

#[test]
fn enabled_gives_exactly_this_instance() {
    for on in ["1", "yes", "on", "true"] {
        let r = run(&shipped(on, &["br-lan"], vec![]), "start_service", false);
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert_eq!(
            r.procd(),
            expected_instance(&r.conf, &["br-lan"]),
            "enabled={on}"
        );
        assert_eq!(r.logged(), [], "nothing to complain about");
    }
    let r = run(
        &shipped("1", &["br-lan", "br-guest"], vec![]),
        "start_service",
        false,
    );
    assert_eq!(
        r.procd(),
        expected_instance(&r.conf, &["br-lan", "br-guest"])
    );
    // Enabled with neither an interface nor a listener: nothing to serve,
    // so `dae validate` refuses it and no instance starts.
    let r = run(&shipped("1", &[], vec![]), "start_service", false);
    assert_ne!(r.status, 0, "start must fail");
    assert_eq!(r.procd(), []);
    let log = r.logged();
    assert!(log[0].1.contains("nothing to serve"), "{log:?}");
}

#[test]
fn a_broken_config_is_refused_with_its_reason_in_the_log() {
    let bad = shipped(
        "1",
        &["br-lan"],
        vec![("log_level", vec!["loud".to_string()])],
    );
    let r = run(&bad, "start_service", false);
    assert_ne!(r.status, 0, "start must fail");
    assert_eq!(r.procd(), [], "no instance for a broken config");
    let log = r.logged();
    assert!(
        log.iter().all(|(level, _)| level == "daemon.err"),
        "{log:?}"
    );
    assert_eq!(
        log[0].1,
        "dae: config error: dae 'config', option 'log_level': \"loud\" is not one of: error, warn, info, debug, trace"
    );
    assert!(log
        .last()
        .unwrap()
        .1
        .contains("has errors: dae not (re)started"));
    assert!(log.last().unwrap().1.contains("/etc/init.d/dae check"));
}

/// Values that a shell would run, glob or split if the script let one
/// expand them. Each is a valid Linux interface name (no '/', ':' or
/// space, 15 bytes at most), so `dae validate` accepts it and the script
/// hands it to procd: it must arrive there as written.
const HOSTILE_IFACES: &[&str] = &[
    "$(touch${IFS}a)",
    "`touch${IFS}b`",
    ";touch${IFS}c;",
    "&touch${IFS}d",
    "*",
    "a\"b'c",
    "${PATH}",
    "-n",
];

#[test]
fn hostile_values_never_reach_a_shell() {
    // In lan_interface: to procd, literally, in order.
    let ifaces: Vec<&str> = HOSTILE_IFACES
        .iter()
        .copied()
        .filter(|v| !v.contains('\''))
        .collect();
    let r = run(&shipped("1", &ifaces, vec![]), "start_service", false);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.procd(), expected_instance(&r.conf, &ifaces));
    assert_eq!(r.files, ["bystander"], "a value was run by a shell");

    // In enabled: never true, never run.
    for v in ["1$(touch${IFS}e)", "`touch${IFS}f`", "1;touch${IFS}g", "*"] {
        let r = run(&shipped(v, &["br-lan"], vec![]), "start_service", false);
        assert_eq!(r.procd(), [], "enabled={v:?}");
        assert_eq!(r.files, ["bystander"], "enabled={v:?} was run by a shell");
    }

    // In an option only the daemon reads: refused, and logged as written.
    let v = "$(touch${IFS}h)";
    let r = run(
        &shipped("1", &["br-lan"], vec![("log_level", vec![v.to_string()])]),
        "start_service",
        false,
    );
    assert_eq!(r.procd(), []);
    assert_eq!(r.files, ["bystander"]);
    assert!(r.logged()[0].1.contains(&format!("\"{v}\" is not one of")));
}

/// One instance as procd holds it.
#[derive(Debug, Clone, Default)]
struct Instance {
    /// The procd_set_param and procd_append_param calls, in order.
    params: Vec<Call>,
    /// The content of each `file` param when it was handed over (procd
    /// keeps an md5 of it).
    files: Vec<String>,
    running: bool,
    /// How often procd started the process.
    starts: u32,
    /// The signals procd sent it.
    signals: Vec<String>,
}

impl Instance {
    fn reload_signal(&self) -> Option<String> {
        self.params
            .iter()
            .find(|c| {
                c.0 == "procd_set_param" && c.1.first().map(String::as_str) == Some("reload_signal")
            })
            .map(|c| c.1[1].clone())
    }
}

/// A service as procd holds it: its instances by name and its triggers.
#[derive(Debug, Clone, Default)]
struct Service {
    instances: BTreeMap<String, Instance>,
    triggers: Vec<Call>,
}

/// A service being handed to procd: its name, instances and triggers.
type Message = (String, Vec<(String, Instance)>, Vec<Call>);

/// What procd keeps between calls of the init script.
#[derive(Debug, Default)]
struct Procd {
    services: BTreeMap<String, Service>,
}

impl Procd {
    /// Applies what one run of the script told procd.
    fn apply(&mut self, run: &Run) {
        // The message being built by procd_open_service ... close_service.
        let mut message: Option<Message> = None;
        let mut in_triggers = false;
        for c in &run.calls {
            match c.0.as_str() {
                "procd_open_service" => {
                    message = Some((c.1[0].clone(), Vec::new(), Vec::new()));
                    in_triggers = false;
                }
                "procd_open_instance" => {
                    let (_, instances, _) = message.as_mut().expect("instance outside a service");
                    let name = c.1.first().cloned().unwrap_or_default();
                    instances.push((name, Instance::default()));
                }
                "procd_set_param" | "procd_append_param" => {
                    let (_, instances, _) = message.as_mut().expect("param outside a service");
                    let (_, inst) = instances.last_mut().expect("param outside an instance");
                    if c.1[0] == "file" {
                        assert_eq!(c.1[1..], [run.conf.as_str()], "the file procd hashes");
                        inst.files.push(run.conf_text.clone());
                    }
                    inst.params.push(c.clone());
                }
                "triggers" => in_triggers = true,
                name if name.starts_with("procd_add_") && name.ends_with("_trigger") => {
                    let (_, _, triggers) = message.as_mut().expect("trigger outside a service");
                    assert!(in_triggers, "a trigger outside service_triggers: {c:?}");
                    triggers.push(c.clone());
                }
                "procd_close_service" => {
                    let (name, instances, triggers) = message.take().expect("close without open");
                    assert_eq!(c.1, ["set"]);
                    self.set(&name, instances, triggers);
                }
                "procd_kill" => {
                    // `ubus call service delete`: instances and triggers go.
                    assert_eq!(c.1[0], "dae");
                    if c.1.len() < 2 || c.1[1].is_empty() {
                        self.services.remove(&c.1[0]);
                    } else if let Some(s) = self.services.get_mut(&c.1[0]) {
                        s.instances.remove(&c.1[1]);
                    }
                }
                "procd_send_signal" => {
                    if let Some(s) = self.services.get_mut(&c.1[0]) {
                        for (name, inst) in s.instances.iter_mut() {
                            if (c.1[1] == "*" || &c.1[1] == name) && inst.running {
                                inst.signals.push(c.1[2].clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        assert!(message.is_none(), "a service message was never sent");
    }

    /// `ubus call service set`: the triggers are replaced; each instance
    /// handed over is started if new, sent its reload_signal (or restarted)
    /// if it differs from the running one; the others are stopped.
    fn set(&mut self, name: &str, instances: Vec<(String, Instance)>, triggers: Vec<Call>) {
        let service = self.services.entry(name.to_string()).or_default();
        service.triggers = triggers;
        let mut next = BTreeMap::new();
        for (iname, mut new) in instances {
            match service.instances.remove(&iname) {
                Some(mut old) if old.running => {
                    let changed = old.params != new.params || old.files != new.files;
                    if changed {
                        match new.reload_signal() {
                            Some(sig) => old.signals.push(sig),
                            None => old.starts += 1,
                        }
                    }
                    old.params = new.params;
                    old.files = new.files;
                    next.insert(iname, old);
                }
                _ => {
                    new.running = true;
                    new.starts = 1;
                    next.insert(iname, new);
                }
            }
        }
        service.instances = next;
    }

    fn instance(&self) -> Option<&Instance> {
        self.services
            .get("dae")
            .and_then(|s| s.instances.get("dae"))
    }

    fn running(&self) -> bool {
        self.instance().is_some_and(|i| i.running)
    }

    /// The init script actions the triggers registered for an event run.
    fn fire(&self, event: &str, key: &str, value: &str) -> Vec<String> {
        let mut actions = Vec::new();
        for service in self.services.values() {
            for t in &service.triggers {
                let a: Vec<&str> = t.1.iter().map(String::as_str).collect();
                let rules: Vec<(&str, &str, &str, &str)> = match t.0.as_str() {
                    "procd_add_reload_trigger" => a
                        .iter()
                        .map(|p| ("config.change", "package", *p, "reload"))
                        .collect(),
                    "procd_add_reload_interface_trigger" => {
                        vec![("interface.*", "interface", a[0], "reload")]
                    }
                    "procd_add_interface_trigger" => {
                        assert_eq!(a[2], "/etc/init.d/dae");
                        vec![(a[0], "interface", a[1], a[3])]
                    }
                    other => panic!("a trigger the model does not know: {other}"),
                };
                for (pattern, k, v, action) in rules {
                    if glob(pattern, event) && k == key && v == value {
                        actions.push(action.to_string());
                    }
                }
            }
        }
        actions
    }
}

/// fnmatch without brackets: `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// Runs ACTION against the model and applies what it told procd.
fn step(procd: &mut Procd, uci: &Uci, net: &Network, action: &str) -> Run {
    let r = run_net(uci, net, action, procd.running());
    procd.apply(&r);
    r
}

#[test]
fn the_model_globs_as_procd_does() {
    assert!(glob("interface.*", "interface.update"));
    assert!(glob("interface.*", "interface.down"));
    assert!(!glob("interface.*.up", "interface.update"));
    assert!(glob("config.change", "config.change"));
    assert!(!glob("config.change", "config.changed"));
}

#[test]
fn disable_reload_enable_reload_keeps_the_service_and_its_triggers() {
    let net = default_network();
    let mut procd = Procd::default();
    step(
        &mut procd,
        &shipped("1", &["br-lan"], vec![]),
        &net,
        "start",
    );
    assert!(procd.running());

    // LuCI: enabled 0, Save & Apply (config.change for dae).
    let off = shipped("0", &["br-lan"], vec![]);
    assert_eq!(procd.fire("config.change", "package", "dae"), ["reload"]);
    let r = step(&mut procd, &off, &net, "reload");
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.named("procd_kill").is_empty(),
        "reload must never delete the service"
    );
    assert!(!procd.running(), "disabled: the instance is stopped");
    let service = procd
        .services
        .get("dae")
        .expect("the service stays registered");
    assert!(service.instances.is_empty());
    assert!(
        service
            .triggers
            .contains(&call("procd_add_reload_trigger", &["dae"])),
        "{:?}",
        service.triggers
    );

    // A reload while disabled changes nothing.
    step(&mut procd, &off, &net, "reload");
    assert!(procd.services.contains_key("dae") && !procd.running());

    // LuCI: enabled 1, Save & Apply: the trigger is there and starts dae.
    let on = shipped("1", &["br-lan"], vec![]);
    let actions = procd.fire("config.change", "package", "dae");
    assert_eq!(
        actions,
        ["reload"],
        "the reload trigger went with the disable"
    );
    step(&mut procd, &on, &net, &actions[0]);
    assert!(procd.running(), "enabled again: dae runs");
    assert_eq!(procd.instance().unwrap().starts, 1);
    assert_eq!(
        procd.services["dae"].triggers,
        [
            call("procd_add_reload_trigger", &["dae"]),
            call("procd_add_reload_interface_trigger", &["lan"]),
        ]
    );
}

#[test]
fn reload_resubmits_the_instance_and_procd_sends_hup_for_a_change() {
    let net = default_network();
    let mut procd = Procd::default();
    let first = shipped("1", &["br-lan"], vec![]);
    step(&mut procd, &first, &net, "start");

    // Nothing changed: procd compares and leaves the daemon alone.
    let r = step(&mut procd, &first, &net, "reload");
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.named("procd_open_instance").len(), 1, "re-submitted");
    assert!(r.named("procd_send_signal").is_empty() && r.named("stop").is_empty());
    let inst = procd.instance().unwrap();
    assert_eq!((inst.starts, inst.signals.len()), (1, 0));

    // A changed config: the instance differs (its file), procd sends HUP.
    let changed = shipped("1", &["br-lan"], vec![("log_level", vec!["debug".into()])]);
    let r = step(&mut procd, &changed, &net, "reload");
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r
        .calls
        .contains(&call("procd_set_param", &["reload_signal", "HUP"])));
    let inst = procd.instance().unwrap();
    assert_eq!(inst.signals, ["HUP"], "in place: no restart");
    assert_eq!(inst.starts, 1);
}

#[test]
fn reload_with_a_broken_config_keeps_the_old_one() {
    let net = default_network();
    let mut procd = Procd::default();
    step(
        &mut procd,
        &shipped("1", &["br-lan"], vec![]),
        &net,
        "start",
    );
    let bad = shipped(
        "1",
        &["br-lan"],
        vec![("tproxy_port", vec!["0".to_string()])],
    );
    let r = step(&mut procd, &bad, &net, "reload");
    assert_ne!(r.status, 0);
    assert!(
        r.named("procd_open_service").is_empty() && r.named("procd_kill").is_empty(),
        "nothing handed to procd: the old config keeps serving"
    );
    let inst = procd.instance().unwrap();
    assert!(inst.running && inst.signals.is_empty() && inst.starts == 1);
    let log = r.logged();
    assert!(
        log[0]
            .1
            .starts_with("dae: config error: dae 'config', option 'tproxy_port'"),
        "{log:?}"
    );
}

#[test]
fn the_interface_triggers_follow_lan_interface() {
    let net = default_network();
    let mut procd = Procd::default();
    step(
        &mut procd,
        &shipped("1", &["br-lan"], vec![]),
        &net,
        "start",
    );
    assert_eq!(
        procd.fire("interface.update", "interface", "lan"),
        ["reload"]
    );
    assert!(procd
        .fire("interface.update", "interface", "guest")
        .is_empty());
    assert!(procd
        .fire("interface.update", "interface", "wan")
        .is_empty());

    // lan_interface moves to the guest bridge: Save & Apply reloads, the
    // instance gets the new netdev (procd: changed, HUP), and the trigger
    // now watches the guest network.
    let guest = shipped("1", &["br-guest"], vec![]);
    let actions = procd.fire("config.change", "package", "dae");
    step(&mut procd, &guest, &net, &actions[0]);
    let inst = procd.instance().unwrap();
    assert!(inst
        .params
        .contains(&call("procd_append_param", &["netdev", "br-guest"])));
    assert_eq!(inst.signals, ["HUP"]);
    assert!(procd
        .fire("interface.update", "interface", "lan")
        .is_empty());
    assert_eq!(
        procd.fire("interface.update", "interface", "guest"),
        ["reload"]
    );
    // netifd re-creates the bridge: the trigger's reload re-submits it.
    let r = step(&mut procd, &guest, &net, "reload");
    assert_eq!(r.named("procd_open_instance").len(), 1);

    // Both bridges, and a device no network names: one trigger each known.
    let r = run(
        &shipped("1", &["br-lan", "br-guest", "wg0"], vec![]),
        "service_triggers",
        false,
    );
    assert_eq!(
        r.procd(),
        [
            call("procd_add_reload_trigger", &["dae"]),
            call("procd_add_reload_interface_trigger", &["lan"]),
            call("procd_add_reload_interface_trigger", &["guest"]),
        ]
    );
    // 19.07's bridges: `option type 'bridge'`, device br-NAME.
    let old: Network = vec![("lan", "", "bridge"), ("wan", "eth1", "")];
    let r = run_net(
        &shipped("1", &["br-lan"], vec![]),
        &old,
        "service_triggers",
        false,
    );
    assert_eq!(
        r.procd(),
        [
            call("procd_add_reload_trigger", &["dae"]),
            call("procd_add_reload_interface_trigger", &["lan"]),
        ]
    );
    // No lan_interface: only the config trigger.
    let r = run(&shipped("1", &[], vec![]), "service_triggers", false);
    assert_eq!(r.procd(), [call("procd_add_reload_trigger", &["dae"])]);
}

#[test]
fn hostile_lan_interfaces_are_only_compared() {
    let ifaces: Vec<&str> = HOSTILE_IFACES
        .iter()
        .copied()
        .filter(|v| !v.contains('\''))
        .collect();
    let r = run(&shipped("1", &ifaces, vec![]), "service_triggers", false);
    assert_eq!(r.procd(), [call("procd_add_reload_trigger", &["dae"])]);
    assert_eq!(r.files, ["bystander"], "a value was run by a shell");
}

#[test]
fn check_prints_every_problem() {
    let r = run(&shipped("1", &["br-lan"], vec![]), "check", false);
    assert_eq!(r.status, 0);
    assert_eq!(r.stdout.trim(), "configuration OK");
    assert!(r.calls.contains(&call(
        "extra_command",
        &["check", "Check /etc/config/dae and print every problem"]
    )));
    let bad = shipped(
        "1",
        &["br-lan"],
        vec![
            ("tproxy_port", vec!["0".to_string()]),
            ("log_level", vec!["loud".to_string()]),
        ],
    );
    let r = run(&bad, "check", false);
    assert_eq!(r.status, 1);
    assert_eq!(r.stderr.lines().count(), 2, "{}", r.stderr);
}

#[test]
fn init_script_and_package_scripts_are_shellcheck_clean() {
    let Ok(version) = Command::new("shellcheck").arg("--version").output() else {
        panic!("shellcheck is not installed (apt-get install shellcheck)");
    };
    assert!(version.status.success());
    let mut files = vec![
        init_script(),
        repo().join("tests/openwrt/procd_recorder.sh"),
    ];
    for dir in ["openwrt", "openwrt/files"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".sh") || name == "postinst" || name == "prerm" {
                files.push(p);
            }
        }
    }
    let out = Command::new("shellcheck")
        .arg("-x")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck {files:?}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
