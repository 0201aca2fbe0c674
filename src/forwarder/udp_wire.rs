//! What the UDP forwarder changes in a query on its way out, and how it
//! checks the question echoed in what comes back.
//!
//! - 0x20 letter case (draft-vixie-dnsext-dns0x20): each letter of the
//!   question name sent upstream gets a random case, and an answer counts
//!   only if it echoes the name in exactly that case. Upstreams copy the
//!   question as they got it, so a genuine answer passes; a spoofer must
//!   guess one more bit per letter besides the source port and the id.
//!   The flips are kept so the client's own spelling can be put back.
//! - The EDNS UDP payload size offered upstream: `OFFERED_UDP_PAYLOAD`
//!   (1232, DNS Flag Day 2020), whatever the client offered; answers that
//!   do not fit come back truncated and are asked again over TCP.
//!
//! Plain functions on bytes, bounds-checked, no allocation. Neighbours:
//! `forwarder::udp` (the only caller), `wire` (the shared reads).

use crate::wire::{self, HEADER_LEN};

/// The UDP payload size offered to upstreams in the queries we forward.
pub const OFFERED_UDP_PAYLOAD: u16 = 1232;

/// Which bytes of a question name had their case flipped: bit `i` is byte
/// `i` of the name in wire form (a name is at most 255 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flips([u64; 4]);

/// Gives each letter of `name` (a name in wire form) a random case and
/// returns what was flipped. Length bytes are never letters' values that
/// matter: only bytes inside labels are touched.
pub fn randomize_case(name: &mut [u8]) -> Flips {
    let mut flips = Flips::default();
    let mut bits = 0u64;
    let mut left = 0;
    for_each_label_byte(name, |i, b| {
        if !b.is_ascii_alphabetic() {
            return;
        }
        if left == 0 {
            bits = crate::rand::u64();
            left = 64;
        }
        if bits & 1 != 0 {
            *b ^= 0x20;
            flips.0[i / 64] |= 1 << (i % 64);
        }
        bits >>= 1;
        left -= 1;
    });
    flips
}

/// Undoes `randomize_case` (flipping the same letters again).
pub fn restore_case(name: &mut [u8], flips: &Flips) {
    if *flips == Flips::default() {
        return;
    }
    for_each_label_byte(name, |i, b| {
        if flips.0[i / 64] & (1 << (i % 64)) != 0 && b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    });
}

/// Calls `f` with the offset and a mutable reference of every byte inside
/// the labels of `name` (not the length bytes).
fn for_each_label_byte(name: &mut [u8], mut f: impl FnMut(usize, &mut u8)) {
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            return;
        }
        let end = (at + 1 + len).min(name.len()).min(256);
        if let Some(label) = name.get_mut(at + 1..end) {
            for (i, b) in label.iter_mut().enumerate() {
                f(at + 1 + i, b);
            }
        }
        at += 1 + len;
    }
}

/// How an upstream datagram's header and question compare with a query's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// A response with our id and our question, byte for byte.
    Exact,
    /// Our id, type and class, and our name but in other letter case: a
    /// spoof that guessed port and id, or an upstream that does not keep
    /// the question's case.
    OtherCase,
    /// Not an answer to this query.
    No,
}

/// Compares `resp` with the query of id `id` whose question (name, type,
/// class in wire form) is `question`: only a response (QR) to a standard
/// query (opcode 0) with that id and one question can answer it
/// (`wire::is_response_to`, as for the stream transports).
pub fn echo(resp: &[u8], id: u16, question: &[u8]) -> Echo {
    let qend = HEADER_LEN + question.len();
    if resp.len() < qend || !wire::is_response_to(resp, id) {
        return Echo::No;
    }
    let echoed = &resp[HEADER_LEN..qend];
    if echoed == question {
        Echo::Exact
    } else if echoed.eq_ignore_ascii_case(question) {
        Echo::OtherCase
    } else {
        Echo::No
    }
}

/// Where a query's OPT record keeps its UDP payload size (its CLASS
/// field), if it has an OPT record: the additional section is walked from
/// `question_end` (answer and authority sections of a query are normally
/// empty; what is there is skipped).
pub fn opt_size_at(query: &[u8], question_end: usize) -> Option<usize> {
    let count = |at| usize::from(wire::read_u16(query, at).unwrap_or(0));
    let before_additional = count(6) + count(8);
    let total = before_additional + count(10);
    let mut at = question_end;
    for i in 0..total {
        let name_end = skip_name(query, at)?;
        let rtype = wire::read_u16(query, name_end)?;
        let rdlen = usize::from(wire::read_u16(query, name_end + 8)?);
        if i >= before_additional && rtype == wire::rtype::OPT {
            return Some(name_end + 2);
        }
        at = name_end + 10 + rdlen;
    }
    None
}

/// The end of a (possibly compressed) name at `at`.
fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *buf.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => return Some(at + 2),
            _ => return None,
        }
    }
}

/// Writes `size` as the UDP payload size at `at` (from `opt_size_at`) and
/// returns the size that was there.
pub fn swap_udp_size(query: &mut [u8], at: usize, size: u16) -> u16 {
    let old = wire::read_u16(query, at).unwrap_or(0);
    if let Some(b) = query.get_mut(at..at + 2) {
        b.copy_from_slice(&size.to_be_bytes());
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in text.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn case_is_randomized_and_restored_exactly() {
        let original = wire_name("www.Example-1.com");
        let mut changed = 0;
        for _ in 0..64 {
            let mut name = original.clone();
            let flips = randomize_case(&mut name);
            assert!(name.eq_ignore_ascii_case(&original));
            // Length bytes and non-letters stay as they were.
            assert_eq!(name[0], 3);
            assert_eq!(name[4], 9);
            assert_eq!(&name[12..14], b"-1");
            if name != original {
                changed += 1;
            }
            restore_case(&mut name, &flips);
            assert_eq!(name, original);
        }
        assert!(changed >= 60, "only {changed} of 64 names changed case");
    }

    #[test]
    fn echo_tells_exact_other_case_and_foreign_answers_apart() {
        let mut question = wire_name("a.example");
        question.extend_from_slice(&[0, 1, 0, 1]);
        let mut resp = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        resp.extend_from_slice(&question);
        assert_eq!(echo(&resp, 0x1234, &question), Echo::Exact);
        assert_eq!(echo(&resp, 0x1235, &question), Echo::No);
        resp[HEADER_LEN + 1] = b'A';
        assert_eq!(echo(&resp, 0x1234, &question), Echo::OtherCase);
        resp[HEADER_LEN + 1] = b'b';
        assert_eq!(echo(&resp, 0x1234, &question), Echo::No);
        assert_eq!(echo(&resp[..14], 0x1234, &question), Echo::No);
    }

    #[test]
    fn the_opt_size_is_found_and_swapped() {
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(&wire_name("a.example"));
        q.extend_from_slice(&[0, 1, 0, 1]);
        let question_end = q.len();
        // OPT: root name, type 41, size 65535, ttl 0, rdlen 0.
        q.extend_from_slice(&[0, 0, 41, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        let at = opt_size_at(&q, question_end).unwrap();
        assert_eq!(swap_udp_size(&mut q, at, OFFERED_UDP_PAYLOAD), 65535);
        let info = wire::parse_query(&q).unwrap();
        assert_eq!(info.edns.unwrap().udp_size, 1232);
        // No OPT record: nothing found.
        q.truncate(question_end);
        q[11] = 0;
        assert_eq!(opt_size_at(&q, question_end), None);
    }
}
