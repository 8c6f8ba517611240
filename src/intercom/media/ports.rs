//! RTP/RTCP port pairs for concurrent view calls from `rtp_port_min..=rtp_port_max` (RFC 3550
//! §11: RTP on an even port, RTCP on the next odd one) and the four sockets of one call, bound
//! before the INVITE so the offer can carry them (c300x-protocol.md §4.2). No media here.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};

use super::MediaError;

/// Allocates even/odd port pairs; cheap to clone, shared by all calls.
#[derive(Clone, Debug)]
pub struct PortPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    /// First even port of the range.
    min: u16,
    max: u16,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// RTP ports (even) of the pairs leased to calls.
    in_use: BTreeSet<u16>,
    /// Where the next search starts, so a freed pair is not handed out again at once (stray
    /// packets of the old call would then fail SRTP in the new one).
    cursor: u16,
}

impl PortPool {
    /// The range from the config keys `rtp_port_min`/`rtp_port_max` (validated there: `min` is
    /// even and the range holds at least one call). An odd `min` is rounded up.
    pub fn new(rtp_port_min: u16, rtp_port_max: u16) -> Self {
        let min = rtp_port_min.saturating_add(rtp_port_min % 2);
        Self {
            inner: Arc::new(PoolInner {
                min,
                max: rtp_port_max,
                state: Mutex::new(PoolState {
                    in_use: BTreeSet::new(),
                    cursor: min,
                }),
            }),
        }
    }

    /// The configured range.
    pub fn range(&self) -> (u16, u16) {
        (self.inner.min, self.inner.max)
    }

    /// Pairs currently leased to calls.
    pub fn pairs_in_use(&self) -> usize {
        self.inner.lock().in_use.len()
    }

    /// Binds an RTP socket on a free even port of the range and RTCP on the next port. Ports
    /// that another program holds are skipped. Used for the intercom's calls and for the RTSP
    /// server's UDP tracks alike, so the two never count each other's ports as "busy elsewhere".
    pub fn bind_pair(&self, ip: IpAddr) -> Result<PortPair, MediaError> {
        let (min, max) = self.range();
        let mut state = self.inner.lock();
        let bases: Vec<u16> = (u32::from(min)..u32::from(max))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        let start = bases
            .iter()
            .position(|&p| p >= state.cursor)
            .unwrap_or_default();
        let mut busy_elsewhere = 0usize;
        for &base in bases[start..].iter().chain(&bases[..start]) {
            if state.in_use.contains(&base) {
                continue;
            }
            match bind_two(ip, base) {
                Ok((rtp, rtcp)) => {
                    state.in_use.insert(base);
                    state.cursor = base.saturating_add(2);
                    return Ok(PortPair {
                        rtp,
                        rtcp,
                        lease: PortLease {
                            pool: self.inner.clone(),
                            base,
                        },
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => busy_elsewhere += 1,
                Err(source) => {
                    return Err(MediaError::Bind {
                        addr: SocketAddr::new(ip, base),
                        source,
                    });
                }
            }
        }
        Err(MediaError::PortsExhausted {
            ip,
            min,
            max,
            in_use: state.in_use.len(),
            busy_elsewhere,
        })
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state stays consistent even if a holder panicked: one insert or remove at a time.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bind_two(ip: IpAddr, base: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, base))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, base + 1))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    grow_receive_buffer(&rtp);
    grow_receive_buffer(&rtcp);
    Ok((rtp, rtcp))
}

/// What each socket asks the kernel to buffer (the kernel doubles it, capped by
/// `net.core.rmem_max`). Both are drained on a 20 ms tick: the default ≈ 200 KB holds only
/// ≈ 100 full-size datagrams, so a forged flood or a task stalled by a busy machine made the
/// kernel drop the intercom's video along with the flood.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// Best effort, like GStreamer's udpsrc: `SO_RCVBUFFORCE` where we may (CAP_NET_ADMIN), else
/// `SO_RCVBUF` within `rmem_max` (the add-on's container has no CAP_NET_ADMIN); a kernel that
/// refuses both leaves its default, which works on an unloaded machine. Said once per process
/// when the kernel gives less, with the host setting that would give it.
fn grow_receive_buffer(socket: &UdpSocket) {
    static SAID: std::sync::Once = std::sync::Once::new();
    let set = set_int_option(socket, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER)
        .or_else(|_| set_int_option(socket, libc::SO_RCVBUF, RECEIVE_BUFFER));
    if let Err(e) = set {
        tracing::debug!(error = %e, "SO_RCVBUF on a media port");
    }
    match receive_buffer(socket) {
        Ok(got) if got < 2 * RECEIVE_BUFFER => SAID.call_once(|| {
            tracing::info!(
                "the kernel gives the call's media ports {} KiB of receive buffer instead of {} KiB: \
                 a flood or a busy host can then cost video (on the host: sysctl -w net.core.rmem_max={})",
                got / 1024,
                2 * RECEIVE_BUFFER / 1024,
                RECEIVE_BUFFER
            );
        }),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "SO_RCVBUF of a media port"),
    }
}

/// What the kernel gives a socket to buffer (`SO_RCVBUF`: twice what was asked, capped).
fn receive_buffer(socket: &UdpSocket) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor and an out-value with its exact length.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_option(socket: &UdpSocket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor, and an option value that lives across the call with
    // its exact length.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives a pair back to the pool when dropped (after its sockets: see field order below).
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PoolInner>,
    base: u16,
}

impl PortLease {
    /// The RTP port of the leased pair (RTCP is the next one).
    pub fn port(&self) -> u16 {
        self.base
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().in_use.remove(&self.base);
    }
}

/// An RTP socket, its RTCP socket and the lease on their ports.
#[derive(Debug)]
pub struct PortPair {
    // Field order matters: sockets close before the lease returns the ports.
    pub(super) rtp: UdpSocket,
    pub(super) rtcp: UdpSocket,
    lease: PortLease,
}

impl PortPair {
    /// The RTP port (RTCP is the next one).
    pub fn port(&self) -> u16 {
        self.lease.base
    }

    /// The sockets and the lease apart, both plain non-blocking sockets (keep the lease as long
    /// as the sockets). A call's media task drains both on a tick: registered with tokio, every
    /// datagram (≈ 110/s per call, and every packet of a flood) would wake a worker thread.
    pub fn into_parts(self) -> (UdpSocket, UdpSocket, PortLease) {
        (self.rtp, self.rtcp, self.lease)
    }
}

/// The four sockets of one call: audio RTP/RTCP and video RTP/RTCP, bound before the INVITE.
/// Dropping them (or the `CallMedia` they go into) frees the ports.
#[derive(Debug)]
pub struct CallSockets {
    pub(super) ip: IpAddr,
    pub(super) audio: PortPair,
    pub(super) video: PortPair,
}

impl CallSockets {
    /// Binds two port pairs from `pool` on `ip` (the address our SDP offer announces).
    pub fn bind(ip: IpAddr, pool: &PortPool) -> Result<Self, MediaError> {
        let audio = pool.bind_pair(ip)?;
        let video = pool.bind_pair(ip)?;
        Ok(Self { ip, audio, video })
    }

    /// The audio RTP port for the offer's `m=audio` line (RTCP is this + 1).
    pub fn audio_port(&self) -> u16 {
        self.audio.port()
    }

    /// The video RTP port for the offer's `m=video` line (RTCP is this + 1).
    pub fn video_port(&self) -> u16 {
        self.video.port()
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ports_buffer_what_the_tick_needs_within_the_kernels_cap() {
        let pool = PortPool::new(41_000, 41_998);
        let pair = pool
            .bind_pair(IpAddr::from([127, 0, 0, 1]))
            .expect("a free pair");
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<libc::c_int>().ok())
            .unwrap_or(0);
        // Forced (root) or within rmem_max: the kernel doubles what it keeps for bookkeeping.
        let floor = 2 * RECEIVE_BUFFER.min(cap);
        for (name, socket) in [("RTP", &pair.rtp), ("RTCP", &pair.rtcp)] {
            let got = receive_buffer(socket).expect("getsockopt");
            assert!(
                got >= floor,
                "{name} SO_RCVBUF {got}, expected ≥ {floor} (rmem_max {cap})"
            );
        }
    }
}
