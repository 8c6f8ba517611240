//! SDES keys (RFC 4568 `a=crypto`) and a thin SRTP/SRTCP wrapper over webrtc-srtp contexts.
//! Only AES_CM_128_HMAC_SHA1_80 is used by the C300X (c300x-protocol.md §4.1, §4.3); one
//! `SrtpSession` per direction per medium. Parsing is tolerant: lifetime/MKI suffixes are ignored.
//! Inbound, a state gate: webrtc-srtp creates per-SSRC state before it authenticates, so packets
//! of an SSRC not yet seen are checked on a throw-away probe context first; only SSRCs that
//! authenticate (at most [`MAX_SSRCS`]) get state, and a forged flood leaves memory flat.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The one crypto suite the C300X offers and accepts.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
/// Master key + master salt of AES_CM_128: 16 + 14 bytes.
pub const KEY_LEN: usize = 16;
pub const SALT_LEN: usize = 14;
/// AES_CM_128_HMAC_SHA1_80 authentication tag, RTP and RTCP fixed headers, SRTCP E|index word.
const TAG_LEN: usize = 10;
const RTP_HEADER: usize = 12;
const RTCP_HEADER: usize = 8;
const SRTCP_INDEX: usize = 4;
/// Replay window, as the libsrtp 1.x policy the intercom uses (c300x-protocol.md §4.3).
const REPLAY_WINDOW: usize = 128;
/// SSRCs one inbound session keeps state for, per RTP and RTCP (a call has one per medium; a
/// re-INVITE may bring another).
pub const MAX_SSRCS: usize = 8;
/// Failed probes after which the probe context, which keeps state for every SSRC it saw, is
/// dropped and rebuilt: this bounds it to that many entries.
const PROBE_RESET: u32 = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("a=crypto `{0}`: expected `<tag> <suite> inline:<key>`")]
    Syntax(String),
    #[error("a=crypto suite `{0}` is not supported (only {SUITE})")]
    Suite(String),
    #[error("a=crypto key `{0}` is not base64")]
    Base64(String),
    #[error("a=crypto key has {0} bytes, expected 30 (16-byte key + 14-byte salt)")]
    KeyLength(usize),
    #[error("SRTP: {0}")]
    Crypto(String),
    #[error("{kind} from a new SSRC {ssrc:08X} while {MAX_SSRCS} are known: refused")]
    TooManySsrcs { kind: &'static str, ssrc: u32 },
    #[error("{kind} datagram of {len} bytes is malformed: {why}")]
    Malformed {
        kind: &'static str,
        len: usize,
        why: &'static str,
    },
}

/// A 30-byte SDES master key + salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    bytes: [u8; KEY_LEN + SALT_LEN],
}

impl std::fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never appear in logs.
        f.write_str("SdesKey(..)")
    }
}

impl SdesKey {
    /// A fresh random key, as sent in every new offer or answer.
    pub fn random() -> Self {
        let mut bytes = [0u8; KEY_LEN + SALT_LEN];
        rand::fill(&mut bytes[..]);
        Self { bytes }
    }

    pub fn from_bytes(raw: &[u8]) -> Result<Self, SrtpError> {
        let bytes = raw
            .try_into()
            .map_err(|_| SrtpError::KeyLength(raw.len()))?;
        Ok(Self { bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Parses `inline:<base64>[|lifetime][|MKI:len]`.
    pub fn from_inline(key_params: &str) -> Result<Self, SrtpError> {
        let b64 = key_params
            .trim()
            .strip_prefix("inline:")
            .ok_or_else(|| SrtpError::Syntax(key_params.to_owned()))?;
        let b64 = b64.split('|').next().unwrap_or_default();
        let raw = STANDARD
            .decode(b64.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(b64))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .map_err(|_| SrtpError::Base64(b64.to_owned()))?;
        Self::from_bytes(&raw)
    }

    /// `inline:<base64>` (40 characters of base64 for 30 bytes).
    pub fn to_inline(&self) -> String {
        format!("inline:{}", STANDARD.encode(self.bytes))
    }

    pub fn master_key(&self) -> &[u8] {
        &self.bytes[..KEY_LEN]
    }

    pub fn master_salt(&self) -> &[u8] {
        &self.bytes[KEY_LEN..]
    }
}

/// One parsed `a=crypto` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub key: SdesKey,
}

impl CryptoAttribute {
    /// Parses the value of `a=crypto:` (`1 AES_CM_128_HMAC_SHA1_80 inline:...`).
    /// Suites other than [`SUITE`] give [`SrtpError::Suite`] so callers can skip them.
    pub fn parse(value: &str) -> Result<Self, SrtpError> {
        let mut parts = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SrtpError::Syntax(value.to_owned()));
        };
        let tag = tag
            .parse()
            .map_err(|_| SrtpError::Syntax(value.to_owned()))?;
        if !suite.eq_ignore_ascii_case(SUITE) {
            return Err(SrtpError::Suite(suite.to_owned()));
        }
        Ok(Self {
            tag,
            key: SdesKey::from_inline(key)?,
        })
    }

    /// The attribute value to write after `a=crypto:`.
    pub fn to_value(&self) -> String {
        format!("{} {SUITE} {}", self.tag, self.key.to_inline())
    }
}

/// SRTP + SRTCP context for one direction of one medium.
pub struct SrtpSession {
    ctx: Context,
    key: SdesKey,
    /// SSRCs whose packets authenticated (and so have state in `ctx`).
    rtp_ssrcs: Vec<u32>,
    rtcp_ssrcs: Vec<u32>,
    /// Checks packets of unknown SSRCs without touching `ctx`.
    probe: Option<Context>,
    probe_failures: u32,
    probes_rebuilt: u64,
}

fn context(key: &SdesKey) -> Result<Context, SrtpError> {
    Context::new(
        key.master_key(),
        key.master_salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )
    .map_err(|e| SrtpError::Crypto(e.to_string()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtp,
    Rtcp,
}

impl SrtpSession {
    pub fn new(key: &SdesKey) -> Result<Self, SrtpError> {
        Ok(Self {
            ctx: context(key)?,
            key: key.clone(),
            rtp_ssrcs: Vec::new(),
            rtcp_ssrcs: Vec::new(),
            probe: None,
            probe_failures: 0,
            probes_rebuilt: 0,
        })
    }

    /// The SSRCs with inbound state (RTP, RTCP); for tests and diagnostics.
    pub fn known_ssrcs(&self) -> (usize, usize) {
        (self.rtp_ssrcs.len(), self.rtcp_ssrcs.len())
    }

    /// How often the probe context was dropped after failed probes.
    pub fn probes_rebuilt(&self) -> u64 {
        self.probes_rebuilt
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.ctx
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        if packet.len() < RTP_HEADER + TAG_LEN {
            return Err(SrtpError::Malformed {
                kind: "SRTP",
                len: packet.len(),
                why: "shorter than an RTP header plus the 10-byte tag",
            });
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        self.gate(Kind::Rtp, ssrc, packet)?;
        self.ctx
            .decrypt_rtp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.ctx
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    /// Guards webrtc-srtp 0.17 `decrypt_rtcp`, which panics (index arithmetic) on datagrams
    /// shorter than header + index + tag, and returns packets whose E flag is clear WITHOUT
    /// checking the tag. RFC 3711 §3.4: 8-byte header+SSRC, E|index (4), 10-byte tag; the
    /// C300X's libsrtp policy always encrypts SRTCP (c300x-protocol.md §4.3), so a clear E flag
    /// is treated as forged.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        let len = packet.len();
        if len < RTCP_HEADER + SRTCP_INDEX + TAG_LEN {
            return Err(SrtpError::Malformed {
                kind: "SRTCP",
                len,
                why: "shorter than header, index and tag",
            });
        }
        if packet[len - TAG_LEN - SRTCP_INDEX] & 0x80 == 0 {
            return Err(SrtpError::Malformed {
                kind: "SRTCP",
                len,
                why: "E flag clear (unencrypted SRTCP is refused)",
            });
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.gate(Kind::Rtcp, ssrc, packet)?;
        self.ctx
            .decrypt_rtcp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    /// Lets a packet reach `ctx` only if its SSRC is known or the packet authenticates on the
    /// probe context; only then is the SSRC remembered.
    fn gate(&mut self, kind: Kind, ssrc: u32, packet: &[u8]) -> Result<(), SrtpError> {
        let (known, name) = match kind {
            Kind::Rtp => (&self.rtp_ssrcs, "SRTP"),
            Kind::Rtcp => (&self.rtcp_ssrcs, "SRTCP"),
        };
        if known.contains(&ssrc) {
            return Ok(());
        }
        if known.len() >= MAX_SSRCS {
            return Err(SrtpError::TooManySsrcs { kind: name, ssrc });
        }
        let probe = match self.probe.as_mut() {
            Some(p) => p,
            None => self.probe.insert(context(&self.key)?),
        };
        let checked = match kind {
            Kind::Rtp => probe.decrypt_rtp(packet),
            Kind::Rtcp => probe.decrypt_rtcp(packet),
        };
        match checked {
            Ok(_) => {
                // The probe holds state for this SSRC now; a fresh one is built when needed.
                self.probe = None;
                self.probe_failures = 0;
                match kind {
                    Kind::Rtp => self.rtp_ssrcs.push(ssrc),
                    Kind::Rtcp => self.rtcp_ssrcs.push(ssrc),
                }
                Ok(())
            }
            Err(e) => {
                self.probe_failures += 1;
                if self.probe_failures >= PROBE_RESET {
                    self.probe = None;
                    self.probe_failures = 0;
                    self.probes_rebuilt += 1;
                }
                Err(SrtpError::Crypto(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_round_trip() {
        let k = SdesKey::random();
        let s = k.to_inline();
        assert_eq!(s.len(), "inline:".len() + 40);
        assert_eq!(SdesKey::from_inline(&s), Ok(k));
    }

    #[test]
    fn parses_crypto_with_lifetime_and_mki() {
        let k = SdesKey::from_bytes(&[7u8; 30]).expect("30 bytes");
        let v = format!("1 AES_CM_128_HMAC_SHA1_80 {}|2^31|1:1", k.to_inline());
        let a = CryptoAttribute::parse(&v).expect("valid");
        assert_eq!(a.tag, 1);
        assert_eq!(a.key, k);
    }

    #[test]
    fn rejects_bad_crypto() {
        assert!(matches!(
            CryptoAttribute::parse("1 AES_256_CM_HMAC_SHA1_80 inline:AAAA"),
            Err(SrtpError::Suite(_))
        ));
        assert!(matches!(
            CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"),
            Err(SrtpError::KeyLength(3))
        ));
        assert!(matches!(
            CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80 inline:!!!"),
            Err(SrtpError::Base64(_))
        ));
        assert!(matches!(
            CryptoAttribute::parse("x AES_CM_128_HMAC_SHA1_80"),
            Err(SrtpError::Syntax(_))
        ));
    }

    #[test]
    fn protect_then_unprotect() {
        let key = SdesKey::random();
        let mut tx = SrtpSession::new(&key).expect("ctx");
        let mut rx = SrtpSession::new(&key).expect("ctx");
        // RTP v2, PT 96, seq 1, ts 0, SSRC 0x01020304, payload "hello".
        let mut pkt = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
        pkt.extend_from_slice(b"hello");
        let enc = tx.protect_rtp(&pkt).expect("protect");
        assert_eq!(enc.len(), pkt.len() + 10);
        assert_ne!(&enc[12..17], b"hello");
        assert_eq!(&rx.unprotect_rtp(&enc).expect("unprotect")[..], &pkt[..]);
        let mut wrong = SrtpSession::new(&SdesKey::random()).expect("ctx");
        assert!(wrong.unprotect_rtp(&enc).is_err());
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(b"payload bytes");
        p
    }

    #[test]
    fn forged_ssrcs_get_no_state_and_the_real_stream_is_unharmed() {
        let key = SdesKey::random();
        let mut tx = SrtpSession::new(&key).expect("ctx");
        let mut rx = SrtpSession::new(&key).expect("ctx");
        let mut forger = SrtpSession::new(&SdesKey::random()).expect("ctx");
        let mut seq = 0u16;
        for i in 0..20_000u32 {
            if i % 100 == 0 {
                seq += 1;
                let real = tx.protect_rtp(&rtp(0xC300, seq)).expect("protect");
                assert!(rx.unprotect_rtp(&real).is_ok(), "real packet {seq}");
            }
            // Random SSRCs with a wrong key, and garbage tags.
            let ssrc = i.wrapping_mul(2_654_435_761);
            let forged = forger.protect_rtp(&rtp(ssrc, i as u16)).expect("protect");
            assert!(rx.unprotect_rtp(&forged).is_err());
            let mut garbage = rtp(ssrc ^ 1, 7);
            garbage.extend_from_slice(&[0; 10]);
            assert!(rx.unprotect_rtp(&garbage).is_err());
        }
        assert_eq!(rx.known_ssrcs(), (1, 0), "state for the real SSRC only");
        assert!(rx.probes_rebuilt() >= 40_000 / 64 - 1);
        // Replays of the real stream are still refused by the real context.
        let real = tx.protect_rtp(&rtp(0xC300, seq + 1)).expect("protect");
        assert!(rx.unprotect_rtp(&real).is_ok());
        assert!(rx.unprotect_rtp(&real).is_err(), "replay");
        // At most MAX_SSRCS authenticated SSRCs get state.
        for n in 0..(MAX_SSRCS as u32 + 2) {
            let p = tx.protect_rtp(&rtp(0x1000 + n, 1)).expect("protect");
            let r = rx.unprotect_rtp(&p);
            assert_eq!(r.is_ok(), (n as usize) < MAX_SSRCS - 1, "ssrc {n}: {r:?}");
        }
        assert_eq!(rx.known_ssrcs().0, MAX_SSRCS);
    }

    #[test]
    fn short_or_unencrypted_srtcp_is_refused_without_panicking() {
        let key = SdesKey::random();
        let mut rx = SrtpSession::new(&key).expect("ctx");
        for len in 0..22 {
            assert!(matches!(
                rx.unprotect_rtcp(&vec![0x80; len]),
                Err(SrtpError::Malformed { .. })
            ));
            assert!(rx.unprotect_rtp(&vec![0x80; len]).is_err());
        }
        // A receiver report with E clear and a zero tag: webrtc-srtp alone would accept it.
        let mut forged = vec![0x81, 201, 0, 1, 0, 0, 0, 1, 0x00, 0, 0, 1];
        forged.extend_from_slice(&[0; 10]);
        assert!(matches!(
            rx.unprotect_rtcp(&forged),
            Err(SrtpError::Malformed { .. })
        ));
        // A real one passes.
        let mut tx = SrtpSession::new(&key).expect("ctx");
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        let enc = tx.protect_rtcp(&rr).expect("protect");
        assert_eq!(&rx.unprotect_rtcp(&enc).expect("unprotect")[..], &rr[..]);
    }
}
