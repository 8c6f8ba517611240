//! The `Transport` header (RFC 2326 §12.39): picks the first alternative we serve, RTP/AVP over
//! TCP interleaved (§10.12) or UDP unicast with client ports, and writes the answer. Multicast,
//! SAVP/AVPF profiles and RECORD mode are refused (the server answers 461).

/// The transport a client asked for and we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    /// `RTP/AVP/TCP`: RTP and RTCP on these channels of the RTSP connection (`None`: we pick).
    Interleaved { channels: Option<(u8, u8)> },
    /// `RTP/AVP[/UDP];unicast;client_port=a-b`.
    Udp { rtp_port: u16, rtcp_port: u16 },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("no Transport header")]
    Missing,
    #[error("unsupported transport {0:?} (RTP/AVP over TCP interleaved or UDP unicast only)")]
    Unsupported(String),
}

/// Chooses the first alternative of a `Transport` header value we can serve.
pub fn choose(value: Option<&str>) -> Result<ClientTransport, TransportError> {
    let value = value.ok_or(TransportError::Missing)?;
    value
        .split(',')
        .find_map(parse_one)
        .ok_or_else(|| TransportError::Unsupported(value.chars().take(120).collect()))
}

fn parse_one(spec: &str) -> Option<ClientTransport> {
    let mut parts = spec.split(';').map(str::trim);
    let protocol = parts.next()?.to_ascii_uppercase();
    let tcp = match protocol.as_str() {
        "RTP/AVP" | "RTP/AVP/UDP" => false,
        "RTP/AVP/TCP" => true,
        _ => return None,
    };
    let mut interleaved = None;
    let mut client_port = None;
    for p in parts {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        match key.to_ascii_lowercase().as_str() {
            "multicast" => return None,
            "mode" => {
                let mode = value.trim_matches('"').to_ascii_uppercase();
                if mode != "PLAY" {
                    return None;
                }
            }
            "interleaved" => interleaved = Some(range::<u8>(value)?),
            "client_port" => client_port = Some(range::<u16>(value)?),
            _ => {}
        }
    }
    if tcp {
        Some(ClientTransport::Interleaved {
            channels: interleaved,
        })
    } else {
        let (rtp_port, rtcp_port) = client_port?;
        (rtp_port != 0).then_some(ClientTransport::Udp {
            rtp_port,
            rtcp_port,
        })
    }
}

/// `a-b` or `a` (then b = a + 1).
fn range<T: std::str::FromStr + Copy + TryFrom<u32> + Into<u32>>(v: &str) -> Option<(T, T)> {
    match v.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a: T = v.trim().parse().ok()?;
            let b = T::try_from(a.into().checked_add(1)?).ok()?;
            Some((a, b))
        }
    }
}

/// The `Transport` value of our SETUP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTransport {
    Interleaved {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        client: (u16, u16),
        server: (u16, u16),
    },
}

impl ServerTransport {
    pub fn header_value(&self, ssrc: u32) -> String {
        match self {
            Self::Interleaved { rtp, rtcp } => format!(
                "RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp};ssrc={ssrc:08X};mode=\"PLAY\""
            ),
            Self::Udp { client, server } => format!(
                "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={ssrc:08X};mode=\"PLAY\"",
                client.0, client.1, server.0, server.1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_what_we_serve() {
        assert_eq!(
            choose(Some("RTP/AVP/TCP;unicast;interleaved=0-1")),
            Ok(ClientTransport::Interleaved {
                channels: Some((0, 1))
            })
        );
        assert_eq!(
            choose(Some("RTP/AVP/TCP;unicast")),
            Ok(ClientTransport::Interleaved { channels: None })
        );
        assert_eq!(
            choose(Some("RTP/AVP;unicast;client_port=5000-5001;mode=\"PLAY\"")),
            Ok(ClientTransport::Udp {
                rtp_port: 5000,
                rtcp_port: 5001
            })
        );
        assert_eq!(
            choose(Some("RTP/AVP/UDP;unicast;client_port=6000")),
            Ok(ClientTransport::Udp {
                rtp_port: 6000,
                rtcp_port: 6001
            })
        );
        // GStreamer offers several alternatives; the first we serve wins.
        assert_eq!(
            choose(Some(
                "RTP/SAVP;unicast;client_port=1-2,RTP/AVP;multicast,RTP/AVP/TCP;interleaved=2-3"
            )),
            Ok(ClientTransport::Interleaved {
                channels: Some((2, 3))
            })
        );
    }

    #[test]
    fn refuses_the_rest() {
        for v in [
            "RTP/AVP;multicast;port=5000-5001",
            "RTP/SAVP;unicast;client_port=1-2",
            "RTP/AVPF/TCP;interleaved=0-1",
            "RTP/AVP/TCP;interleaved=0-1;mode=record",
            "RTP/AVP;unicast",
            "RTP/AVP;unicast;client_port=x-y",
            "RTP/AVP/TCP;interleaved=0-300",
            "RAW/RAW/UDP;unicast;client_port=1-2",
            "",
        ] {
            assert!(
                matches!(choose(Some(v)), Err(TransportError::Unsupported(_))),
                "{v}"
            );
        }
        assert_eq!(choose(None), Err(TransportError::Missing));
    }

    #[test]
    fn writes_answers() {
        assert_eq!(
            ServerTransport::Interleaved { rtp: 2, rtcp: 3 }.header_value(0xab),
            "RTP/AVP/TCP;unicast;interleaved=2-3;ssrc=000000AB;mode=\"PLAY\""
        );
        assert_eq!(
            ServerTransport::Udp {
                client: (5000, 5001),
                server: (43000, 43001)
            }
            .header_value(1),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=43000-43001;ssrc=00000001;mode=\"PLAY\""
        );
    }
}
