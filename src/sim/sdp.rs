//! The simulator's SDP: reads the bridge's offer (or answer) the tolerant, line-based way the
//! unit's belle-sip does, and writes the unit's own SDP exactly as captured (c300x-protocol.md
//! §4.2): `o=c300x`, `s=Talk`, PTs mirrored from the offer, `vbr=on`, `profile-level-id=42801F`
//! with no `packetization-mode` and no `sprop-parameter-sets`, video `sendonly`, own SDES keys.

use std::net::IpAddr;

use crate::proto::srtp::{CryptoAttribute, SdesKey};

/// One `m=` section of the peer's SDP, reduced to what the unit looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMedia {
    pub port: u16,
    pub profile: String,
    /// PT of the codec the unit picks (speex/8000 or H264/90000), if offered.
    pub pt: Option<u8>,
    /// The first AES_CM_128_HMAC_SHA1_80 crypto attribute, if any.
    pub crypto: Option<CryptoAttribute>,
    /// `c=` of this section, falling back to the session's.
    pub ip: Option<IpAddr>,
    /// `sendrecv` (default), `sendonly`, `recvonly` or `inactive`.
    pub direction: String,
}

/// An `m=` section being read: media kind, what is known so far, its `a=rtpmap` entries.
type Section = (String, PeerMedia, Vec<(u8, String)>);

/// The parts of a peer's SDP the unit cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSdp {
    /// Session-level `a=DEVADDR:<n>` (before the first `m=`); media-level ones do not count.
    pub devaddr: Option<String>,
    pub audio: Option<PeerMedia>,
    pub video: Option<PeerMedia>,
}

/// Why the unit refuses an offer, mapped to a SIP status by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no session-level a=DEVADDR: the unit would ring the indoor display instead")]
    NoDevaddr,
    #[error("{0}")]
    NotAcceptable(String),
}

impl PeerSdp {
    pub fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut sdp = PeerSdp::default();
        let mut session_ip: Option<IpAddr> = None;
        let mut current: Option<Section> = None;
        let finish = |sdp: &mut PeerSdp, cur: Option<Section>| {
            let Some((kind, mut media, rtpmaps)) = cur else {
                return;
            };
            let wanted = if kind == "audio" {
                "speex/8000"
            } else {
                "h264/90000"
            };
            media.pt = rtpmaps
                .iter()
                .find(|(_, enc)| enc.to_ascii_lowercase().starts_with(wanted))
                .map(|(pt, _)| *pt);
            match kind.as_str() {
                "audio" if sdp.audio.is_none() => sdp.audio = Some(media),
                "video" if sdp.video.is_none() => sdp.video = Some(media),
                _ => {}
            }
        };
        for line in text.lines() {
            let line = line.trim();
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    finish(&mut sdp, current.take());
                    let mut parts = value.split_whitespace();
                    let media = parts.next().unwrap_or_default().to_ascii_lowercase();
                    let port = parts
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let profile = parts.next().unwrap_or_default().to_owned();
                    current = Some((
                        media,
                        PeerMedia {
                            port,
                            profile,
                            pt: None,
                            crypto: None,
                            ip: session_ip,
                            direction: "sendrecv".to_owned(),
                        },
                        Vec::new(),
                    ));
                }
                "c" => {
                    let ip = value
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok());
                    match current.as_mut() {
                        Some((_, m, _)) => m.ip = ip.or(m.ip),
                        None => session_ip = ip,
                    }
                }
                "a" => {
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    match (current.as_mut(), name) {
                        (None, n) if n.eq_ignore_ascii_case("DEVADDR") => {
                            sdp.devaddr = Some(val.trim().to_owned());
                        }
                        (Some((_, _, maps)), "rtpmap") => {
                            let mut it = val.split_whitespace();
                            if let (Some(pt), Some(enc)) = (it.next(), it.next())
                                && let Ok(pt) = pt.parse()
                            {
                                maps.push((pt, enc.to_owned()));
                            }
                        }
                        (Some((_, m, _)), "crypto") if m.crypto.is_none() => {
                            m.crypto = CryptoAttribute::parse(val).ok();
                        }
                        (
                            Some((_, m, _)),
                            d @ ("sendrecv" | "sendonly" | "recvonly" | "inactive"),
                        ) => {
                            m.direction = d.to_owned();
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        finish(&mut sdp, current);
        sdp
    }

    /// The unit's checks on a view-call offer, in the order it applies them.
    pub fn check_view_offer(&self) -> Result<(&PeerMedia, &PeerMedia), OfferError> {
        if self.devaddr.is_none() {
            return Err(OfferError::NoDevaddr);
        }
        check_pair(self.audio.as_ref(), self.video.as_ref())
    }

    /// The checks on the bridge's answer to a doorbell INVITE (same media rules, no DEVADDR).
    pub fn check_answer(&self) -> Result<(&PeerMedia, &PeerMedia), OfferError> {
        check_pair(self.audio.as_ref(), self.video.as_ref())
    }
}

fn check_pair<'a>(
    audio: Option<&'a PeerMedia>,
    video: Option<&'a PeerMedia>,
) -> Result<(&'a PeerMedia, &'a PeerMedia), OfferError> {
    let na = |s: &str| Err(OfferError::NotAcceptable(s.to_owned()));
    let (Some(a), Some(v)) = (audio, video) else {
        return na("offer needs one audio and one video m= line");
    };
    for (m, codec) in [(a, "speex/8000"), (v, "H264/90000")] {
        if m.port == 0 {
            return na("m= line with port 0");
        }
        if m.pt.is_none() {
            return na(&format!("no {codec} in the offer"));
        }
        if !m.profile.eq_ignore_ascii_case("RTP/SAVP") || m.crypto.is_none() {
            return na("every m= line needs RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 a=crypto");
        }
        if m.ip.is_none() {
            return na("no c= address");
        }
    }
    Ok((a, v))
}

/// The unit's answer to a view call, as in the real capture (c300x-protocol.md §4.2).
#[allow(clippy::too_many_arguments)]
pub fn view_answer(
    ip: IpAddr,
    sess_id: u64,
    audio: (&PeerMedia, u16, &SdesKey),
    video: (&PeerMedia, u16, &SdesKey),
) -> String {
    let (am, aport, akey) = audio;
    let (vm, vport, vkey) = video;
    let apt = am.pt.unwrap_or(110);
    let vpt = vm.pt.unwrap_or(96);
    let atag = am.crypto.as_ref().map_or(1, |c| c.tag);
    let vtag = vm.crypto.as_ref().map_or(1, |c| c.tag);
    let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=c300x {sess_id} {sess_id} IN {fam} {ip}\r\ns=Talk\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {aport} RTP/SAVP {apt}\r\na=rtpmap:{apt} speex/8000\r\na=fmtp:{apt} vbr=on\r\n\
         a=crypto:{atag} {suite} {ak}\r\n\
         m=video {vport} RTP/SAVP {vpt}\r\na=rtpmap:{vpt} H264/90000\r\na=fmtp:{vpt} profile-level-id=42801F\r\n\
         a=sendonly\r\na=crypto:{vtag} {suite} {vk}\r\n",
        suite = crate::proto::srtp::SUITE,
        ak = akey.to_inline(),
        vk = vkey.to_inline(),
    )
}

/// The unit's offer in a doorbell INVITE to `alluser` (speex 96 + telephone-event 101, H.264 97).
/// `devaddr`: the panel that rang, as a session-level `a=DEVADDR` — the simulator's choice of
/// carrier when several panels exist; what the real unit sends is unknown (c300x-protocol.md
/// §12 Q6).
pub fn ring_offer(
    ip: IpAddr,
    sess_id: u64,
    ports: (u16, u16),
    keys: (&SdesKey, &SdesKey),
    devaddr: Option<u8>,
) -> String {
    let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let panel = devaddr
        .map(|d| format!("a=DEVADDR:{d}\r\n"))
        .unwrap_or_default();
    format!(
        "v=0\r\no=c300x {sess_id} {sess_id} IN {fam} {ip}\r\ns=Talk\r\nc=IN {fam} {ip}\r\nt=0 0\r\n{panel}\
         m=audio {ap} RTP/SAVP 96 101\r\na=rtpmap:96 speex/8000\r\na=fmtp:96 vbr=on\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=crypto:1 {suite} {ak}\r\n\
         m=video {vp} RTP/SAVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42801F\r\n\
         a=sendonly\r\na=crypto:1 {suite} {vk}\r\n",
        ap = ports.0,
        vp = ports.1,
        suite = crate::proto::srtp::SUITE,
        ak = keys.0.to_inline(),
        vk = keys.1.to_inline(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(devaddr: bool, crypto: bool) -> String {
        let k = SdesKey::from_bytes(&[1u8; 30]).expect("30").to_inline();
        let c = |on: bool| {
            if on {
                format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {k}\r\n")
            } else {
                String::new()
            }
        };
        format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n{}a=nortpproxy:yes\r\n\
             m=audio 20000 RTP/SAVP 110\r\na=rtpmap:110 speex/8000\r\n{}\
             m=video 20002 RTP/SAVP 98\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42801F\r\n{}a=recvonly\r\n",
            if devaddr { "a=DEVADDR:20\r\n" } else { "" },
            c(crypto),
            c(crypto)
        )
    }

    #[test]
    fn reads_devaddr_pts_and_keys() {
        let s = PeerSdp::parse(offer(true, true).as_bytes());
        assert_eq!(s.devaddr.as_deref(), Some("20"));
        let (a, v) = s.check_view_offer().expect("acceptable");
        assert_eq!(
            (a.port, a.pt, v.port, v.pt),
            (20000, Some(110), 20002, Some(98))
        );
        assert_eq!(v.direction, "recvonly");
        assert_eq!(a.ip, Some("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn refuses_like_the_unit() {
        let no_dev = PeerSdp::parse(offer(false, true).as_bytes());
        assert_eq!(no_dev.check_view_offer(), Err(OfferError::NoDevaddr));
        let no_crypto = PeerSdp::parse(offer(true, false).as_bytes());
        assert!(matches!(
            no_crypto.check_view_offer(),
            Err(OfferError::NotAcceptable(_))
        ));
        // DEVADDR inside a media section is not session level.
        let moved = offer(false, true).replace("a=rtpmap:110", "a=DEVADDR:20\r\na=rtpmap:110");
        assert_eq!(PeerSdp::parse(moved.as_bytes()).devaddr, None);
    }

    #[test]
    fn answer_mirrors_pts_and_has_the_captured_shape() {
        let s = PeerSdp::parse(offer(true, true).as_bytes());
        let (a, v) = s.check_view_offer().expect("ok");
        let key = SdesKey::from_bytes(&[2u8; 30]).expect("30");
        let ans = view_answer(
            "10.0.0.9".parse().expect("ip"),
            7,
            (a, 28836, &key),
            (v, 5788, &key),
        );
        assert!(ans.contains("s=Talk\r\nc=IN IP4 10.0.0.9\r\n"));
        assert!(ans.contains(
            "m=audio 28836 RTP/SAVP 110\r\na=rtpmap:110 speex/8000\r\na=fmtp:110 vbr=on\r\n"
        ));
        assert!(ans.contains("m=video 5788 RTP/SAVP 98\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42801F\r\na=sendonly\r\n"));
        assert!(
            !ans.contains("packetization-mode") && !ans.contains("sprop") && !ans.contains("rtcp")
        );
        // The answer parses back with the unit's own key.
        let back = PeerSdp::parse(ans.as_bytes());
        assert_eq!(back.video.and_then(|m| m.crypto).map(|c| c.key), Some(key));
    }
}
