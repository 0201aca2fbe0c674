//! dae's log names record types as dig does: `A`, `AAAA`, `HTTPS`, and
//! `TYPE65534` for a type without a name; never a bare number.
//!
//! Needs unbound; skips loudly without it.

mod common;

use std::time::Duration;

use common::{ask, config, have, Dae, Unbound};
use hickory_proto::rr::RecordType;

#[test]
fn log_lines_name_record_types_as_dig_does() {
    if !have("unbound") {
        return;
    }
    let up = Unbound::start(&[
        "www.lab.example. 300 IN A 192.0.2.80",
        "www.lab.example. 300 IN AAAA 2001:db8::80",
    ]);
    let d = Dae::start(&config(
        &[("up", up.addr())],
        "\toption request_fallback 'up'\n\tlist request_rule 'qtype(https) -> reject'\n",
    ));
    for t in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::HTTPS,
        RecordType::Unknown(65534),
    ] {
        ask(d.addr, "www.lab.example.", t);
    }
    // Again: a cache hit.
    ask(d.addr, "www.lab.example.", RecordType::AAAA);
    let expected = [
        "www.lab.example type A: answered by 'up'",
        "www.lab.example type AAAA: answered by 'up'",
        "www.lab.example type HTTPS: rejected",
        "www.lab.example type TYPE65534: answered by 'up'",
        "www.lab.example type AAAA: cache hit",
    ];
    for line in expected {
        assert!(
            d.wait_log(line, Duration::from_secs(5)),
            "no '{line}' in:\n{}",
            d.log()
        );
    }
    for number in [" type 1:", " type 28:", " type 65:", " type 65534:"] {
        assert!(!d.log().contains(number), "'{number}' in:\n{}", d.log());
    }
}
