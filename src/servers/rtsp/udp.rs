//! Server-side UDP ports of one RTSP track (RFC 2326 §12.39 `server_port`): an even RTP port
//! and the odd RTCP port after it, from the configured range. RTCP from the client is read only
//! as a keep-alive (§2.3 of streaming.md). The intercom's own pairs come from the same range;
//! a port either side holds is skipped (the OS refuses the second bind).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::intercom::media::PortPool;

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("no free RTP/RTCP port pair in {min}-{max} on {ip}")]
    Exhausted { ip: IpAddr, min: u16, max: u16 },
    #[error("binding UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// The two sockets of one track; dropping it closes them and stops the RTCP reader.
#[derive(Debug)]
pub(super) struct UdpPair {
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub ports: (u16, u16),
    rtcp_seen: Arc<Mutex<Option<Instant>>>,
    reader: JoinHandle<()>,
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

/// Binds a pair on `ip` from `pool`'s range, starting after the last pair handed out.
pub(super) fn bind_pair(
    ip: IpAddr,
    pool: &PortPool,
    cursor: &AtomicU32,
) -> Result<UdpPair, UdpError> {
    let (min, max) = pool.range();
    let bases: Vec<u16> = (u32::from(min)..u32::from(max))
        .step_by(2)
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    if bases.is_empty() {
        return Err(UdpError::Exhausted { ip, min, max });
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed) as usize % bases.len();
    for &base in bases[start..].iter().chain(&bases[..start]) {
        match bind_two(ip, base) {
            Ok((rtp, rtcp)) => return Ok(spawn_reader(rtp, rtcp, base)),
            Err((_, e)) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err((addr, source)) => return Err(UdpError::Bind { addr, source }),
        }
    }
    Err(UdpError::Exhausted { ip, min, max })
}

fn bind_two(ip: IpAddr, base: u16) -> Result<(UdpSocket, UdpSocket), (SocketAddr, io::Error)> {
    let bind = |port: u16| {
        let addr = SocketAddr::new(ip, port);
        let s = std::net::UdpSocket::bind(addr).map_err(|e| (addr, e))?;
        s.set_nonblocking(true).map_err(|e| (addr, e))?;
        UdpSocket::from_std(s).map_err(|e| (addr, e))
    };
    let rtp = bind(base)?;
    let rtcp = bind(base + 1)?;
    Ok((rtp, rtcp))
}

fn spawn_reader(rtp: UdpSocket, rtcp: UdpSocket, base: u16) -> UdpPair {
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
    }
}
