//! The sniffers (src/sniff) against the first bytes of real clients:
//! openssl s_client and curl (TLS ClientHellos, HTTP requests) on a loopback
//! TCP listener, aioquic's QUIC client (Initials in versions 1 and 2, a
//! ClientHello over two Initials) on a loopback UDP socket. Every prefix of
//! what they sent, and random damage to it, never gives a wrong name or a
//! panic.

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rng;
use dae::sniff::{quic, sniff_stream, tls, QuicSniffer, Sniffed};

fn domain(name: &str) -> Sniffed {
    Sniffed::Domain(name.to_string())
}

/// Starts the client `start` makes for a loopback port and returns the
/// first bytes it sends there, read until the sniffer stops asking for
/// more (or the client stops sending).
fn first_bytes(start: impl FnOnce(u16) -> Command) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = start(port)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0; 4096];
    while sniff_stream(&bytes) == Sniffed::NeedMore {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    drop(conn);
    common::kill(&mut client);
    bytes
}

fn openssl(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args);
    cmd
}

/// curl to `url`, its connection sent to the loopback port whatever the
/// URL's host.
fn curl(port: u16, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "-m",
        "5",
        "--connect-to",
        &format!("::127.0.0.1:{port}"),
        url,
    ])
    .args(args);
    cmd
}

/// The stream gives `name` in full, and `NeedMore` at every shorter prefix
/// up to `needed` bytes (where the name is complete).
fn check_every_prefix(stream: &[u8], needed: usize, name: &Sniffed) {
    assert_eq!(&sniff_stream(stream), name);
    for cut in 0..needed {
        assert_eq!(
            sniff_stream(&stream[..cut]),
            Sniffed::NeedMore,
            "prefix of {cut} bytes"
        );
    }
    for cut in needed..stream.len() {
        assert_eq!(&sniff_stream(&stream[..cut]), name, "prefix of {cut} bytes");
    }
}

/// The number of TLS records in `stream`.
fn records(stream: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while at + 5 <= stream.len() {
        at += 5 + usize::from(u16::from_be_bytes([stream[at + 3], stream[at + 4]]));
        n += 1;
    }
    assert_eq!(at, stream.len(), "whole records");
    n
}

#[test]
fn the_client_hellos_of_openssl() {
    if !common::have("openssl") {
        return;
    }
    let alpn: Vec<String> = (0..80)
        .map(|i| format!("sniff-test-protocol-{i:03}"))
        .collect();
    let alpn = alpn.join(",");
    let cases: [(&[&str], usize); 5] = [
        (&["-servername", "x.example"], 1),
        (&["-servername", "X.Example", "-tls1_2"], 1),
        (
            &[
                "-servername",
                "x.example.",
                "-tls1_3",
                "-groups",
                "X25519:P-256:P-384",
            ],
            1,
        ),
        // A hello of about 2.4 KB in records of 512 bytes.
        (
            &[
                "-servername",
                "x.example",
                "-max_send_frag",
                "512",
                "-alpn",
                &alpn,
            ],
            5,
        ),
        (&["-servername", "x.example", "-max_send_frag", "512"], 1),
    ];
    for (args, want_records) in cases {
        let hello = first_bytes(|port| openssl(port, args));
        assert_eq!(records(&hello), want_records, "{args:?}");
        assert_eq!(tls::sniff(&hello), domain("x.example"), "{args:?}");
        check_every_prefix(&hello, hello.len(), &domain("x.example"));
        // The handshake message without records: what QUIC hands over.
        if want_records == 1 {
            assert_eq!(tls::client_hello(&hello[5..]), domain("x.example"));
        }
    }
    let hello = first_bytes(|port| openssl(port, &["-noservername"]));
    assert_eq!(sniff_stream(&hello), Sniffed::NotThis);
}

#[test]
fn the_client_hello_and_host_of_curl() {
    if !common::have("curl") {
        return;
    }
    let hello = first_bytes(|port| curl(port, &format!("https://x.example:{port}/"), &[]));
    check_every_prefix(&hello, hello.len(), &domain("x.example"));

    for args in [
        &["--http1.1"][..],
        &["--http1.0", "-I"],
        &["-X", "OPTIONS"],
        &["-d", "a=b"],
    ] {
        let request = first_bytes(|port| curl(port, &format!("http://X.Example:{port}/p?q"), args));
        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
        let host_end = text.find("host: x.example:").expect(&text);
        let needed = host_end + text[host_end..].find('\n').unwrap() + 1;
        check_every_prefix(&request, needed, &domain("x.example"));
    }
    // Address literals are not names.
    for url in [
        "http://127.0.0.1:{port}/",
        "http://[2001:db8::1]:{port}/",
        "http://[::1]/",
    ] {
        let request =
            first_bytes(|port| curl(port, &url.replace("{port}", &port.to_string()), &["-g"]));
        assert!(request.ends_with(b"\r\n\r\n"), "{request:?}");
        assert_eq!(sniff_stream(&request), Sniffed::NotThis, "{url}");
    }
}

/// Where `tests/run-all.sh` installs aioquic (pip --target).
fn pydeps() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pydeps")
}

fn have_aioquic() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .env("PYTHONPATH", pydeps())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: aioquic is not installed (tests/run-all.sh installs it into target/pydeps)"
        );
    }
    ok
}

/// The datagrams aioquic's client sends first, for `server_name` in QUIC
/// `version`, with `alpn` extra ALPN values enlarging its ClientHello.
fn quic_first_flight(server_name: &str, version: u8, alpn: usize) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/quic_initial.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            &port.to_string(),
            server_name,
            &version.to_string(),
            &alpn.to_string(),
        ])
        .env("PYTHONPATH", pydeps())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let mut buf = [0; 65536];
    (0..sent)
        .map(|_| {
            let n = socket.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

#[test]
fn the_initials_of_aioquic() {
    if !have_aioquic() {
        return;
    }
    let name = domain("q.example");
    for version in [1, 2] {
        let flight = quic_first_flight("Q.Example", version, 0);
        assert_eq!(flight.len(), 1, "version {version}");
        assert_eq!(quic::sniff_datagram(&flight[0]), name, "version {version}");
        // aioquic pads the datagram with zeros after a short Initial: every
        // cut before the packet's end gives nothing, every cut after it the
        // name.
        let end = initial_end(&flight[0]);
        assert!(flight[0][end..].iter().all(|&b| b == 0));
        for cut in 0..flight[0].len() {
            let want = if cut < end { &Sniffed::NotThis } else { &name };
            assert_eq!(&quic::sniff_datagram(&flight[0][..cut]), want, "cut {cut}");
        }

        // A ClientHello of about 1.5 KB: two Initials in two datagrams.
        let flight = quic_first_flight("q.example", version, 60);
        assert_eq!(flight.len(), 2, "version {version}");
        for order in [[0, 1], [1, 0]] {
            let mut sniffer = QuicSniffer::default();
            assert_eq!(sniffer.feed(&flight[order[0]]), Sniffed::NeedMore);
            assert_eq!(sniffer.feed(&flight[order[1]]), name, "order {order:?}");
        }
        // Coalesced into one datagram.
        let end = initial_end(&flight[0]);
        assert_eq!(
            quic::sniff_datagram(&[&flight[0][..end], &flight[1]].concat()),
            name
        );
        // The second datagram cut short: no name before its packet's end;
        // the sniffer waits for another datagram (a retransmission).
        let end = initial_end(&flight[1]);
        for cut in 0..flight[1].len() {
            let mut sniffer = QuicSniffer::default();
            sniffer.feed(&flight[0]);
            let want = if cut < end { &Sniffed::NeedMore } else { &name };
            assert_eq!(&sniffer.feed(&flight[1][..cut]), want, "cut {cut}");
        }
    }
}

/// Where the first packet of one of aioquic's datagrams ends: after its
/// connection ids, an empty token and a 2-byte Length (aioquic's encoding).
fn initial_end(datagram: &[u8]) -> usize {
    let dcid = usize::from(datagram[5]);
    let scid = usize::from(datagram[6 + dcid]);
    let at = 7 + dcid + scid;
    assert_eq!(datagram[at], 0, "no token");
    assert_eq!(datagram[at + 1] >> 6, 1, "a 2-byte length");
    let len = u16::from_be_bytes([datagram[at + 1] & 0x3f, datagram[at + 2]]);
    at + 3 + usize::from(len)
}

/// Whether a sniffed name is a lowercase host name.
fn well_formed(found: &Sniffed) -> bool {
    match found {
        Sniffed::Domain(name) => {
            name.len() <= 253
                && name.split('.').all(|l| {
                    (1..=63).contains(&l.len())
                        && l.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        })
                })
        }
        _ => true,
    }
}

/// Damages `bytes` a few times: flipped bytes, bytes cut out or put in,
/// a cut tail.
fn damage(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(4) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => drop(out.drain(at..(at + 1 + rng.below(8)).min(out.len()))),
            _ => out.insert(at, rng.next() as u8),
        }
    }
    if rng.below(4) == 0 {
        out.truncate(rng.below(out.len() + 1));
    }
    out
}

#[test]
fn damaged_and_random_input_never_panics_nor_names_wrongly() {
    let seed = std::env::var("SNIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(dae::rand::u64)
        | 1;
    eprintln!("SNIFF_SEED={seed}");
    let mut rng = Rng(seed);
    let mut streams = Vec::new();
    if common::have("openssl") {
        streams.push(first_bytes(|port| {
            openssl(port, &["-servername", "x.example", "-max_send_frag", "512"])
        }));
    }
    if common::have("curl") {
        streams.push(first_bytes(|port| {
            curl(port, &format!("http://x.example:{port}/"), &[])
        }));
    }
    for stream in &streams {
        for _ in 0..20_000 {
            let found = sniff_stream(&damage(&mut rng, stream));
            assert!(well_formed(&found), "{found:?}");
        }
    }
    if have_aioquic() {
        let flight = quic_first_flight("q.example", 1, 60);
        let end = initial_end(&flight[1]);
        for _ in 0..2_000 {
            // Damage anywhere in a protected packet fails its decryption
            // (the sniffer waits for another datagram); only the zeros
            // padding the datagram after it may change.
            let damaged = damage(&mut rng, &flight[1]);
            let mut sniffer = QuicSniffer::default();
            sniffer.feed(&flight[0]);
            let intact = damaged.get(..end) == Some(&flight[1][..end]);
            let want = if intact {
                domain("q.example")
            } else {
                Sniffed::NeedMore
            };
            assert_eq!(sniffer.feed(&damaged), want);
        }
    }
    // Random bytes, alone and behind the start of each protocol.
    for _ in 0..20_000 {
        let mut bytes: Vec<u8> = (0..rng.below(600)).map(|_| rng.next() as u8).collect();
        let starts: [&[u8]; 5] = [
            b"",
            b"\x16\x03\x01",
            b"\x16\x03\x01\x01\x00\x01\x00\x00",
            b"GET / HTTP/1.1\r\nHost: ",
            b"\xc0\x00\x00\x00\x01\x08",
        ];
        bytes.splice(0..0, starts[rng.below(starts.len())].iter().copied());
        assert!(well_formed(&sniff_stream(&bytes)));
        assert!(well_formed(&quic::sniff_datagram(&bytes)));
    }
}
