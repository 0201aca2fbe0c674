//! The server name in a QUIC client's Initial packets (QUIC versions 1 and
//! 2, RFC 9000, 9001 and 9369).
//!
//! Initial packets are encrypted with keys anyone can derive from the
//! packet's Destination Connection ID, so an on-path router can read them:
//! derive the client's Initial keys (HKDF with the version's salt), remove
//! header protection (AES-128 mask), decrypt the payload (AES-128-GCM),
//! read the frames and put the CRYPTO frames' bytes together by offset. The
//! CRYPTO stream starts with the ClientHello, which `tls::client_hello`
//! reads. A hello with post-quantum key shares often spans two Initial
//! packets, in one datagram (coalesced) or two, which may arrive in either
//! order: one `QuicSniffer` per flow keeps the stream across datagrams,
//! bounded by `MAX_DATAGRAMS` and `MAX_CRYPTO`.

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf;

use super::{tls, Reader, Sniffed};

const VERSION_1: u32 = 1;
const VERSION_2: u32 = 0x6b33_43cf;
/// RFC 9001 section 5.2.
const SALT_1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 section 3.3.1.
const SALT_2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// RFC 9000 section 17.2: connection ids are at most 20 bytes in v1 and v2.
const CID_MAX: usize = 20;

/// Datagrams a flow may take to show its ClientHello before we give up.
pub const MAX_DATAGRAMS: usize = 4;
/// The most CRYPTO stream we keep: a ClientHello with post-quantum key
/// shares is about 1.3 to 2 KB.
pub const MAX_CRYPTO: usize = 8 * 1024;

/// The client's Initial packet protection secrets (RFC 9001 section 5.2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InitialSecrets {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// Derives the client's Initial secrets for a version from the
/// Destination Connection ID of its first Initial; None for versions other
/// than 1 and 2.
pub(crate) fn client_initial_secrets(version: u32, dcid: &[u8]) -> Option<InitialSecrets> {
    let (salt, labels) = match version {
        VERSION_1 => (&SALT_1, ["quic key", "quic iv", "quic hp"]),
        VERSION_2 => (&SALT_2, ["quicv2 key", "quicv2 iv", "quicv2 hp"]),
        _ => return None,
    };
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
    let mut client = [0; 32];
    expand_label(&initial, "client in", &mut client);
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
    let mut secrets = InitialSecrets {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&client, labels[0], &mut secrets.key);
    expand_label(&client, labels[1], &mut secrets.iv);
    expand_label(&client, labels[2], &mut secrets.hp);
    Some(secrets)
}

/// TLS 1.3's HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &str, out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info = [&length[..], &label_len, b"tls13 ", label.as_bytes(), &[0]];
    // Fails only past 255 hash lengths; ours are at most one.
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-Expand of at most 32 bytes");
}

/// The keys of one connection's client Initials.
struct InitialKeys {
    version: u32,
    dcid: Vec<u8>,
    payload: LessSafeKey,
    header: HeaderProtectionKey,
    iv: [u8; 12],
}

impl InitialKeys {
    fn new(version: u32, dcid: &[u8]) -> Option<Self> {
        let secrets = client_initial_secrets(version, dcid)?;
        Some(InitialKeys {
            version,
            dcid: dcid.to_vec(),
            payload: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &secrets.key).ok()?),
            header: HeaderProtectionKey::new(&AES_128, &secrets.hp).ok()?,
            iv: secrets.iv,
        })
    }
}

/// Sniffs one datagram on its own: a ClientHello that fits one datagram.
pub fn sniff_datagram(datagram: &[u8]) -> Sniffed {
    QuicSniffer::default().feed(datagram)
}

/// One UDP flow's sniffing state: the client's CRYPTO stream so far.
#[derive(Default)]
pub struct QuicSniffer {
    datagrams: usize,
    /// Whether any datagram held a client Initial we could open.
    opened: bool,
    /// Whether the flow showed it is not one we can read.
    failed: bool,
    keys: Option<InitialKeys>,
    /// The CRYPTO stream by offset, and which of its bytes arrived.
    crypto: Vec<u8>,
    arrived: Vec<bool>,
}

impl QuicSniffer {
    /// Feeds the flow's next datagram from the client.
    pub fn feed(&mut self, datagram: &[u8]) -> Sniffed {
        self.datagrams += 1;
        if self.failed || self.datagrams > MAX_DATAGRAMS {
            self.failed = true;
            return Sniffed::NotThis;
        }
        let mut datagram = datagram.to_vec();
        let mut rest = &mut datagram[..];
        while let Some(len) = self.packet(rest) {
            rest = &mut rest[len..];
        }
        let contiguous = self
            .arrived
            .iter()
            .position(|&a| !a)
            .unwrap_or(self.arrived.len());
        match tls::client_hello(&self.crypto[..contiguous]) {
            Sniffed::NeedMore if self.opened && !self.failed && self.datagrams < MAX_DATAGRAMS => {
                Sniffed::NeedMore
            }
            Sniffed::Domain(name) if !self.failed => Sniffed::Domain(name),
            _ => {
                self.failed = true;
                Sniffed::NotThis
            }
        }
    }

    /// Reads the long-header packet at the start of `buf`, opening it if it
    /// is an Initial; its length, or None when no packet we can delimit
    /// starts there.
    fn packet(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut r = Reader::new(buf);
        let first = r.u8()?;
        if first & 0x80 == 0 {
            return None; // a short header: the handshake is past its Initials
        }
        let version = r.u32()?;
        let dcid_len = r.vec8()?.len();
        let scid_len = r.vec8()?.len();
        if dcid_len > CID_MAX || scid_len > CID_MAX {
            return None;
        }
        // Long packet types (RFC 9000 17.2, RFC 9369 3.2): Initial, Retry.
        let kind = (first >> 4) & 3;
        let (initial, retry) = match version {
            VERSION_1 => (0, 3),
            VERSION_2 => (1, 0),
            _ => return None,
        };
        if kind == retry {
            return None;
        }
        if kind == initial {
            let token = r.varint()?;
            r.bytes(usize::try_from(token).ok()?)?;
        }
        let len = usize::try_from(r.varint()?).ok()?;
        let pn_offset = buf.len() - r.remaining();
        let end = pn_offset.checked_add(len).filter(|&end| end <= buf.len())?;
        if kind == initial {
            let dcid = &buf[6..6 + dcid_len];
            let cached = self
                .keys
                .as_ref()
                .is_some_and(|k| k.version == version && k.dcid == dcid);
            if !cached {
                self.keys = InitialKeys::new(version, dcid);
            }
            if let Some(plaintext) = self.open(&mut buf[..end], pn_offset) {
                self.opened = true;
                self.frames(plaintext);
            }
        }
        Some(end)
    }

    /// Removes header protection and decrypts an Initial packet in place;
    /// its frames, or None when it does not open with the client's keys.
    fn open<'p>(&self, packet: &'p mut [u8], pn_offset: usize) -> Option<&'p [u8]> {
        let keys = self.keys.as_ref()?;
        // The sample starts 4 bytes after the packet number's start.
        let sample = packet.get(pn_offset + 4..pn_offset + 4 + 16)?;
        let mask = keys.header.new_mask(sample).ok()?;
        let first = packet[0] ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 3) + 1;
        packet[0] = first;
        let mut pn = 0u64;
        for (byte, mask) in packet[pn_offset..pn_offset + pn_len]
            .iter_mut()
            .zip(&mask[1..])
        {
            *byte ^= mask;
            pn = pn << 8 | u64::from(*byte);
        }
        // A client's first Initials number from 0, so the truncated packet
        // number is the packet number.
        let mut nonce = keys.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let (header, payload) = packet.split_at_mut(pn_offset + pn_len);
        let nonce = Nonce::assume_unique_for_key(nonce);
        let plaintext = keys
            .payload
            .open_in_place(nonce, Aad::from(&*header), payload)
            .ok()?;
        // Reserved bits must be zero once the packet opened (RFC 9000 17.2).
        (first & 0x0c == 0).then_some(&*plaintext)
    }

    /// Reads an Initial's frames, keeping the CRYPTO data. A frame cut
    /// short, or one an Initial may not carry, fails the flow.
    fn frames(&mut self, plaintext: &[u8]) {
        let mut r = Reader::new(plaintext);
        while !r.is_empty() {
            let read = match r.varint() {
                Some(0x00 | 0x01) => Some(()), // PADDING, PING
                Some(kind @ (0x02 | 0x03)) => ack(&mut r, kind == 0x03),
                Some(0x06) => crypto(&mut r).map(|(offset, data)| self.crypto_data(offset, data)),
                // CONNECTION_CLOSE (0x1c) ends the attempt; other frames
                // may not be in an Initial (RFC 9000 section 12.4).
                _ => None,
            };
            if read.is_none() {
                self.failed = true;
                return;
            }
        }
    }

    fn crypto_data(&mut self, offset: u64, data: &[u8]) {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(end) = start
            .checked_add(data.len())
            .filter(|&end| end <= MAX_CRYPTO)
        else {
            self.failed = true; // a hello larger than we keep
            return;
        };
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
            self.arrived.resize(end, false);
        }
        self.crypto[start..end].copy_from_slice(data);
        self.arrived[start..end].fill(true);
    }
}

/// Skips an ACK frame's fields after its type.
fn ack(r: &mut Reader, ecn: bool) -> Option<()> {
    r.varint()?; // largest acknowledged
    r.varint()?; // delay
    let ranges = r.varint()?;
    r.varint()?; // first range
                 // Each range takes at least 2 bytes, so a bogus count ends at the end.
    for _ in 0..ranges {
        r.varint()?;
        r.varint()?;
    }
    if ecn {
        r.varint()?;
        r.varint()?;
        r.varint()?;
    }
    Some(())
}

/// A CRYPTO frame's offset and data.
fn crypto<'a>(r: &mut Reader<'a>) -> Option<(u64, &'a [u8])> {
    let offset = r.varint()?;
    let len = r.varint()?;
    Some((offset, r.bytes(usize::try_from(len).ok()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::tls::tests::{hello, sni};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 appendix A.2: the client Initial's CRYPTO frame (a
    /// ClientHello for example.com); PADDING fills the payload to 1162.
    const A2_CRYPTO_FRAME: &str = concat!(
        "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868",
        "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578",
        "616d706c652e636f6dff01000100000a00080006001d00170018001000070005",
        "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba",
        "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400",
        "0d0010000e0403050306030203080408050806002d00020101001c0002400100",
        "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000",
        "75300901100f088394c8f03e51570806048000ffff",
    );

    /// RFC 9001 appendix A.2: the protected client Initial.
    const A2_PACKET: &str = concat!(
        "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11",
        "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399",
        "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c",
        "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212",
        "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5",
        "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208",
        "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec",
        "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3",
        "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db",
        "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c",
        "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8",
        "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556",
        "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74",
        "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a",
        "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00",
        "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632",
        "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964",
        "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd",
        "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff",
        "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198",
        "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd",
        "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73",
        "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f",
        "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e",
        "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade",
        "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047",
        "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2",
        "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4",
        "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0",
        "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e",
        "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0",
        "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400",
        "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab",
        "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9",
        "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4",
        "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064",
        "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241",
        "e221af44860018ab0856972e194cd934",
    );

    /// RFC 9369 appendix A.2: the same Initial in QUIC version 2.
    const V2_PACKET: &str = concat!(
        "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485",
        "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04",
        "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d",
        "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a",
        "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500",
        "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68",
        "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33",
        "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3",
        "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd",
        "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520",
        "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045",
        "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f",
        "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12",
        "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5",
        "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4",
        "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b",
        "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7",
        "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9",
        "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91",
        "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd",
        "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db",
        "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18",
        "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15",
        "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc",
        "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61",
        "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710",
        "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b",
        "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e",
        "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce",
        "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1",
        "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1",
        "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd",
        "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3",
        "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89",
        "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53",
        "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19",
        "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b",
        "a18b2faa745b6fe189cf772a9f84cbfc",
    );

    #[test]
    fn initial_secrets_of_rfc9001_and_rfc9369() {
        // RFC 9001 appendix A.1.
        let v1 = client_initial_secrets(VERSION_1, &hex(DCID)).unwrap();
        assert_eq!(v1.key[..], hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(v1.iv[..], hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(v1.hp[..], hex("9f50449e04a0e810283a1e9933adedd2"));
        // RFC 9369 appendix A.1.
        let v2 = client_initial_secrets(VERSION_2, &hex(DCID)).unwrap();
        assert_eq!(v2.key[..], hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(v2.iv[..], hex("91f73e2351d8fa91660e909f"));
        assert_eq!(v2.hp[..], hex("45b95e15235d6f45a6b19cbcb0294ba9"));
        assert_eq!(client_initial_secrets(0xff00_001d, &hex(DCID)), None);
    }

    #[test]
    fn the_client_initials_of_rfc9001_and_rfc9369() {
        for packet in [A2_PACKET, V2_PACKET] {
            let packet = hex(packet);
            assert_eq!(packet.len(), 1200);
            assert_eq!(
                sniff_datagram(&packet),
                Sniffed::Domain("example.com".into())
            );
            // Every prefix and every single flipped byte: never a name.
            for cut in 0..packet.len() {
                assert_eq!(
                    sniff_datagram(&packet[..cut]),
                    Sniffed::NotThis,
                    "cut {cut}"
                );
            }
            for at in 0..packet.len() {
                let mut bad = packet.clone();
                bad[at] ^= 0x10;
                // A flip anywhere changes the keys, the header (the AEAD's
                // associated data) or the ciphertext.
                assert_eq!(sniff_datagram(&bad), Sniffed::NotThis, "flip at {at}");
            }
        }
    }

    /// Protects a client Initial the way a client does (RFC 9001 sections
    /// 5.3 and 5.4); checked against the RFC's sample below.
    fn initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        let keys = InitialKeys::new(version, dcid).unwrap();
        let kind = if version == VERSION_2 { 1 } else { 0 };
        let mut header = vec![0xc3 | kind << 4];
        header.extend(version.to_be_bytes());
        header.push(dcid.len() as u8);
        header.extend(dcid);
        header.extend([0, 0]); // no source connection id, no token
        let len = 4 + frames.len() + 16;
        header.extend((0x4000 | len as u16).to_be_bytes());
        header.extend(pn.to_be_bytes());
        let mut nonce = keys.iv;
        for (n, p) in nonce[8..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let mut body = frames.to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce);
        let tag = keys
            .payload
            .seal_in_place_separate_tag(nonce, Aad::from(&header), &mut body)
            .unwrap();
        let pn_offset = header.len() - 4;
        let mut packet = [header, body, tag.as_ref().to_vec()].concat();
        let mask = keys
            .header
            .new_mask(&packet[pn_offset + 4..pn_offset + 20])
            .unwrap();
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_offset + i] ^= mask[1 + i];
        }
        packet
    }

    fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x06];
        frame.extend((0x8000_0000 | offset as u32).to_be_bytes());
        frame.extend((0x4000 | data.len() as u16).to_be_bytes());
        frame.extend(data);
        frame
    }

    #[test]
    fn the_test_protection_matches_the_rfc() {
        for (version, packet) in [(VERSION_1, A2_PACKET), (VERSION_2, V2_PACKET)] {
            let mut frames = hex(A2_CRYPTO_FRAME);
            frames.resize(1162, 0);
            assert_eq!(initial(version, &hex(DCID), 2, &frames), hex(packet));
        }
    }

    /// A hello of about 3 KB (like one with several post-quantum key
    /// shares) in three Initials.
    fn split_hello(version: u32) -> Vec<Vec<u8>> {
        let msg = hello(&[sni(b"Split.Example"), (0xfe02, vec![0x5a; 3000])]);
        let dcid = [0x42; 8];
        let mut packets = Vec::new();
        for (n, part) in msg.chunks(1100).enumerate() {
            // An ACK and a PING before the data, PADDING after it.
            let mut frames = vec![0x02, 0, 0, 0, 0, 0x01];
            frames.extend(crypto_frame(n * 1100, part));
            frames.resize(1150, 0);
            packets.push(initial(version, &dcid, n as u32, &frames));
        }
        assert_eq!(packets.len(), 3);
        packets
    }

    #[test]
    fn a_hello_over_several_initials_in_any_order() {
        let name = Sniffed::Domain("split.example".into());
        for version in [VERSION_1, VERSION_2] {
            let packets = split_hello(version);
            for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
                let mut sniffer = QuicSniffer::default();
                assert_eq!(sniffer.feed(&packets[order[0]]), Sniffed::NeedMore);
                assert_eq!(sniffer.feed(&packets[order[1]]), Sniffed::NeedMore);
                assert_eq!(sniffer.feed(&packets[order[2]]), name, "order {order:?}");
            }
            // Coalesced in one datagram, and a repeat of a packet is harmless.
            assert_eq!(sniff_datagram(&packets.concat()), name);
            let mut sniffer = QuicSniffer::default();
            assert_eq!(
                sniffer.feed(&[&packets[0][..], &packets[0]].concat()),
                Sniffed::NeedMore
            );
            assert_eq!(sniffer.feed(&[&packets[1][..], &packets[2]].concat()), name);
        }
    }

    #[test]
    fn bounded_in_datagrams_and_crypto_bytes() {
        let packets = split_hello(VERSION_1);
        let mut sniffer = QuicSniffer::default();
        for _ in 1..MAX_DATAGRAMS {
            assert_eq!(sniffer.feed(&packets[0]), Sniffed::NeedMore);
        }
        assert_eq!(sniffer.feed(&packets[1]), Sniffed::NotThis);
        assert_eq!(sniffer.feed(&packets[2]), Sniffed::NotThis);

        let far = initial(
            VERSION_1,
            &[1; 8],
            0,
            &crypto_frame(MAX_CRYPTO - 10, &[0; 11]),
        );
        assert_eq!(sniff_datagram(&far), Sniffed::NotThis);
        let near = initial(
            VERSION_1,
            &[1; 8],
            0,
            &crypto_frame(MAX_CRYPTO - 10, &[0; 10]),
        );
        assert_eq!(sniff_datagram(&near), Sniffed::NeedMore);
    }

    #[test]
    fn other_packets_are_not_this() {
        let packet = &split_hello(VERSION_1)[0];
        // A short header; an unknown version; a server's Initial (opens
        // with other keys); a frame an Initial may not carry (STREAM).
        let mut short = packet.clone();
        short[0] &= 0x7f;
        let mut unknown = packet.clone();
        unknown[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        let stream = initial(
            VERSION_1,
            &[1; 8],
            0,
            &[[0x08, 0, 1, 0x61].as_slice(), &crypto_frame(0, &[1; 8])].concat(),
        );
        for datagram in [short, unknown, stream, b"\x00\x01\x02".to_vec(), Vec::new()] {
            assert_eq!(sniff_datagram(&datagram), Sniffed::NotThis);
        }
        // A ClientHello that is not one: NotThis once its bytes are in.
        let mut not_hello = hello(&[sni(b"a.example")]);
        not_hello[0] = 2;
        assert_eq!(
            sniff_datagram(&initial(
                VERSION_1,
                &[1; 8],
                0,
                &crypto_frame(0, &not_hello)
            )),
            Sniffed::NotThis
        );
    }
}
