//! The LuCI packages `openwrt/build-ipk.sh` makes: luci-app-dae (the pages,
//! menu and ACL where LuCI looks for them) and luci-i18n-dae-zh-cn (the
//! zh_Hans catalog compiled by `openwrt/po2lmo.py` into LuCI's .lmo, at
//! /usr/lib/lua/luci/i18n/dae.zh-cn.lmo as luci.mk names it). The .lmo is
//! read here by a reader of our own, written from the format and separate
//! from the Python writer: every msgid of dae.po is looked up by its hash,
//! as LuCI looks it up, and must give its msgstr back. The hash
//! (SuperFastHash) is checked against values of LuCI's C function. Both
//! packages are installed into a scratch root as opkg installs them and
//! their scripts run there.

mod common;
#[path = "openwrt/packages.rs"]
mod packages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::TempDir;
use packages::{
    build_packages, cargo_version, files_under, makefile_release, read, read_text, repo, untar,
    RouterRoot,
};

fn built() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        build_packages(
            &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openwrt-luci"),
            true,
        )
    })
}

fn ipk(name: &str) -> PathBuf {
    built().join(format!(
        "{name}_{}-{}_all.ipk",
        cargo_version(),
        makefile_release()
    ))
}

/// Paul Hsieh's SuperFastHash as LuCI uses it: seeded with the length,
/// the last 1 to 3 bytes read as signed chars.
fn sfh_hash(data: &[u8]) -> u32 {
    if data.is_empty() {
        return 0;
    }
    let get16 = |i: usize| u32::from(data[i]) | (u32::from(data[i + 1]) << 8);
    let signed = |b: u8| b as i8 as i32 as u32;
    let mut h = data.len() as u32;
    let whole = data.len() / 4 * 4;
    for i in (0..whole).step_by(4) {
        h = h.wrapping_add(get16(i));
        let tmp = (get16(i + 2) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h = h.wrapping_add(h >> 11);
    }
    match data.len() - whole {
        3 => {
            h = h.wrapping_add(get16(whole));
            h ^= h << 16;
            h ^= signed(data[whole + 2]) << 18;
            h = h.wrapping_add(h >> 11);
        }
        2 => {
            h = h.wrapping_add(get16(whole));
            h ^= h << 11;
            h = h.wrapping_add(h >> 17);
        }
        1 => {
            h = h.wrapping_add(signed(data[whole]));
            h ^= h << 10;
            h = h.wrapping_add(h >> 1);
        }
        _ => {}
    }
    h ^= h << 3;
    h = h.wrapping_add(h >> 5);
    h ^= h << 4;
    h = h.wrapping_add(h >> 17);
    h ^= h << 25;
    h = h.wrapping_add(h >> 6);
    h
}

/// The hash LuCI looks a string up by: white space runs made one space,
/// the ends trimmed; a context before \x01, a plural form after \x02.
fn lookup_hash(ctxt: Option<&str>, msgid: &str, plural: Option<usize>) -> u32 {
    let canon = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut key = String::new();
    if let Some(c) = ctxt {
        key.push_str(&canon(c));
        key.push('\x01');
    }
    key.push_str(&canon(msgid));
    if let Some(n) = plural {
        key.push_str(&format!("\x02{n}"));
    }
    sfh_hash(key.as_bytes())
}

#[derive(Debug, PartialEq)]
struct LmoEntry {
    key: u32,
    forms: u32,
    value: String,
}

/// Reads a .lmo: the index offset in the last 4 bytes, 16-byte index
/// entries (key hash, forms, offset, length; big-endian) up to it.
fn read_lmo(data: &[u8]) -> Vec<LmoEntry> {
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    assert!(
        data.len() >= 4 && data.len() % 4 == 0,
        "length {}",
        data.len()
    );
    let index = be(data.len() - 4) as usize;
    assert!(index < data.len() - 4, "index offset {index}");
    assert_eq!((data.len() - 4 - index) % 16, 0, "index entries");
    let mut out = Vec::new();
    for at in (index..data.len() - 4).step_by(16) {
        let (offset, len) = (be(at + 8) as usize, be(at + 12) as usize);
        assert!(
            offset % 4 == 0 && offset + len <= index,
            "string at {offset}"
        );
        out.push(LmoEntry {
            key: be(at),
            forms: be(at + 4),
            value: String::from_utf8(data[offset..offset + len].to_vec()).unwrap(),
        });
    }
    out
}

/// LuCI's lookup: a binary search of the index by key.
fn lmo_find(entries: &[LmoEntry], key: u32) -> Option<&LmoEntry> {
    entries
        .binary_search_by(|e| e.key.cmp(&key))
        .ok()
        .map(|i| &entries[i])
}

/// A message of a .po file.
#[derive(Debug, Default)]
struct PoMessage {
    ctxt: Option<String>,
    msgid: String,
    plural: Option<String>,
    msgstr: BTreeMap<usize, String>,
}

/// A small .po reader of its own for the test (quoted strings with the
/// escapes \" \\ \n \t, continuation lines, msgstr[N]).
fn parse_po(text: &str) -> Vec<PoMessage> {
    fn unquote(s: &str) -> String {
        let s = s.trim();
        let inner = &s[1..s.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next().unwrap() {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    o => out.push(o),
                }
            } else {
                out.push(c);
            }
        }
        out
    }
    let mut out: Vec<PoMessage> = Vec::new();
    let mut cur: Option<PoMessage> = None;
    let mut field = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kw {
            "msgctxt" => {
                out.extend(cur.take());
                cur = Some(PoMessage {
                    ctxt: Some(unquote(rest)),
                    ..Default::default()
                });
                field = "ctxt".into();
            }
            "msgid" => {
                // A msgid starts a message unless it follows its msgctxt.
                if field != "ctxt" {
                    out.extend(cur.take());
                    cur = Some(PoMessage::default());
                }
                cur.as_mut().unwrap().msgid = unquote(rest);
                field = "id".into();
            }
            "msgid_plural" => {
                cur.as_mut().unwrap().plural = Some(unquote(rest));
                field = "plural".into();
            }
            _ if kw.starts_with("msgstr") => {
                let n = kw
                    .strip_prefix("msgstr[")
                    .map(|n| n.trim_end_matches(']').parse().unwrap())
                    .unwrap_or(0);
                cur.as_mut().unwrap().msgstr.insert(n, unquote(rest));
                field = format!("str{n}");
            }
            _ => {
                assert!(line.starts_with('"'), "{line}");
                let m = cur.as_mut().unwrap();
                let more = unquote(line);
                match field.as_str() {
                    "ctxt" => m.ctxt.as_mut().unwrap().push_str(&more),
                    "id" => m.msgid.push_str(&more),
                    "plural" => m.plural.as_mut().unwrap().push_str(&more),
                    f => {
                        let n: usize = f[3..].parse().unwrap();
                        m.msgstr.get_mut(&n).unwrap().push_str(&more);
                    }
                }
            }
        }
    }
    out.extend(cur);
    out
}

fn po2lmo(po: &Path, lmo: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("openwrt/po2lmo.py"))
        .arg(po)
        .arg(lmo)
        .output()
        .expect("python3")
}

#[test]
fn superfasthash_gives_lucis_values() {
    // Computed once with LuCI's sfh_hash (modules/luci-base/src/lib/lmo.c,
    // with lmo.h's sfh_get16), compiled with gcc on x86_64 in a scratch
    // folder outside this repository, called as LuCI calls it:
    // sfh_hash(s, strlen(s), strlen(s)). They cover every length modulo 4
    // and bytes above 0x7f in each tail case (signed chars there).
    let known: &[(&str, u32)] = &[
        ("a", 291415938),
        ("ab", 1366002500),
        ("abc", 3535673738),
        ("abcd", 3671636187),
        ("Status", 1714641353),
        ("DNS", 3626841981),
        ("dae", 3441373780),
        ("é", 3304826196),
        ("日", 438097569),
        ("状态ab", 1231805152),
        ("Save & Apply", 1628171988),
        ("ctx\x01msg", 991131003),
        ("one\x020", 2891018671),
        ("a€", 112842802),
    ];
    for (s, want) in known {
        assert_eq!(sfh_hash(s.as_bytes()), *want, "{s:?}");
    }
    assert_eq!(sfh_hash(b""), 0);

    // The writer's (Python) hash agrees with this one on many strings:
    // every msgid of the catalog and its translation.
    let po = read_text(&repo().join("luci-app-dae/po/zh_Hans/dae.po"));
    let strings: Vec<String> = parse_po(&po)
        .into_iter()
        .flat_map(|m| [m.msgid, m.msgstr[&0].clone()])
        .filter(|s| !s.is_empty())
        .collect();
    let script = format!(
        "import sys; sys.path.insert(0, {:?}); import po2lmo\n\
         for line in sys.stdin.read().split('\\0'):\n    print(po2lmo.sfh_hash(line.encode()))",
        repo().join("openwrt").display().to_string()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(strings.join("\0").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let ours: Vec<u32> = strings.iter().map(|s| sfh_hash(s.as_bytes())).collect();
    assert!(ours.len() > 600);
    assert_eq!(ours, theirs);
}

#[test]
fn the_lmo_gives_every_translation_back() {
    let t = TempDir::new("lmo");
    let lmo = t.path("dae.zh-cn.lmo");
    let po_file = repo().join("luci-app-dae/po/zh_Hans/dae.po");
    let out = po2lmo(&po_file, &lmo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = read_lmo(&read(&lmo));
    assert!(
        entries.windows(2).all(|w| w[0].key < w[1].key),
        "index sorted by key, keys unique"
    );
    let messages = parse_po(&read_text(&po_file));
    let mut translated = 0;
    for m in &messages {
        if m.msgid.is_empty() {
            continue;
        }
        let want = &m.msgstr[&0];
        let key = lookup_hash(m.ctxt.as_deref(), &m.msgid, None);
        if want.is_empty() || sfh_hash(want.as_bytes()) == key {
            assert!(lmo_find(&entries, key).is_none(), "{:?}", m.msgid);
            continue;
        }
        let e = lmo_find(&entries, key).unwrap_or_else(|| panic!("{:?} not found", m.msgid));
        assert_eq!(&e.value, want, "{:?}", m.msgid);
        assert_eq!(e.forms, 1);
        translated += 1;
    }
    assert!(translated > 300, "{translated} translations");
    // And the header's Plural-Forms, under key 0; nothing else.
    let plural = lmo_find(&entries, 0).expect("Plural-Forms");
    assert_eq!(plural.value, "nplurals=1; plural=0;");
    assert_eq!(entries.len(), translated + 1);
}

#[test]
fn contexts_and_plurals_are_keyed_as_luci_looks_them_up() {
    let t = TempDir::new("lmo-plural");
    let po = t.path("x.po");
    std::fs::write(
        &po,
        "msgid \"\"\nmsgstr \"\"\n\"Plural-Forms: nplurals=2; plural=(n != 1);\\n\"\n\n\
         msgctxt \"menu\"\nmsgid \"Open\"\nmsgstr \"打开\"\n\n\
         msgid \"Open\"\nmsgstr \"开放\"\n\n\
         msgid \"%d file\"\nmsgid_plural \"%d files\"\nmsgstr[0] \"%d 个文件\"\nmsgstr[1] \"%d 个文件们\"\n\n\
         msgid \"Untranslated\"\nmsgstr \"\"\n\n\
         msgid \"a \"\n\"long  one\"\nmsgstr \"一个\"\n\"长的\"\n",
    )
    .unwrap();
    let lmo = t.path("x.lmo");
    assert!(po2lmo(&po, &lmo).status.success());
    let entries = read_lmo(&read(&lmo));
    let get = |h: u32| lmo_find(&entries, h).map(|e| (e.value.as_str(), e.forms));
    assert_eq!(
        get(lookup_hash(Some("menu"), "Open", None)),
        Some(("打开", 1))
    );
    assert_eq!(get(lookup_hash(None, "Open", None)), Some(("开放", 1)));
    assert_eq!(
        get(lookup_hash(None, "%d file", Some(0))),
        Some(("%d 个文件", 2))
    );
    assert_eq!(
        get(lookup_hash(None, "%d file", Some(1))),
        Some(("%d 个文件们", 2))
    );
    assert_eq!(get(lookup_hash(None, "Untranslated", None)), None);
    // Continued strings are joined; the key's white space as LuCI's lookup has it.
    assert_eq!(
        get(lookup_hash(None, "a long one", None)),
        Some(("一个长的", 1))
    );
    assert_eq!(get(0), Some(("nplurals=2; plural=(n != 1);", 0)));
    assert_eq!(entries.len(), 6);
}

#[test]
fn a_po_it_cannot_read_is_refused_and_nothing_written() {
    let t = TempDir::new("lmo-bad");
    for (what, text) in [
        ("unterminated", "msgid \"a\nmsgstr \"b\"\n"),
        ("unknown escape", "msgid \"a\\q\"\nmsgstr \"b\"\n"),
        ("stray line", "msgid \"a\"\nmsgstr \"b\"\nwhat\n"),
        ("nothing translated", "msgid \"a\"\nmsgstr \"\"\n"),
        ("not UTF-8", "msgid \"a\"\nmsgstr \"\u{FFFD}\"\n"),
    ] {
        let po = t.path("bad.po");
        let mut bytes = text.as_bytes().to_vec();
        if what == "not UTF-8" {
            bytes = b"msgid \"a\"\nmsgstr \"\xff\"\n".to_vec();
        }
        std::fs::write(&po, bytes).unwrap();
        let lmo = t.path("bad.lmo");
        let out = po2lmo(&po, &lmo);
        assert!(!out.status.success(), "{what}: accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("po2lmo: "), "{what}: {err}");
        assert!(!lmo.exists(), "{what}: wrote a catalog");
        let left: Vec<_> = std::fs::read_dir(&t.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(left, ["bad.po"], "{what}: left files behind");
    }
}

/// (name, mode) of a tar's entries, sorted.
fn tar_entries(archive: &Path) -> Vec<(String, String)> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(archive)
        .output()
        .unwrap();
    let mut v: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[1], "0/0", "{l}");
            (f[5..].join(" "), f[0].to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn luci_app_dae_ipk_has_the_pages_menu_and_acl() {
    let t = TempDir::new("luci-ipk");
    let top = t.path("ipk");
    untar(&ipk("luci-app-dae"), &top);
    let data = tar_entries(&top.join("data.tar.gz"));
    let files: Vec<&str> = data
        .iter()
        .filter(|(_, m)| m.starts_with('-'))
        .map(|(n, m)| {
            assert_eq!(m, "-rw-r--r--", "{n}");
            n.as_str()
        })
        .collect();
    // Exactly the app's htdocs (in /www) and root files.
    let app = repo().join("luci-app-dae");
    let mut want: Vec<String> = files_under(&app.join("htdocs"))
        .into_iter()
        .map(|f| format!("./www{f}"))
        .chain(
            files_under(&app.join("root"))
                .into_iter()
                .map(|f| format!(".{f}")),
        )
        .collect();
    want.sort();
    assert_eq!(files, want);
    assert!(files.contains(&"./usr/share/luci/menu.d/luci-app-dae.json"));
    assert!(files.contains(&"./usr/share/rpcd/acl.d/luci-app-dae.json"));
    assert!(files.contains(&"./www/luci-static/resources/view/dae/status.js"));

    let ctl = top.join("control");
    untar(&top.join("control.tar.gz"), &ctl);
    let control = read_text(&ctl.join("control"));
    for line in [
        "Package: luci-app-dae",
        "Depends: luci-base, dae",
        "Section: luci",
        "Architecture: all",
        "License: AGPL-3.0-only",
        "Description: LuCI support for dae (transparent DNS controller)",
        " Pages to configure dae (general settings, DNS rules and upstreams, nodes, groups, routing) and to see its status and log.",
    ] {
        assert!(control.lines().any(|l| l == line), "{line}\n{control}");
    }
    assert!(!ctl.join("conffiles").exists());
}

/// Installs an ipk into a root as opkg does: the files, then the list and
/// the control files in /usr/lib/opkg/info, then `PKG.postinst configure`.
fn opkg_install(r: &RouterRoot, name: &str) {
    let t = r.root.parent().unwrap().join(format!("unpack-{name}"));
    untar(&ipk(name), &t);
    let data = t.join("data");
    untar(&t.join("data.tar.gz"), &data);
    r.unpack(&data);
    let info = r.root.join("usr/lib/opkg/info");
    std::fs::create_dir_all(&info).unwrap();
    let list: String = files_under(&data)
        .iter()
        .map(|f| format!("{f}\n"))
        .collect();
    std::fs::write(info.join(format!("{name}.list")), list).unwrap();
    let ctl = t.join("control");
    untar(&t.join("control.tar.gz"), &ctl);
    for f in std::fs::read_dir(&ctl).unwrap() {
        let f = f.unwrap();
        std::fs::copy(
            f.path(),
            info.join(format!("{name}.{}", f.file_name().to_string_lossy())),
        )
        .unwrap();
    }
    r.run(
        &format!("/usr/lib/opkg/info/{name}.postinst"),
        &["configure"],
        &[],
    );
}

#[test]
fn opkg_install_puts_the_files_where_luci_expects_them() {
    let t = TempDir::new("luci-root");
    let r = RouterRoot::new(t.path("root"));
    // LuCI's caches, which the app's postinst drops.
    std::fs::write(r.root.join("tmp/luci-indexcache.abc.json"), "{}").unwrap();
    std::fs::create_dir_all(r.root.join("tmp/luci-modulecache")).unwrap();

    opkg_install(&r, "luci-app-dae");
    assert!(!r.root.join("tmp/luci-indexcache.abc.json").exists());
    assert!(!r.root.join("tmp/luci-modulecache").exists());
    opkg_install(&r, "luci-i18n-dae-zh-cn");

    for (path, source) in [
        (
            "usr/share/luci/menu.d/luci-app-dae.json",
            "luci-app-dae/root/usr/share/luci/menu.d/luci-app-dae.json",
        ),
        (
            "usr/share/rpcd/acl.d/luci-app-dae.json",
            "luci-app-dae/root/usr/share/rpcd/acl.d/luci-app-dae.json",
        ),
        (
            "www/luci-static/resources/dae/tools.js",
            "luci-app-dae/htdocs/luci-static/resources/dae/tools.js",
        ),
    ] {
        assert_eq!(
            read(&r.root.join(path)),
            read(&repo().join(source)),
            "{path}"
        );
    }
    // Every view the menu names is there.
    let menu = read_text(&r.root.join("usr/share/luci/menu.d/luci-app-dae.json"));
    let views: Vec<&str> = menu
        .split("\"path\": \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert!(views.len() >= 5, "{views:?}");
    for v in views {
        assert!(
            r.root
                .join(format!("www/luci-static/resources/view/{v}.js"))
                .exists(),
            "view {v}"
        );
    }
    // The catalog where LuCI loads *.zh-cn.lmo from, and readable.
    let lmo = read_lmo(&read(&r.root.join("usr/lib/lua/luci/i18n/dae.zh-cn.lmo")));
    let status = lmo_find(&lmo, lookup_hash(None, "Status", None)).expect("Status");
    assert!(!status.value.is_empty() && status.value != "Status");
    // The language offered in LuCI at once: uci set, the uci-defaults
    // script removed.
    assert_eq!(
        read_text(&r.root.join("tmp/uci.log")),
        "set luci.languages.zh_cn=简体中文 (Chinese Simplified)\ncommit luci\n"
    );
    assert!(!r.root.join("etc/uci-defaults/luci-i18n-dae-zh-cn").exists());
    // Nothing was started or enabled: neither has an init script.
    assert_eq!(r.take_rc_log(), "");
    assert_eq!(r.rc_d(), Vec::<String>::new());
    // And removal runs.
    for name in ["luci-i18n-dae-zh-cn", "luci-app-dae"] {
        r.run(
            &format!("/usr/lib/opkg/info/{name}.prerm"),
            &["remove"],
            &[],
        );
    }
}

#[test]
fn the_luci_apk_folders_carry_the_same_files_and_scripts() {
    let v = format!("{}-r{}", cargo_version(), makefile_release());
    let app = built().join(format!("luci-app-dae-{v}.apk.d"));
    let list = read_text(&app.join("files/lib/apk/packages/luci-app-dae.list"));
    assert!(list
        .lines()
        .any(|l| l == "/usr/share/rpcd/acl.d/luci-app-dae.json"));
    assert!(list
        .lines()
        .any(|l| l == "/www/luci-static/resources/view/dae/dns.js"));
    assert!(!app
        .join("files/lib/apk/packages/luci-app-dae.conffiles")
        .exists());
    let mkpkg = read_text(&app.join("mkpkg.sh"));
    assert!(mkpkg.contains("--info 'arch:noarch'"));
    assert!(mkpkg.contains("--info 'depends:luci-base dae'"));

    let i18n = built().join(format!("luci-i18n-dae-zh-cn-{v}.apk.d"));
    assert!(i18n
        .join("files/usr/lib/lua/luci/i18n/dae.zh-cn.lmo")
        .exists());
    assert!(read_text(&i18n.join("mkpkg.sh")).contains("--info 'depends:luci-app-dae'"));

    // apk add of both, in a scratch root: the caches dropped, the
    // language set.
    let t = TempDir::new("luci-apk-root");
    let r = RouterRoot::new(t.path("root"));
    std::fs::write(r.root.join("tmp/luci-indexcache"), "{}").unwrap();
    for dir in [&app, &i18n] {
        r.unpack(&dir.join("files"));
        std::fs::copy(dir.join("post-install"), r.root.join("tmp/post-install")).unwrap();
        r.run("/tmp/post-install", &[&v], &[]);
    }
    assert!(!r.root.join("tmp/luci-indexcache").exists());
    assert_eq!(
        read_text(&r.root.join("tmp/uci.log")),
        "set luci.languages.zh_cn=简体中文 (Chinese Simplified)\ncommit luci\n"
    );
}
