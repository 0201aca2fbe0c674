//! DNS wire format on raw bytes: the few reads and patches the hot path needs.
//!
//! The controller never decodes a message into objects and encodes it again
//! on its way through: a query is checked and its question read in place
//! (`parse_query`), an upstream answer is scanned once for the offsets of its
//! TTL fields and the facts the rules need (`scan_response`), and replies are
//! built by copying bytes and patching the id, the question's case, the TTLs
//! and a few flag bits. Every read is bounds-checked; malformed input gives an
//! error, never a panic. The unit tests check these helpers against
//! hickory-proto, the reference decoder.
//!
//! Neighbours: `listener` hands raw queries in, `controller` decides,
//! `forwarder` uses `response_matches` on what comes back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const HEADER_LEN: usize = 12;
/// The UDP payload size we advertise in OPT records we write (RFC 9715's
/// recommendation, small enough never to fragment).
pub const OUR_UDP_PAYLOAD: u16 = 1232;
/// Plain DNS over UDP without EDNS.
pub const CLASSIC_UDP_PAYLOAD: usize = 512;

pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

pub mod rtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
}

#[inline]
pub fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
pub fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline]
pub fn id(buf: &[u8]) -> u16 {
    u16::from_be_bytes([buf[0], buf[1]])
}

#[inline]
pub fn set_id(buf: &mut [u8], id: u16) {
    buf[..2].copy_from_slice(&id.to_be_bytes());
}

#[inline]
pub fn flags(buf: &[u8]) -> u16 {
    u16::from_be_bytes([buf[2], buf[3]])
}

#[inline]
pub fn set_flags(buf: &mut [u8], flags: u16) {
    buf[2..4].copy_from_slice(&flags.to_be_bytes());
}

#[inline]
pub fn rcode_of(buf: &[u8]) -> u8 {
    buf[3] & 0x0f
}

/// EDNS(0) facts from a query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size (values below 512 count as 512).
    pub udp_size: u16,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// What the controller needs to know about a client's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryInfo {
    pub id: u16,
    pub flags: u16,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question (name, type, class).
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl QueryInfo {
    /// The question name in wire form, as the client wrote it.
    pub fn qname<'a>(&self, query: &'a [u8]) -> &'a [u8] {
        &query[HEADER_LEN..self.question_end - 4]
    }

    /// The largest UDP reply this client can take.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size).max(CLASSIC_UDP_PAYLOAD),
            None => CLASSIC_UDP_PAYLOAD,
        }
    }
}

/// Why a query cannot be answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Not worth a reply: too short to hold a header, or itself a response
    /// (answering responses invites loops).
    Drop(&'static str),
    /// Answer with this rcode and the header (and question, if it could be
    /// read) echoed back.
    Reply(u8, &'static str),
}

/// Reads and checks a query: header, exactly one question, and the OPT
/// record if there is one.
pub fn parse_query(buf: &[u8]) -> Result<QueryInfo, QueryError> {
    if buf.len() < HEADER_LEN {
        return Err(QueryError::Drop("shorter than a DNS header"));
    }
    let flags = flags(buf);
    if flags & flag::QR != 0 {
        return Err(QueryError::Drop("a response, not a query"));
    }
    let opcode = (flags >> 11) & 0x0f;
    if opcode != 0 {
        return Err(QueryError::Reply(rcode::NOTIMP, "opcode is not QUERY"));
    }
    let qdcount = read_u16(buf, 4).unwrap_or(0);
    if qdcount != 1 {
        return Err(QueryError::Reply(rcode::FORMERR, "question count is not 1"));
    }
    let name_end = question_name_end(buf, HEADER_LEN)
        .ok_or(QueryError::Reply(rcode::FORMERR, "malformed question name"))?;
    let qtype =
        read_u16(buf, name_end).ok_or(QueryError::Reply(rcode::FORMERR, "truncated question"))?;
    let qclass = read_u16(buf, name_end + 2)
        .ok_or(QueryError::Reply(rcode::FORMERR, "truncated question"))?;
    let question_end = name_end + 4;

    // Answer and authority sections of a query are normally empty; skip what
    // is there, then look for OPT among the additional records.
    let ancount = read_u16(buf, 6).unwrap_or(0);
    let nscount = read_u16(buf, 8).unwrap_or(0);
    let arcount = read_u16(buf, 10).unwrap_or(0);
    let mut at = question_end;
    let mut edns = None;
    let total = usize::from(ancount) + usize::from(nscount) + usize::from(arcount);
    for i in 0..total {
        let rr = read_rr(buf, at).ok_or(QueryError::Reply(rcode::FORMERR, "malformed record"))?;
        if i >= usize::from(ancount) + usize::from(nscount) && rr.rtype == rtype::OPT {
            if edns.is_some() {
                return Err(QueryError::Reply(
                    rcode::FORMERR,
                    "more than one OPT record",
                ));
            }
            edns = Some(Edns {
                udp_size: rr.class,
                dnssec_ok: rr.ttl & 0x8000 != 0,
            });
        }
        at = rr.end;
    }
    Ok(QueryInfo {
        id: id(buf),
        flags,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// The end of an uncompressed name starting at `at` (a question name must not
/// use compression: nothing precedes it to point at).
fn question_name_end(buf: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *buf.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if at - start > 255 {
            return None;
        }
    }
    (at - start <= 255 && at <= buf.len()).then_some(at)
}

/// The end of a possibly compressed name inside a record.
fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *buf.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                at += 1 + usize::from(len);
                if at - start > 255 {
                    return None;
                }
            }
            0xc0 => {
                buf.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// One resource record's fixed fields.
#[derive(Debug, Clone, Copy)]
struct RawRecord {
    rtype: u16,
    class: u16,
    ttl: u32,
    /// Offset of the TTL field.
    ttl_at: usize,
    rdata_at: usize,
    rdlen: usize,
    end: usize,
}

fn read_rr(buf: &[u8], at: usize) -> Option<RawRecord> {
    let name_end = skip_name(buf, at)?;
    let rtype = read_u16(buf, name_end)?;
    let class = read_u16(buf, name_end + 2)?;
    let ttl = read_u32(buf, name_end + 4)?;
    let rdlen = usize::from(read_u16(buf, name_end + 8)?);
    let rdata_at = name_end + 10;
    let end = rdata_at + rdlen;
    if end > buf.len() {
        return None;
    }
    Some(RawRecord {
        rtype,
        class,
        ttl,
        ttl_at: name_end + 4,
        rdata_at,
        rdlen,
        end,
    })
}

/// Appends the question name as lowercase text without the final dot
/// (`www.example.com`; the root is the empty string). Bytes that are not
/// letters, digits, `-` or `_` are written as `\DDD` so that a dot inside a
/// label cannot pose as a label boundary.
pub fn name_to_text(wire_name: &[u8], out: &mut String) {
    use std::fmt::Write;
    out.reserve(wire_name.len());
    let _ = write!(out, "{}", NameText(wire_name));
}

/// A question name shown as `name_to_text` writes it, formatted only when
/// shown: log lines on rare paths take this instead of a `String` built for
/// every query.
pub struct NameText<'a>(pub &'a [u8]);

impl std::fmt::Display for NameText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let wire_name = self.0;
        let mut at = 0;
        while let Some(&len) = wire_name.get(at) {
            if len == 0 || len > 63 {
                break;
            }
            if at != 0 {
                f.write_char('.')?;
            }
            let label = wire_name
                .get(at + 1..at + 1 + usize::from(len))
                .unwrap_or(&[]);
            for &b in label {
                let c = b.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                    f.write_char(char::from(c))?;
                } else {
                    write!(f, "\\{:03}", c)?;
                }
            }
            at += 1 + usize::from(len);
        }
        Ok(())
    }
}

/// A record type shown as dig shows it: its name (`A`, `AAAA`, `HTTPS`),
/// or `TYPE` and the number for a type without one (`TYPE65534`).
pub struct TypeName(pub u16);

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match hickory_proto::rr::RecordType::from(self.0) {
            hickory_proto::rr::RecordType::Unknown(n) => write!(f, "TYPE{n}"),
            known => write!(f, "{known}"),
        }
    }
}

/// What one scan of an upstream answer tells the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    pub rcode: u8,
    pub truncated: bool,
    pub answer_count: u16,
    /// Offsets of every TTL field except OPT's (whose "TTL" holds flags).
    pub ttl_offsets: Vec<u16>,
    /// The smallest TTL in the answer section.
    pub min_answer_ttl: Option<u32>,
    /// A and AAAA addresses in the answer section.
    pub answer_ips: Vec<IpAddr>,
    /// Whether the answer section holds a record of the question's type.
    pub has_qtype_answer: bool,
    /// RFC 2308: for an answer without records, the SOA in the authority
    /// section gives the negative TTL: min(SOA TTL, SOA MINIMUM).
    pub negative_ttl: Option<u32>,
    /// Offset of that SOA record's TTL field.
    pub soa_ttl_at: Option<u16>,
}

/// Why an upstream answer is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedResponse(pub &'static str);

impl std::fmt::Display for MalformedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Scans a whole response once. Fails on anything malformed (a record running
/// past the end, a bad name, a response over 65535 bytes).
pub fn scan_response(buf: &[u8]) -> Result<ResponseInfo, MalformedResponse> {
    if buf.len() < HEADER_LEN {
        return Err(MalformedResponse("shorter than a DNS header"));
    }
    if buf.len() > usize::from(u16::MAX) {
        return Err(MalformedResponse("longer than a DNS message can be"));
    }
    let f = flags(buf);
    if f & flag::QR == 0 {
        return Err(MalformedResponse("not a response"));
    }
    let qdcount = read_u16(buf, 4).unwrap_or(0);
    let counts = [
        read_u16(buf, 6).unwrap_or(0),
        read_u16(buf, 8).unwrap_or(0),
        read_u16(buf, 10).unwrap_or(0),
    ];
    let mut at = HEADER_LEN;
    let mut qtype = None;
    for _ in 0..qdcount {
        at = skip_name(buf, at).ok_or(MalformedResponse("malformed question"))?;
        qtype = Some(read_u16(buf, at).ok_or(MalformedResponse("truncated question"))?);
        at += 4;
        if at > buf.len() {
            return Err(MalformedResponse("truncated question"));
        }
    }
    let mut info = ResponseInfo {
        rcode: (f & 0x0f) as u8,
        truncated: f & flag::TC != 0,
        answer_count: counts[0],
        ..ResponseInfo::default()
    };
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let rr = read_rr(buf, at).ok_or(MalformedResponse("malformed record"))?;
            at = rr.end;
            if rr.rtype == rtype::OPT {
                if section != 2 {
                    return Err(MalformedResponse(
                        "OPT record outside the additional section",
                    ));
                }
                continue;
            }
            info.ttl_offsets.push(rr.ttl_at as u16);
            match section {
                0 => {
                    info.min_answer_ttl =
                        Some(info.min_answer_ttl.map_or(rr.ttl, |t| t.min(rr.ttl)));
                    if Some(rr.rtype) == qtype {
                        info.has_qtype_answer = true;
                    }
                    let rdata = &buf[rr.rdata_at..rr.end];
                    match (rr.rtype, rr.rdlen) {
                        (rtype::A, 4) => info.answer_ips.push(IpAddr::V4(Ipv4Addr::new(
                            rdata[0], rdata[1], rdata[2], rdata[3],
                        ))),
                        (rtype::AAAA, 16) => {
                            let mut o = [0u8; 16];
                            o.copy_from_slice(rdata);
                            info.answer_ips.push(IpAddr::V6(Ipv6Addr::from(o)));
                        }
                        (rtype::A | rtype::AAAA, _) => {
                            return Err(MalformedResponse("address record of the wrong length"))
                        }
                        _ => {}
                    }
                }
                1 if rr.rtype == rtype::SOA && info.negative_ttl.is_none() => {
                    // MINIMUM is the last 4 bytes of the SOA rdata.
                    if rr.rdlen < 22 {
                        return Err(MalformedResponse("SOA record too short"));
                    }
                    let minimum = read_u32(buf, rr.end - 4).unwrap_or(0);
                    info.negative_ttl = Some(rr.ttl.min(minimum));
                    info.soa_ttl_at = Some(rr.ttl_at as u16);
                }
                _ => {}
            }
        }
    }
    Ok(info)
}

/// Whether `resp` answers the query `query` (whose question is described by
/// `info`) and carries the id `id`: the id, one question, same name (ignoring
/// case), type and class.
pub fn response_matches(resp: &[u8], id: u16, query: &[u8], info: &QueryInfo) -> bool {
    response_answers(resp, id, &query[HEADER_LEN..info.question_end])
}

/// `response_matches` with the question given as its wire bytes (name,
/// type, class).
pub fn response_answers(resp: &[u8], id: u16, question: &[u8]) -> bool {
    let qend = HEADER_LEN + question.len();
    if resp.len() < qend || self::id(resp) != id || flags(resp) & flag::QR == 0 {
        return false;
    }
    if read_u16(resp, 4) != Some(1) {
        return false;
    }
    // Upstreams echo the question as sent; the case-blind compare is for
    // those that do not.
    let echoed = &resp[HEADER_LEN..qend];
    echoed == question || echoed.eq_ignore_ascii_case(question)
}

/// Appends a minimal OPT record (root name, our payload size, no options),
/// keeping the client's DO bit.
fn push_opt(out: &mut Vec<u8>, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    out.extend_from_slice(&[0, 0]);
}

/// Writes a reply with no records: the query's header and question with QR
/// and RA set, RD and CD kept, the given rcode, and an OPT record if the
/// client sent one. Used for reject, errors and truncated replies.
pub fn empty_reply(query: &[u8], info: &QueryInfo, rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&query[..info.question_end]);
    let f = flag::QR | flag::RA | (info.flags & (flag::RD | flag::CD)) | u16::from(rcode & 0x0f);
    set_flags(out, f);
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if let Some(edns) = info.edns {
        push_opt(out, edns.dnssec_ok);
        out[11] = 1;
    }
}

/// A reply for a query whose question could not be read: the header only,
/// no question.
pub fn header_only_reply(query: &[u8], rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&query[..HEADER_LEN]);
    let f = flags(query);
    let f = flag::QR | (f & (0x7800 | flag::RD | flag::CD)) | flag::RA | u16::from(rcode & 0x0f);
    set_flags(out, f);
    out[4..12].fill(0);
}

/// Makes `reply` fit a UDP client: if it is longer than the client can take,
/// it becomes header + question (+ OPT) with TC set, and the client retries
/// over TCP as usual.
pub fn fit_udp(reply: &mut Vec<u8>, query: &[u8], info: &QueryInfo) {
    if reply.len() <= info.udp_limit() {
        return;
    }
    let rcode = rcode_of(reply);
    let aa = flags(reply) & flag::AA;
    empty_reply(query, info, rcode, reply);
    let f = flags(reply) | flag::TC | aa;
    set_flags(reply, f);
}

/// Copies a stored answer into `out` as the answer to this client's query:
/// the client's id, the client's question bytes (so the case it used comes
/// back), every TTL at `ttl_offsets` set by `ttl` (old TTL → new TTL).
pub fn patch_answer(
    stored: &[u8],
    ttl_offsets: impl IntoIterator<Item = u16>,
    query: &[u8],
    info: &QueryInfo,
    ttl: impl Fn(u32) -> u32,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(stored);
    set_id(out, info.id);
    // Same name ignoring case, so same length: copy the client's spelling.
    out[HEADER_LEN..info.question_end].copy_from_slice(&query[HEADER_LEN..info.question_end]);
    // Keep the client's RD and CD bits as it sent them.
    let f = (flags(out) & !(flag::RD | flag::CD)) | (info.flags & (flag::RD | flag::CD));
    set_flags(out, f);
    for at in ttl_offsets {
        let at = usize::from(at);
        let old = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
        out[at..at + 4].copy_from_slice(&ttl(old).to_be_bytes());
    }
}

/// Overwrites the TTL at `at` in place.
pub fn set_ttl(buf: &mut [u8], at: usize, ttl: u32) {
    buf[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
}

/// A copy of `query` with another question type (same name, class and
/// flags), for the `ipversion_prefer` look-aside.
pub fn with_qtype(query: &[u8], info: &QueryInfo, qtype: u16) -> (Vec<u8>, QueryInfo) {
    let mut q = query.to_vec();
    let at = info.question_end - 4;
    q[at..at + 2].copy_from_slice(&qtype.to_be_bytes());
    (q, QueryInfo { qtype, ..*info })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::str::FromStr;

    fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        if edns {
            let mut e = HEdns::new();
            e.set_max_payload(1400);
            e.set_dnssec_ok(true);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn type_names_are_digs() {
        let shown: Vec<String> = [1, 28, 65, 16, 65534]
            .iter()
            .map(|&t| TypeName(t).to_string())
            .collect();
        assert_eq!(shown, ["A", "AAAA", "HTTPS", "TXT", "TYPE65534"]);
    }

    #[test]
    fn parses_a_query_like_hickory_encodes_it() {
        let mut q = query("www.example.com.", RecordType::AAAA, true);
        q[13..16].copy_from_slice(b"WWW");
        let info = parse_query(&q).unwrap();
        assert_eq!(info.id, 0x1234);
        assert_eq!(info.qtype, 28);
        assert_eq!(info.qclass, 1);
        assert_eq!(
            info.edns,
            Some(Edns {
                udp_size: 1400,
                dnssec_ok: true
            })
        );
        let mut text = String::new();
        name_to_text(info.qname(&q), &mut text);
        assert_eq!(text, "www.example.com");
        assert_eq!(info.udp_limit(), 1400);
    }

    #[test]
    fn refuses_malformed_queries() {
        assert!(matches!(parse_query(&[0; 5]), Err(QueryError::Drop(_))));
        let mut q = query("a.example.", RecordType::A, false);
        q[2] |= 0x80;
        assert!(matches!(parse_query(&q), Err(QueryError::Drop(_))));
        let mut q = query("a.example.", RecordType::A, false);
        q[5] = 2;
        assert_eq!(
            parse_query(&q).unwrap_err(),
            QueryError::Reply(1, "question count is not 1")
        );
        let q = query("a.example.", RecordType::A, false);
        assert!(matches!(
            parse_query(&q[..q.len() - 2]),
            Err(QueryError::Reply(1, _))
        ));
        let mut q = query("a.example.", RecordType::A, false);
        q[2] |= 0x10; // opcode 2 (STATUS)
        assert!(matches!(parse_query(&q), Err(QueryError::Reply(4, _))));
        // A compression pointer in the question.
        let mut q = query("a.example.", RecordType::A, false);
        q[12] = 0xc0;
        assert!(matches!(parse_query(&q), Err(QueryError::Reply(1, _))));
    }

    #[test]
    fn name_text_escapes_dots_inside_labels() {
        let mut s = String::new();
        name_to_text(b"\x03a.b\x03COM\x00", &mut s);
        assert_eq!(s, "a\\046b.com");
        s.clear();
        name_to_text(b"\x00", &mut s);
        assert_eq!(s, "");
    }

    fn response() -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        let name = Name::from_str("host.example.").unwrap();
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        m.add_additional(Record::from_rdata(
            name,
            90,
            RData::AAAA(AAAA::from_str("2001:db8::1").unwrap()),
        ));
        m.set_edns(HEdns::new());
        m.to_vec().unwrap()
    }

    #[test]
    fn scans_a_response_and_patches_ttls() {
        let r = response();
        let info = scan_response(&r).unwrap();
        assert_eq!(info.rcode, 0);
        assert_eq!(info.ttl_offsets.len(), 3);
        assert_eq!(info.min_answer_ttl, Some(60));
        assert!(info.has_qtype_answer);
        assert_eq!(info.answer_ips.len(), 2);

        let mut q = query("host.example.", RecordType::A, false);
        // hickory lowercases names it encodes; write the client's case by hand.
        q[13..17].copy_from_slice(b"HOST");
        let qi = parse_query(&q).unwrap();
        let mut out = Vec::new();
        patch_answer(
            &r,
            info.ttl_offsets.iter().copied(),
            &q,
            &qi,
            |t| t.saturating_sub(10),
            &mut out,
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.queries[0].name().to_string(), "HOST.example.");
        let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![290, 50]);
        assert_eq!(m.additionals[0].ttl, 80);
        assert!(m.edns.is_some());
    }

    #[test]
    fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let zone = Name::from_str("example.").unwrap();
        m.add_query(Query::query(
            Name::from_str("nope.example.").unwrap(),
            RecordType::A,
        ));
        let soa = SOA::new(
            Name::from_str("ns.example.").unwrap(),
            Name::from_str("admin.example.").unwrap(),
            1,
            3600,
            600,
            86400,
            120,
        );
        m.add_authority(Record::from_rdata(zone, 900, RData::SOA(soa)));
        let r = m.to_vec().unwrap();
        let info = scan_response(&r).unwrap();
        assert_eq!(info.rcode, 3);
        assert_eq!(info.negative_ttl, Some(120));
        assert_eq!(info.min_answer_ttl, None);
        assert_eq!(
            info.soa_ttl_at.map(usize::from),
            Some(info.ttl_offsets[0] as usize)
        );
    }

    #[test]
    fn scan_rejects_truncated_and_bogus_responses() {
        let r = response();
        for cut in [5, 20, r.len() - 1] {
            assert!(scan_response(&r[..cut]).is_err(), "cut at {cut}");
        }
        let mut q = query("a.example.", RecordType::A, false);
        assert!(scan_response(&q).is_err());
        q[2] |= 0x80;
        q[7] = 1; // claims an answer that is not there
        assert!(scan_response(&q).is_err());
    }

    #[test]
    fn empty_and_truncated_replies_decode_as_hickory_expects() {
        let q = query("big.example.", RecordType::TXT, true);
        let info = parse_query(&q).unwrap();
        let mut out = Vec::new();
        empty_reply(&q, &info, rcode::NOERROR, &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert!(m.answers.is_empty());
        assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);

        let mut big = vec![0u8; 3000];
        big[..q.len()].copy_from_slice(&q);
        set_flags(&mut big, flag::QR);
        fit_udp(&mut big, &q, &info);
        let m = Message::from_vec(&big).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.queries.len(), 1);

        let mut out = Vec::new();
        header_only_reply(&q, rcode::FORMERR, &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 0x1234);
    }

    #[test]
    fn response_matching_checks_id_and_question() {
        let q = query("Host.Example.", RecordType::A, false);
        let info = parse_query(&q).unwrap();
        let r = response();
        assert!(response_matches(&r, 7, &q, &info));
        assert!(!response_matches(&r, 8, &q, &info));
        let (q2, info2) = with_qtype(&q, &info, 28);
        assert!(!response_matches(&r, 7, &q2, &info2));
    }
}
