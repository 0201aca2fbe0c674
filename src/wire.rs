//! DNS wire format on raw bytes: the few reads and patches the hot path needs.
//!
//! The controller never decodes a message into objects and encodes it again
//! on its way through: a query is checked and its question read in place
//! (`parse_query`) and the query sent upstream is rebuilt from its header and
//! question (`upstream_query`); an upstream answer is scanned once for the
//! offsets of its TTL fields and the facts the rules need (`scan_response`)
//! and made fit to share once (`normalize_answer`: its OPT record rebuilt
//! for the client, RA set, TTLs sane); replies are then built by copying
//! bytes and patching the id, the question's case, the TTLs and a few flag
//! bits. Every read is bounds-checked; malformed input gives an
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
    /// The four opcode bits (0 is QUERY).
    pub const OPCODE: u16 = 0x7800;
}

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended (RFC 6891): the upper 8 bits live in the OPT record.
    pub const BADVERS: u16 = 16;
}

/// EDNS option codes.
pub mod option {
    /// Extended DNS Error (RFC 8914).
    pub const EDE: u16 = 15;
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
    /// The EDNS version the client speaks (we speak 0 only).
    pub version: u8,
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
                version: (rr.ttl >> 16) as u8,
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
///
/// Runs for every query some rule needs the name of, so the text is built
/// in a stack buffer byte by byte and appended once.
pub fn name_to_text(wire_name: &[u8], out: &mut String) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    // Appends the buffer (ASCII only) when `need` more bytes would not fit.
    let flush = |buf: &[u8], n: &mut usize, need: usize, out: &mut String| {
        if *n + need > buf.len() {
            out.push_str(std::str::from_utf8(&buf[..*n]).unwrap_or_default());
            *n = 0;
        }
    };
    let mut at = 0;
    while let Some(&len) = wire_name.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        if at != 0 {
            flush(&buf, &mut n, 1, out);
            buf[n] = b'.';
            n += 1;
        }
        let label = wire_name
            .get(at + 1..at + 1 + usize::from(len))
            .unwrap_or(&[]);
        for &b in label {
            let c = b.to_ascii_lowercase();
            flush(&buf, &mut n, 4, out);
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                buf[n] = c;
                n += 1;
            } else {
                buf[n..n + 4].copy_from_slice(&[
                    b'\\',
                    b'0' + c / 100,
                    b'0' + c / 10 % 10,
                    b'0' + c % 10,
                ]);
                n += 4;
            }
        }
        at += 1 + usize::from(len);
    }
    out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
}

/// A question name shown as `name_to_text` writes it, formatted only when
/// shown: log lines on rare paths take this instead of a `String` built for
/// every query.
pub struct NameText<'a>(pub &'a [u8]);

impl std::fmt::Display for NameText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::new();
        name_to_text(self.0, &mut text);
        f.write_str(&text)
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
    /// Where the OPT record is, if the answer has one.
    pub opt: Option<OptPlace>,
    /// The upper 8 bits of the rcode, from the OPT record (0 without one).
    pub extended_rcode: u8,
}

/// Where an answer's OPT record lies (`normalize_answer` rebuilds it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptPlace {
    /// Its first byte (the owner name).
    pub at: u16,
    /// Its options.
    pub rdata_at: u16,
    /// Just past it.
    pub end: u16,
    /// Additional records before it.
    pub additional_before: u16,
}

/// RFC 2181 §8: a TTL with the top bit set is to be taken as zero.
#[inline]
pub fn sane_ttl(ttl: u32) -> u32 {
    if ttl >= 0x8000_0000 {
        0
    } else {
        ttl
    }
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
        for i in 0..count {
            let rr = read_rr(buf, at).ok_or(MalformedResponse("malformed record"))?;
            let start = at;
            at = rr.end;
            if rr.rtype == rtype::OPT {
                if section != 2 {
                    return Err(MalformedResponse(
                        "OPT record outside the additional section",
                    ));
                }
                if info.opt.is_some() {
                    return Err(MalformedResponse("more than one OPT record"));
                }
                // Offsets fit in u16: the message is at most 65535 bytes.
                info.opt = Some(OptPlace {
                    at: start as u16,
                    rdata_at: rr.rdata_at as u16,
                    end: rr.end as u16,
                    additional_before: i,
                });
                info.extended_rcode = (rr.ttl >> 24) as u8;
                continue;
            }
            info.ttl_offsets.push(rr.ttl_at as u16);
            let ttl = sane_ttl(rr.ttl);
            match section {
                0 => {
                    info.min_answer_ttl = Some(info.min_answer_ttl.map_or(ttl, |t| t.min(ttl)));
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
                    info.negative_ttl = Some(ttl.min(sane_ttl(minimum)));
                    info.soa_ttl_at = Some(rr.ttl_at as u16);
                }
                _ => {}
            }
        }
    }
    Ok(info)
}

/// Whether `resp` answers the query `query` (whose question is described by
/// `info`) and carries the id `id`: a response (QR) to a standard query
/// (opcode 0), the id, one question, same name (ignoring case), type and
/// class. Anything else is not an answer, and a forwarder keeps waiting for
/// one.
pub fn response_matches(resp: &[u8], id: u16, query: &[u8], info: &QueryInfo) -> bool {
    response_answers(resp, id, &query[HEADER_LEN..info.question_end])
}

/// Whether `resp`'s header makes it a response (QR) to a standard query
/// (opcode 0) of id `id`, with one question: what any answer must be before
/// its question is compared.
pub fn is_response_to(resp: &[u8], id: u16) -> bool {
    resp.len() >= HEADER_LEN
        && self::id(resp) == id
        && flags(resp) & (flag::QR | flag::OPCODE) == flag::QR
        && read_u16(resp, 4) == Some(1)
}

/// `response_matches` with the question given as its wire bytes (name,
/// type, class).
pub fn response_answers(resp: &[u8], id: u16, question: &[u8]) -> bool {
    let qend = HEADER_LEN + question.len();
    if resp.len() < qend || !is_response_to(resp, id) {
        return false;
    }
    // Upstreams echo the question as sent; the case-blind compare is for
    // those that do not.
    let echoed = &resp[HEADER_LEN..qend];
    echoed == question || echoed.eq_ignore_ascii_case(question)
}

/// The bytes of an OPT record without options.
const OPT_LEN: usize = 11;

/// Writes the fixed part of an OPT record at `at` (root name, `udp_size`,
/// the upper bits of `ext_rcode`, version 0, the DO bit; `rdlen` bytes of
/// options follow). `buf` must hold `OPT_LEN` bytes from `at`.
fn write_opt_head(
    buf: &mut [u8],
    at: usize,
    udp_size: u16,
    ext_rcode: u16,
    dnssec_ok: bool,
    rdlen: u16,
) {
    let o = &mut buf[at..at + OPT_LEN];
    o[0] = 0;
    o[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
    o[3..5].copy_from_slice(&udp_size.to_be_bytes());
    o[5] = (ext_rcode >> 4) as u8;
    o[6] = 0;
    o[7] = if dnssec_ok { 0x80 } else { 0 };
    o[8] = 0;
    o[9..11].copy_from_slice(&rdlen.to_be_bytes());
}

/// Appends an OPT record without options (see `write_opt_head`).
fn push_opt(out: &mut Vec<u8>, udp_size: u16, ext_rcode: u16, dnssec_ok: bool) {
    let at = out.len();
    out.resize(at + OPT_LEN, 0);
    write_opt_head(out, at, udp_size, ext_rcode, dnssec_ok, 0);
}

fn set_additional_count(buf: &mut [u8], n: u16) {
    buf[10..12].copy_from_slice(&n.to_be_bytes());
}

/// The query as it goes upstream, built afresh from what the client asked:
/// its id, RD set (we ask for recursion whatever the client said: the
/// answer is shared through the cache), its AD and CD bits, its question
/// as written, and, if it used EDNS, an OPT record of ours with its payload
/// size (at least 512) and DO bit and no options.
///
/// Nothing else of the client's message goes on: not records in other
/// sections, not its EDNS options (a COOKIE is between it and us, RFC 7873;
/// a client subnet or padding would make a shared answer one client's), not
/// bytes after its last record.
pub fn upstream_query(query: &[u8], info: &QueryInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(info.question_end + OPT_LEN);
    out.extend_from_slice(&query[..info.question_end]);
    set_flags(&mut out, flag::RD | (info.flags & (flag::AD | flag::CD)));
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if let Some(e) = info.edns {
        let size = e.udp_size.max(CLASSIC_UDP_PAYLOAD as u16);
        push_opt(&mut out, size, 0, e.dnssec_ok);
        set_additional_count(&mut out, 1);
    }
    out
}

/// Makes an upstream answer fit to be shared (cached, and sent to every
/// client whose query has the same cache key, which says whether the
/// client used EDNS and its DO bit), once, when it arrives:
/// - RA set: to its clients dae is a recursive service;
/// - every TTL of 2^31 or more set to 0 (RFC 2181 §8);
/// - the OPT record rebuilt for `edns`, the client's: none if it sent none,
///   else ours (our payload size, version 0, its DO bit) with only the
///   upstream's Extended DNS Error options (RFC 8914), which describe the
///   answer. The upstream's other options (its COOKIE, NSID, padding, ...)
///   belong to its exchange with us and never reach a client (RFC 7873
///   §5.3). Records after the OPT record (additional data; servers put the
///   OPT record last) go with it.
///
/// `scan` (of this `packet`) follows the changes. A cache hit then copies
/// the result as it is.
pub fn normalize_answer(packet: &mut Vec<u8>, scan: &mut ResponseInfo, edns: Option<Edns>) {
    let f = flags(packet) | flag::RA;
    set_flags(packet, f);
    for &at in &scan.ttl_offsets {
        let at = usize::from(at);
        if let Some(ttl) = read_u32(packet, at) {
            set_ttl(packet, at, sane_ttl(ttl));
        }
    }
    let Some(opt) = scan.opt.take() else {
        if let Some(e) = edns {
            push_opt(packet, OUR_UDP_PAYLOAD, 0, e.dnssec_ok);
            let n = read_u16(packet, 10).unwrap_or(0);
            set_additional_count(packet, n.wrapping_add(1));
        }
        return;
    };
    let (at, rdata_at, end) = (
        usize::from(opt.at),
        usize::from(opt.rdata_at),
        usize::from(opt.end),
    );
    scan.ttl_offsets.retain(|&o| usize::from(o) < at);
    let Some(e) = edns else {
        packet.truncate(at);
        set_additional_count(packet, opt.additional_before);
        return;
    };
    // Our fixed part is no longer than the upstream's (whose owner name is
    // at least one byte), and the options kept move down in place.
    let mut kept = at + OPT_LEN;
    let mut r = rdata_at;
    while r + 4 <= end {
        let code = read_u16(packet, r).unwrap_or(0);
        let next = r + 4 + usize::from(read_u16(packet, r + 2).unwrap_or(0));
        if next > end {
            break;
        }
        if code == option::EDE {
            packet.copy_within(r..next, kept);
            kept += next - r;
        }
        r = next;
    }
    let rdlen = (kept - at - OPT_LEN) as u16;
    write_opt_head(packet, at, OUR_UDP_PAYLOAD, 0, e.dnssec_ok, rdlen);
    packet.truncate(kept);
    set_additional_count(packet, opt.additional_before + 1);
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
        push_opt(out, OUR_UDP_PAYLOAD, 0, edns.dnssec_ok);
        set_additional_count(out, 1);
    }
}

/// The answer to a query of an EDNS version we do not speak (RFC 6891
/// §6.1.3): its header and question, no records, and our OPT record
/// (version 0) carrying the extended rcode BADVERS.
pub fn badvers_reply(query: &[u8], info: &QueryInfo, out: &mut Vec<u8>) {
    let dnssec_ok = info.edns.is_some_and(|e| e.dnssec_ok);
    empty_reply(query, info, (rcode::BADVERS & 0x0f) as u8, out);
    out.truncate(info.question_end);
    push_opt(out, OUR_UDP_PAYLOAD, rcode::BADVERS, dnssec_ok);
    set_additional_count(out, 1);
}

/// A reply for a query whose question could not be read: the header only,
/// no question.
pub fn header_only_reply(query: &[u8], rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&query[..HEADER_LEN]);
    let f = flags(query);
    let f =
        flag::QR | (f & (flag::OPCODE | flag::RD | flag::CD)) | flag::RA | u16::from(rcode & 0x0f);
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
                dnssec_ok: true,
                version: 0,
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
    fn name_text_copies_plain_labels_and_escapes_the_rest_byte_by_byte() {
        // The byte-by-byte reading of the rule, against the fast path.
        fn reference(wire_name: &[u8]) -> String {
            let mut out = String::new();
            let mut at = 0;
            while let Some(&len) = wire_name.get(at) {
                if len == 0 || len > 63 {
                    break;
                }
                if at != 0 {
                    out.push('.');
                }
                let end = (at + 1 + usize::from(len)).min(wire_name.len());
                for &b in &wire_name[at + 1..end.max(at + 1)] {
                    let c = b.to_ascii_lowercase();
                    if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                        out.push(char::from(c));
                    } else {
                        out.push_str(&format!("\\{c:03}"));
                    }
                }
                at += 1 + usize::from(len);
            }
            out
        }
        let alphabet = b"aZ09-_.\\ \xc3\xa9\xff\x00";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let mut name = Vec::new();
            // Up to 6 labels of up to 63 bytes: escaped, past the buffer.
            for _ in 0..next(7) {
                let len = 1 + next(63);
                name.push(len as u8);
                for _ in 0..len {
                    name.push(alphabet[next(alphabet.len())]);
                }
            }
            name.push(0);
            let mut got = String::new();
            name_to_text(&name, &mut got);
            assert_eq!(got, reference(&name), "{name:?}");
            assert_eq!(NameText(&name).to_string(), got);
        }
        let mut s = String::from("kept ");
        name_to_text(b"\x03WwW\x07Example\x03CoM\x00", &mut s);
        assert_eq!(s, "kept www.example.com");
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

    /// An OPT record as an upstream might send it: payload size 4096, the
    /// given extended rcode and DO bit, and these options.
    fn opt_record(ext_rcode: u8, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut rdata = Vec::new();
        for (code, data) in options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        let mut r = vec![
            0,
            0,
            41,
            0x10,
            0x00,
            ext_rcode,
            0,
            u8::from(dnssec_ok) << 7,
            0,
        ];
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
        r
    }

    const COOKIE: u16 = 10;
    const NSID: u16 = 3;
    const PADDING: u16 = 12;

    /// `response()` without its OPT record, then `opt` and `after` appended
    /// as additional records.
    fn response_with(opt: &[u8], after: &[u8], after_count: u16) -> Vec<u8> {
        let mut r = response();
        let scan = scan_response(&r).unwrap();
        r.truncate(usize::from(scan.opt.unwrap().at));
        r.extend_from_slice(opt);
        r.extend_from_slice(after);
        let ar = read_u16(&r, 10).unwrap() - 1 + u16::from(!opt.is_empty()) + after_count;
        r[10..12].copy_from_slice(&ar.to_be_bytes());
        r
    }

    fn edns(dnssec_ok: bool) -> Option<Edns> {
        Some(Edns {
            udp_size: 4096,
            dnssec_ok,
            version: 0,
        })
    }

    #[test]
    fn shared_answers_carry_our_opt_with_only_the_upstreams_ede() {
        let ede: &[u8] = b"\x00\x11filtered";
        let opt = opt_record(
            0,
            false,
            &[
                (COOKIE, &[7; 24]),
                (NSID, b"up-1"),
                (option::EDE, ede),
                (PADDING, &[0; 40]),
            ],
        );
        let mut r = response_with(&opt, &[], 0);
        let mut scan = scan_response(&r).unwrap();
        normalize_answer(&mut r, &mut scan, edns(true));
        let m = Message::from_vec(&r).unwrap();
        let e = m.edns.as_ref().expect("an OPT record");
        assert_eq!(e.max_payload(), OUR_UDP_PAYLOAD);
        assert!(e.flags().dnssec_ok, "the client's DO bit");
        assert_eq!((e.version(), e.rcode_high()), (0, 0));
        assert_eq!(m.additionals.len(), 1, "the AAAA record stays");
        // The OPT record is last, and its options are the EDE alone.
        let mut want = opt_record(0, true, &[(option::EDE, ede)]);
        want[3..5].copy_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
        assert!(r.ends_with(&want), "{:02x?}", &r[r.len() - want.len()..]);
        assert_eq!(scan.opt, None);
        assert!(scan.ttl_offsets.iter().all(|&o| usize::from(o) < r.len()));
        assert!(flags(&r) & flag::RA != 0);

        // A client without EDNS gets no OPT record at all.
        let mut r = response_with(&opt, &[], 0);
        let mut scan = scan_response(&r).unwrap();
        normalize_answer(&mut r, &mut scan, None);
        let m = Message::from_vec(&r).unwrap();
        assert!(m.edns.is_none());
        assert_eq!(read_u16(&r, 10), Some(1));
        assert_eq!(scan_response(&r).unwrap().ttl_offsets, scan.ttl_offsets);

        // An upstream that sent none: the EDNS client gets ours.
        let mut r = response_with(&[], &[], 0);
        let mut scan = scan_response(&r).unwrap();
        normalize_answer(&mut r, &mut scan, edns(false));
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), OUR_UDP_PAYLOAD);
        assert!(m.edns.as_ref().unwrap().options().as_ref().is_empty());
    }

    #[test]
    fn records_after_the_opt_record_go_with_it() {
        let opt = opt_record(0, false, &[(COOKIE, &[1; 8])]);
        // An A record for the question's name (a pointer to offset 12).
        let after = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 9];
        let mut r = response_with(&opt, &after, 1);
        let mut scan = scan_response(&r).unwrap();
        assert_eq!(scan.ttl_offsets.len(), 4);
        normalize_answer(&mut r, &mut scan, edns(false));
        let again = scan_response(&r).unwrap();
        assert_eq!(scan.ttl_offsets, again.ttl_offsets);
        assert_eq!(scan.ttl_offsets.len(), 3);
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.additionals.len(), 1);
        assert!(m.edns.unwrap().options().as_ref().is_empty());
    }

    #[test]
    fn upstream_query_is_the_question_and_a_plain_opt() {
        let q = query("host.example.", RecordType::A, false);
        let mut client = q.clone();
        client[2] = 0x01; // RD only
        client[3] |= flag::CD as u8;
        client.extend_from_slice(&opt_record(
            0,
            true,
            &[(COOKIE, &[9; 8]), (8, &[0, 1, 24, 0, 192, 0, 2])],
        ));
        client[11] = 1;
        let trailing = b"junk after the last record";
        client.extend_from_slice(trailing);
        let info = parse_query(&client).unwrap();
        let up = upstream_query(&client, &info);
        let mut want = q[..info.question_end].to_vec();
        want[3] = flag::CD as u8;
        want[11] = 1;
        want.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        assert_eq!(up, want);
        let back = parse_query(&up).unwrap();
        assert_eq!(back.edns, info.edns);
        assert_eq!(back.question_end, info.question_end);

        // RD=0 from the client: we still ask for recursion. No EDNS: no OPT.
        let mut plain = q.clone();
        plain[2] = 0;
        plain.extend_from_slice(trailing);
        let info = parse_query(&plain).unwrap();
        let up = upstream_query(&plain, &info);
        assert_eq!(up.len(), info.question_end);
        assert_eq!(flags(&up), flag::RD);
        assert_eq!(&up[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ttls_with_the_top_bit_set_count_as_zero() {
        let mut r = response();
        let scan = scan_response(&r).unwrap();
        set_ttl(&mut r, usize::from(scan.ttl_offsets[1]), 0x8000_0000);
        set_ttl(&mut r, usize::from(scan.ttl_offsets[2]), u32::MAX);
        let mut scan = scan_response(&r).unwrap();
        assert_eq!(scan.min_answer_ttl, Some(0));
        normalize_answer(&mut r, &mut scan, None);
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.answers[0].ttl, 300);
        assert_eq!(m.answers[1].ttl, 0);
        assert_eq!(m.additionals[0].ttl, 0);
    }

    #[test]
    fn other_edns_versions_get_badvers() {
        let mut q = query("host.example.", RecordType::A, true);
        let opt = q.len() - 11;
        q[opt + 6] = 1; // version 1
        let info = parse_query(&q).unwrap();
        assert_eq!(info.edns.map(|e| e.version), Some(1));
        let mut out = Vec::new();
        badvers_reply(&q, &info, &mut out);
        assert_eq!(rcode_of(&out), 0, "BADVERS is 16: its low bits are 0");
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        let opt = &out[info.question_end..];
        assert_eq!(opt.len(), 11);
        assert_eq!(read_u16(opt, 1), Some(rtype::OPT));
        assert_eq!((opt[5], opt[6]), (1, 0), "extended rcode 1 << 4, version 0");
        assert_eq!(opt[7] & 0x80, 0x80, "the client's DO bit");
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code.high(), 1);
    }

    #[test]
    fn only_responses_to_standard_queries_are_answers() {
        let q = query("host.example.", RecordType::A, false);
        let info = parse_query(&q).unwrap();
        let r = response();
        assert!(response_matches(&r, 7, &q, &info));
        let mut notify = r.clone();
        notify[2] |= 4 << 3; // opcode 4 (NOTIFY)
        assert!(!response_matches(&notify, 7, &q, &info));
        let mut status = r.clone();
        status[2] |= 2 << 3;
        assert!(!response_matches(&status, 7, &q, &info));
        let mut query_bit = r.clone();
        query_bit[2] &= 0x7f;
        assert!(!response_matches(&query_bit, 7, &q, &info));
        let mut other_name = r.clone();
        other_name[13] = b'g';
        assert!(!response_matches(&other_name, 7, &q, &info));
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
