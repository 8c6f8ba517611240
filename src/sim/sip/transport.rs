//! The simulator's SIP transports: one TCP listener (a task per connection, with a writer task
//! so anyone can send on a flow) and one UDP socket on the same port, like flexisip's
//! `sip:<IC>;maddr=<IC>` transport (c300x-protocol.md §1.2, §2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::message::{Frame, Message, next_frame};

static NEXT_FLOW: AtomicU64 = AtomicU64::new(1);

/// Where a message came from, and how to answer: the same TCP connection, or UDP to the source.
#[derive(Clone, Debug)]
pub struct Flow {
    pub id: u64,
    pub peer: SocketAddr,
    kind: FlowKind,
}

#[derive(Clone, Debug)]
enum FlowKind {
    Tcp(mpsc::UnboundedSender<Vec<u8>>),
    Udp(Arc<UdpSocket>),
}

impl Flow {
    pub fn is_tcp(&self) -> bool {
        matches!(self.kind, FlowKind::Tcp(_))
    }

    pub fn transport(&self) -> &'static str {
        if self.is_tcp() { "tcp" } else { "udp" }
    }

    pub fn via_transport(&self) -> &'static str {
        if self.is_tcp() { "TCP" } else { "UDP" }
    }

    /// Sends raw bytes; false when the connection is gone.
    pub fn send_bytes(&self, bytes: Vec<u8>) -> bool {
        match &self.kind {
            FlowKind::Tcp(tx) => tx.send(bytes).is_ok(),
            FlowKind::Udp(sock) => sock.try_send_to(&bytes, self.peer).is_ok(),
        }
    }

    pub fn send(&self, msg: &Message) -> bool {
        tracing::trace!(flow = self.id, peer = %self.peer, "sim sends:\n{}", String::from_utf8_lossy(&msg.to_bytes()));
        self.send_bytes(msg.to_bytes())
    }

    pub fn alive(&self) -> bool {
        match &self.kind {
            FlowKind::Tcp(tx) => !tx.is_closed(),
            FlowKind::Udp(_) => true,
        }
    }
}

/// Receives every parsed message with its flow; garbage gets logged and, on UDP, dropped.
pub type Inbox = mpsc::UnboundedSender<(Flow, Result<Message, String>)>;

/// Accepts TCP connections until `stop`; each connection ends when `conn_stop` fires (restart).
pub async fn run_tcp(
    listener: TcpListener,
    inbox: Inbox,
    stop: CancellationToken,
    conns: Arc<std::sync::Mutex<CancellationToken>>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("sim: TCP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let token = conns
            .lock()
            .map(|t| t.child_token())
            .unwrap_or_else(|_| stop.child_token());
        tokio::spawn(connection(stream, peer, inbox.clone(), token));
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, inbox: Inbox, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let flow = Flow {
        id: NEXT_FLOW.fetch_add(1, Ordering::Relaxed),
        peer,
        kind: FlowKind::Tcp(tx),
    };
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = writer_stop.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(bytes) => if wr.write_all(&bytes).await.is_err() { break },
                    None => break,
                },
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match next_frame(&mut buf) {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
                    flow.send_bytes(b"\r\n".to_vec());
                }
                Ok(Some(Frame::Pong)) => {}
                Ok(Some(Frame::Message(bytes))) => {
                    let parsed = Message::parse(&bytes).map_err(|e| e.to_string());
                    if inbox.send((flow.clone(), parsed)).is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    // A broken stream cannot be resynchronised: report and close, as flexisip does.
                    let _ = inbox.send((flow.clone(), Err(e.to_string())));
                    break 'read;
                }
            }
        }
    }
    stop.cancel();
    let _ = writer.await;
}

/// Reads UDP datagrams (one message each) until `stop`.
pub async fn run_udp(sock: Arc<UdpSocket>, inbox: Inbox, stop: CancellationToken) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        let data = &buf[..n];
        if data.iter().all(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
            continue; // keep-alive
        }
        let flow = Flow {
            id: 0,
            peer,
            kind: FlowKind::Udp(sock.clone()),
        };
        if inbox
            .send((flow, Message::parse(data).map_err(|e| e.to_string())))
            .is_err()
        {
            return;
        }
    }
}
