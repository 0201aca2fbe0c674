//! The `dae` command line: `run`, `validate`, `status`,
//! `update-subscriptions`, `schema`, `geodata`, `--version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dae::ebpf::AttachMode;

const DEFAULT_CONFIG: &str = "/etc/config/dae";

const USAGE: &str = "\
usage: dae run [-c FILE] [--syslog] [--tcx]
                                 serve until stopped (--syslog: log to syslog;
                                 --tcx: attach the TC program as a TCX link,
                                 kernels 6.6+, instead of a netlink filter)
       dae validate [-c FILE]    check a config file and print every problem
       dae status [--json] [-s SOCKET]
                                 what the running daemon is doing
       dae update-subscriptions [NAME] [--json] [-s SOCKET]
                                 fetch the subscriptions (or one) now; exits 1
                                 if a fetch failed (the last good list stays)
       dae schema --json         every UCI section and option (types, defaults,
                                 allowed values), for LuCI and its tests
       dae geodata [--json] [-c FILE | --dir DIR]
                                 the rule-set categories in geodata_dir (of
                                 FILE, or DIR): geosite:NAME, geoip:NAME,
                                 ext:FILE:NAME, with entries and attributes
       dae --version             print the version

FILE defaults to /etc/config/dae. Signals: SIGHUP reloads the config,
SIGTERM or SIGINT stop.";

struct Args {
    config: PathBuf,
    syslog: bool,
    attach: AttachMode,
}

fn parse(rest: &[String], allow_syslog: bool) -> Result<Args, String> {
    let mut args = Args {
        config: PathBuf::from(DEFAULT_CONFIG),
        syslog: false,
        attach: AttachMode::Netlink,
    };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => {
                args.config = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{a} needs a file name"))?;
            }
            "--syslog" if allow_syslog => args.syslog = true,
            "--tcx" if allow_syslog => args.attach = AttachMode::Tcx,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let code = match cmd.as_str() {
        "--version" | "-V" | "version" => {
            println!("dae {}", env!("CARGO_PKG_VERSION"));
            0
        }
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            0
        }
        "status" => status(&argv[1..]),
        "update-subscriptions" => update_subscriptions(&argv[1..]),
        "geodata" => geodata(&argv[1..]),
        "schema" => match argv.get(1).map(String::as_str) {
            Some("--json") if argv.len() == 2 => {
                println!("{:#}", schema_with_build_facts());
                0
            }
            _ => {
                eprintln!("dae schema: use 'dae schema --json'");
                2
            }
        },
        "run" | "validate" => match parse(&argv[1..], cmd == "run") {
            Ok(a) if cmd == "run" => dae::daemon::run(&a.config, a.syslog, a.attach),
            Ok(a) => dae::daemon::validate(&a.config),
            Err(e) => {
                eprintln!("dae {cmd}: {e}\n{USAGE}");
                2
            }
        },
        other => {
            eprintln!("dae: unknown command '{other}'\n{USAGE}");
            2
        }
    };
    ExitCode::from(code as u8)
}

/// The UCI schema, with what this build can do: for each upstream
/// address, the schemes it forwards to (`supported`) and those whose
/// upstreams can look up other upstreams' host names (`resolvers`).
fn schema_with_build_facts() -> serde_json::Value {
    let mut schema = dae::config::schema::schema_json();
    let schemes = dae::forwarder::schemes();
    let supported: Vec<&str> = schemes.iter().filter(|s| s.1).map(|s| s.0).collect();
    let resolvers: Vec<&str> = schemes.iter().filter(|s| s.2).map(|s| s.0).collect();
    if let Some(sections) = schema["sections"].as_array_mut() {
        for option in sections
            .iter_mut()
            .filter_map(|s| s["options"].as_array_mut())
            .flatten()
            .filter(|o| o["type"] == "upstream_address")
        {
            option["supported"] = serde_json::json!(supported);
            option["resolvers"] = serde_json::json!(resolvers);
        }
    }
    schema
}

/// The socket `dae status` asks without `-s`: the `status_socket` of the
/// default config file when it names one (so LuCI's fixed command finds a
/// daemon configured elsewhere), else the default.
fn configured_socket() -> PathBuf {
    dae::config::load_file(Path::new(DEFAULT_CONFIG))
        .map(|c| c.general.status_socket)
        .unwrap_or_else(|_| PathBuf::from(dae::status::DEFAULT_SOCKET))
}

/// What `status` and `update-subscriptions` take: `--json`, `-s SOCKET`
/// and (for the latter) one name.
struct ClientArgs {
    json: bool,
    socket: PathBuf,
    name: Option<String>,
}

fn client_args(cmd: &str, rest: &[String], takes_name: bool) -> Result<ClientArgs, String> {
    let mut args = ClientArgs {
        json: false,
        socket: configured_socket(),
        name: None,
    };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => args.json = true,
            "-s" | "--socket" => match it.next() {
                Some(p) => args.socket = PathBuf::from(p),
                None => return Err(format!("dae {cmd}: {a} needs a path")),
            },
            name if takes_name && args.name.is_none() && !name.starts_with('-') => {
                args.name = Some(name.to_string())
            }
            other => return Err(format!("dae {cmd}: unknown argument '{other}'")),
        }
    }
    Ok(args)
}

fn update_subscriptions(rest: &[String]) -> i32 {
    let args = match client_args("update-subscriptions", rest, true) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let request = match &args.name {
        Some(n) => format!("update-subscriptions {n}"),
        None => "update-subscriptions".to_string(),
    };
    // Each fetch is bounded (30 s); several run one after another.
    let wait = std::time::Duration::from_secs(600);
    match dae::status::ask(&args.socket, &request, wait) {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else if let Some(e) = v["error"].as_str() {
                eprintln!("dae update-subscriptions: {e}");
            } else {
                print!("{}", dae::status::render_update(&v));
            }
            let failed = !v["failed"].as_array().is_some_and(|f| f.is_empty());
            i32::from(failed)
        }
        Err(e) => {
            eprintln!("dae update-subscriptions: {e}");
            1
        }
    }
}

fn status(rest: &[String]) -> i32 {
    let (json, socket) = match client_args("status", rest, false) {
        Ok(a) => (a.json, a.socket),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match dae::status::fetch(&socket) {
        Ok(v) if json => {
            println!("{v}");
            0
        }
        Ok(v) => {
            print!("{}", dae::status::render(&v));
            0
        }
        Err(e) => {
            eprintln!("dae status: {e}");
            1
        }
    }
}

/// `dae geodata`: what the dat files of `geodata_dir` hold. Exits 1 only
/// when no file could be read (each file's error is in the listing).
fn geodata(rest: &[String]) -> i32 {
    let mut json = false;
    let mut dir = None;
    let mut config = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "-c" | "--config" | "--dir" => match it.next() {
                Some(p) if a == "--dir" => dir = Some(PathBuf::from(p)),
                Some(p) => config = Some(PathBuf::from(p)),
                None => {
                    eprintln!("dae geodata: {a} needs a path");
                    return 2;
                }
            },
            other => {
                eprintln!("dae geodata: unknown argument '{other}'");
                return 2;
            }
        }
    }
    // Without -c, a router with no /etc/config/dae yet has the default.
    let config = config.or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()));
    let dir = match (dir, config) {
        (Some(d), _) => Ok(d),
        (None, Some(c)) => dae::config::geodata_dir(&c),
        (None, None) => Ok(PathBuf::from(dae::geodata::DEFAULT_DIR)),
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dae geodata: {e}");
            return 2;
        }
    };
    use dae::geodata::listing;
    let files = listing::list_dir(&dir);
    if json {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({
                    "file": f.name,
                    "path": f.path,
                    "prefix": f.prefix(),
                });
                match &f.contents {
                    Ok(c) => {
                        v["kind"] = serde_json::json!(c.kind.map(listing::Kind::as_str));
                        v["categories"] = c
                            .categories
                            .iter()
                            .map(|c| {
                                let mut o =
                                    serde_json::json!({"name": c.name, "entries": c.entries});
                                if !c.attributes.is_empty() {
                                    o["attributes"] = serde_json::json!(c.attributes);
                                }
                                o
                            })
                            .collect();
                    }
                    Err(e) => v["error"] = serde_json::json!(e),
                }
                v
            })
            .collect();
        println!("{}", serde_json::json!({ "dir": dir, "files": files }));
    } else {
        println!("rule sets in {}", dir.display());
        for f in &files {
            match &f.contents {
                Err(e) => println!("{}: {e}", f.name),
                Ok(c) => {
                    let kind = c.kind.map_or("no entries", listing::Kind::as_str);
                    println!("{}: {kind}, {} categories", f.name, c.categories.len());
                    let unit = if c.kind == Some(listing::Kind::Ip) {
                        "networks"
                    } else {
                        "domains"
                    };
                    for cat in &c.categories {
                        let mut line =
                            format!("  {}{} ({} {unit})", f.prefix(), cat.name, cat.entries);
                        for a in &cat.attributes {
                            line.push_str(" @");
                            line.push_str(a);
                        }
                        println!("{line}");
                    }
                }
            }
        }
    }
    if files.iter().any(|f| f.contents.is_ok()) {
        0
    } else {
        1
    }
}
