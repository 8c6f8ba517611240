//! The only door to the C300X: SIP signalling (`sip`, the one place rsipstack is used), the
//! per-call media sockets (`media`), and `Intercom`, which joins them into calls with media and
//! sends the door/light/voicemail commands. Everything else in the bridge talks to `Intercom`.

pub mod check;
pub mod media;
mod session;
pub mod sip;

pub use session::{Events, Intercom, IntercomError, MediaCall};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The local address the OS would use towards `peer` (a connected UDP socket sends nothing):
/// what we advertise in SIP Contact and SDP `c=` when `advertise_address` is not set.
pub async fn local_ip_towards(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(any).await.ok()?;
    sock.connect(peer).await.ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}
