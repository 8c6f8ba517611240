//! Server-side UDP ports of one RTSP track (RFC 2326 §12.39 `server_port`): an even RTP port
//! and the odd RTCP port after it, from the configured range. RTCP from the client is read only
//! as a keep-alive (§2.3 of streaming.md). The intercom's own pairs come from the same range;
//! a port either side holds is skipped (the OS refuses the second bind).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::intercom::media::{MediaError, PortLease, PortPool};

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("RTSP over UDP: {0}")]
    Ports(#[from] MediaError),
}

/// The two sockets of one track; dropping it closes them and stops the RTCP reader.
#[derive(Debug)]
pub(super) struct UdpPair {
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub ports: (u16, u16),
    rtcp_seen: Arc<Mutex<Option<Instant>>>,
    reader: JoinHandle<()>,
    /// Returns the ports to the shared pool when the pair is dropped.
    _lease: PortLease,
}

impl Drop for UdpPair {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl UdpPair {
    pub fn last_rtcp(&self) -> Option<Instant> {
        *self
            .rtcp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds a pair on `ip` from the shared pool (the same one the intercom's calls use).
pub(super) fn bind_pair(ip: IpAddr, pool: &PortPool) -> Result<UdpPair, UdpError> {
    let (rtp, rtcp, lease) = pool.bind_pair(ip)?.into_parts();
    // Both tokio's here: RTP only sends, RTCP is read as it comes (a client's reports are rare).
    let tokio = |socket, port| {
        UdpSocket::from_std(socket).map_err(|source| MediaError::Socket { port, source })
    };
    let rtp = tokio(rtp, lease.port())?;
    let rtcp = tokio(rtcp, lease.port() + 1)?;
    Ok(spawn_reader(rtp, rtcp, lease))
}

fn spawn_reader(rtp: UdpSocket, rtcp: UdpSocket, lease: PortLease) -> UdpPair {
    let base = lease.port();
    let rtcp = Arc::new(rtcp);
    let rtcp_seen = Arc::new(Mutex::new(None));
    let reader = {
        let (sock, seen) = (rtcp.clone(), rtcp_seen.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            // Errors such as ICMP port unreachable (the client went away) are not fatal here:
            // the session's keep-alive timeout decides.
            loop {
                if sock.recv_from(&mut buf).await.is_ok() {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                } else {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        })
    };
    UdpPair {
        rtp: Arc::new(rtp),
        rtcp,
        ports: (base, base + 1),
        rtcp_seen,
        reader,
        _lease: lease,
    }
}
