//! A hand-driven SIP peer for the tests: writes exact request text over TCP or UDP and reads
//! whatever the other side sends, so tests can assert on bytes, not on a stack's opinion.

use std::net::SocketAddr;
use std::time::Duration;

use c300x_bridge::sim::sip::message::{Frame, Message, next_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const DOMAIN: &str = "1234567.bs.iotleg.com";

pub enum Conn {
    Tcp(TcpStream, Vec<u8>),
    Udp(UdpSocket, SocketAddr),
}

pub struct Peer {
    pub conn: Conn,
    pub local: SocketAddr,
    pub user: String,
    cseq: u32,
}

impl Peer {
    pub async fn tcp(sim: SocketAddr, user: &str) -> Self {
        let s = TcpStream::connect(sim).await.expect("connect to simulator");
        let local = s.local_addr().expect("local addr");
        Self {
            conn: Conn::Tcp(s, Vec::new()),
            local,
            user: user.to_owned(),
            cseq: 20,
        }
    }

    pub async fn udp(sim: SocketAddr, user: &str) -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let local = s.local_addr().expect("local addr");
        Self {
            conn: Conn::Udp(s, sim),
            local,
            user: user.to_owned(),
            cseq: 20,
        }
    }

    pub fn transport(&self) -> &'static str {
        match self.conn {
            Conn::Tcp(..) => "tcp",
            Conn::Udp(..) => "udp",
        }
    }

    pub fn contact(&self) -> String {
        format!(
            "<sip:{}@{};transport={}>",
            self.user,
            self.local,
            self.transport()
        )
    }

    pub fn via(&self) -> String {
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{:x};rport",
            self.transport().to_uppercase(),
            self.local,
            rand::random::<u64>()
        )
    }

    pub fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Tcp(s, _) => s.write_all(bytes).await.expect("write"),
            Conn::Udp(s, to) => {
                s.send_to(bytes, *to).await.expect("send");
            }
        }
    }

    pub async fn send(&mut self, m: &Message) {
        self.send_raw(&m.to_bytes()).await;
    }

    /// The next SIP message (raw text and parsed), or None on timeout / close.
    pub async fn recv(&mut self, wait: Duration) -> Option<(String, Message)> {
        let fut = async {
            match &mut self.conn {
                Conn::Tcp(s, buf) => loop {
                    match next_frame(buf) {
                        Ok(Some(Frame::Message(bytes))) => {
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            return Message::parse(&bytes).ok().map(|m| (text, m));
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(_) => return None,
                    }
                    let mut chunk = [0u8; 8192];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                },
                Conn::Udp(s, _) => {
                    let mut b = vec![0u8; 65536];
                    let (n, _) = s.recv_from(&mut b).await.ok()?;
                    let text = String::from_utf8_lossy(&b[..n]).into_owned();
                    Message::parse(&b[..n]).ok().map(|m| (text, m))
                }
            }
        };
        tokio::time::timeout(wait, fut).await.ok().flatten()
    }

    /// Reads until a message matching `pred` arrives (others are skipped).
    pub async fn recv_until(
        &mut self,
        wait: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Option<(String, Message)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (text, m) = self.recv(left).await?;
            if pred(&m) {
                return Some((text, m));
            }
        }
    }

    /// The final response to the request with `cseq` (provisionals skipped).
    pub async fn final_response(&mut self, cseq: u32) -> Option<(String, Message)> {
        self.recv_until(Duration::from_secs(5), |m| {
            m.code().is_some_and(|c| c >= 200) && m.cseq().0 == cseq
        })
        .await
    }

    pub fn register(&mut self, expires: u32) -> Message {
        let cseq = self.next_cseq();
        let mut m = Message::request("REGISTER", &format!("sip:{DOMAIN}"));
        m.push("Via", self.via())
            .push("Max-Forwards", "70")
            .push("From", format!("<sip:{}@{DOMAIN}>;tag=r{cseq}", self.user))
            .push("To", format!("<sip:{}@{DOMAIN}>", self.user))
            .push("Call-ID", format!("reg-{}@test", self.user))
            .push("CSeq", format!("{cseq} REGISTER"))
            .push("Contact", self.contact())
            .push("Expires", expires.to_string());
        m
    }

    /// An out-of-dialog request to `c300x` (INVITE or MESSAGE).
    pub fn out_of_dialog(
        &mut self,
        method: &str,
        call_id: &str,
        ctype: &str,
        body: &str,
    ) -> Message {
        let cseq = self.next_cseq();
        let mut m = Message::request(method, &format!("sip:c300x@{DOMAIN}"));
        m.push("Via", self.via())
            .push("Max-Forwards", "70")
            .push("From", format!("<sip:{}@{DOMAIN}>;tag=f{cseq}", self.user))
            .push("To", format!("<sip:c300x@{DOMAIN}>"))
            .push("Call-ID", call_id)
            .push("CSeq", format!("{cseq} {method}"))
            .push("Contact", self.contact());
        if !body.is_empty() {
            m.set_body(ctype, body);
        }
        m
    }

    /// ACK or BYE inside the dialog created by `invite` and its 200 `ok`, routed per RFC 3261
    /// §12.2.1.1: Request-URI = the remote Contact, Route = Record-Route reversed.
    pub fn in_dialog(
        &mut self,
        method: &str,
        invite: &Message,
        ok: &Message,
        cseq: u32,
    ) -> Message {
        let target =
            c300x_bridge::sim::sip::message::uri_of(ok.header("Contact").unwrap_or_default())
                .to_owned();
        let mut m = Message::request(method, &target);
        m.push("Via", self.via());
        let mut routes = ok.header_values("Record-Route");
        routes.reverse();
        if !routes.is_empty() {
            m.push("Route", routes.join(", "));
        }
        m.push("Max-Forwards", "70")
            .push("From", invite.header("From").unwrap_or_default())
            .push("To", ok.header("To").unwrap_or_default())
            .push("Call-ID", invite.call_id())
            .push("CSeq", format!("{cseq} {method}"));
        m
    }

    /// A response to a request the simulator sent us (ring INVITE, BYE, CANCEL, MESSAGE).
    pub fn answer(&self, req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut r = Message::response(code, reason);
        for v in req.header_values("Via") {
            r.push("Via", v);
        }
        let to = req.header("To").unwrap_or_default();
        let to = match to_tag {
            Some(t) if !to.contains("tag=") => format!("{to};tag={t}"),
            _ => to.to_owned(),
        };
        r.push("From", req.header("From").unwrap_or_default())
            .push("To", to)
            .push("Call-ID", req.call_id())
            .push("CSeq", req.header("CSeq").unwrap_or_default());
        r
    }
}

/// A view-call offer as c300x-protocol.md §4.1 draws it, with chosen PTs and optional parts.
pub fn view_offer(
    ip: &str,
    ports: (u16, u16),
    pts: (u8, u8),
    devaddr: Option<&str>,
    crypto: bool,
) -> String {
    let key = |seed: u8| {
        c300x_bridge::proto::srtp::SdesKey::from_bytes(&[seed; 30])
            .expect("30 bytes")
            .to_inline()
    };
    let c = |seed: u8| {
        if crypto {
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n", key(seed))
        } else {
            String::new()
        }
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n{dev}a=nortpproxy:yes\r\n\
         m=audio {a} RTP/SAVP {pa}\r\na=rtpmap:{pa} speex/8000\r\n{ca}\
         m=video {v} RTP/SAVP {pv}\r\na=rtpmap:{pv} H264/90000\r\na=fmtp:{pv} profile-level-id=42801F\r\n{cv}a=recvonly\r\n",
        dev = devaddr
            .map(|d| format!("a=DEVADDR:{d}\r\n"))
            .unwrap_or_default(),
        a = ports.0,
        v = ports.1,
        pa = pts.0,
        pv = pts.1,
        ca = c(1),
        cv = c(2),
    )
}
