//! One flow generation: the connection to the intercom (one long-lived TCP connection, or a UDP
//! socket) and a fresh rsipstack endpoint + dialog layer on top of it (c300x-protocol.md §2–§3).
//! Owns the domain resolver, the Contact rewriting and the double-CRLF keep-alive (RFC 5626).
//! Reconnecting, registering and dispatching live in `agent.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, Method, SipMessage, Transport};
use rsipstack::transaction::endpoint::{EndpointInnerRef, EndpointOption, MessageInspector};
use rsipstack::transaction::{EndpointBuilder, TransactionReceiver};
use rsipstack::transport::stream::StreamConnection;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::transport_layer::DomainResolver;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use tokio_util::sync::CancellationToken;

use super::{SipSettings, SipTransport};

const USER_AGENT: &str = concat!("c300x-bridge/", env!("CARGO_PKG_VERSION"));

/// The SIP domain is the intercom: never ask DNS (`<id>.bs.iotleg.com` points to the cloud).
struct DomainToIntercom {
    domain: String,
    intercom: SipAddr,
}

// `DomainResolver` is an `async_trait`; this is its expansion (the crate does not depend on
// async-trait itself).
impl DomainResolver for DomainToIntercom {
    fn resolve<'a, 'b, 'f>(
        &'a self,
        target: &'b SipAddr,
    ) -> Pin<Box<dyn Future<Output = rsipstack::Result<SipAddr>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        let answer = match &target.addr.host {
            rsipstack::sip::Host::Domain(d) if d.to_string().eq_ignore_ascii_case(&self.domain) => {
                Ok(self.intercom.clone())
            }
            _ => Err(rsipstack::Error::DnsResolutionError(format!(
                "{target}: only the intercom's domain is routable"
            ))),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Puts our full Contact (user part, `+sip.instance`, `;gr=` on answers) on everything we send,
/// and notes the `Reason` of each CANCEL we receive (rsipstack hands the CANCEL to the INVITE's
/// transaction and tells the dialog only that it was cancelled: RFC 3326's "Call completed
/// elsewhere" would be lost).
struct ContactRewriter {
    request: String,
    answer: String,
    cancel_reasons: CancelReasons,
}

/// Call-ID → the `Reason` header of the CANCEL that arrived for it (empty: none).
pub(super) type CancelReasons = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

impl MessageInspector for ContactRewriter {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        let (headers, value) = match &mut msg {
            SipMessage::Request(r) => (&mut r.headers, &self.request),
            SipMessage::Response(r) => (&mut r.headers, &self.answer),
        };
        if headers.iter().any(|h| matches!(h, Header::Contact(_))) {
            headers.unique_push(Header::Contact(value.as_str().into()));
        }
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Request(r) = &msg
            && r.method == Method::Cancel
        {
            let mut call_id = None;
            let mut reasons = Vec::new();
            for h in r.headers.iter() {
                match h {
                    Header::CallId(c) => call_id = Some(c.value().to_owned()),
                    Header::Reason(v) => reasons.push(v.value().to_owned()),
                    _ => {}
                }
            }
            if let (Some(id), Ok(mut map)) = (call_id, self.cancel_reasons.lock()) {
                // Bounded: entries are taken when the ring ends; stray CANCELs must not pile up.
                if map.len() >= 64 {
                    map.clear();
                }
                map.insert(id, reasons.join(", "));
            }
        }
        msg
    }
}

enum Link {
    Tcp(TcpConnection),
    Udp(UdpConnection),
}

/// Everything bound to one connection; dropped (and closed) when the connection goes.
pub(super) struct Flow {
    pub endpoint: EndpointInnerRef,
    pub dialogs: Arc<DialogLayer>,
    pub incoming: TransactionReceiver,
    /// The intercom as rsipstack addresses it (IP, port, transport).
    pub intercom: SipAddr,
    /// Our side of the connection (the port in Contact and Via).
    pub local: SocketAddr,
    pub advertise: IpAddr,
    /// `sip:<user>@<advertise>:<port>;transport=<t>`: the Contact URI (without header params).
    pub contact_uri: String,
    pub credential: Credential,
    /// The `Reason` of CANCELs received on this flow, by Call-ID (see `ContactRewriter`).
    pub cancel_reasons: CancelReasons,
    link: Link,
    /// Cancelled by rsipstack when the TCP connection's reader ends.
    closed: CancellationToken,
    token: CancellationToken,
}

fn transport_name(t: SipTransport) -> &'static str {
    match t {
        SipTransport::Tcp => "tcp",
        SipTransport::Udp => "udp",
    }
}

impl Flow {
    /// Resolves the intercom, connects (TCP) or binds (UDP), and starts a fresh endpoint.
    pub async fn connect(s: &SipSettings, instance: &str) -> Result<Self, String> {
        let remote = tokio::net::lookup_host((s.intercom_host.as_str(), s.intercom_port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", s.intercom_host))?
            .next()
            .ok_or_else(|| format!("{} has no address", s.intercom_host))?;
        let advertise = match s.advertise_address {
            Some(ip) => ip,
            None => crate::intercom::local_ip_towards(remote)
                .await
                .ok_or_else(|| format!("no local address towards {remote}"))?,
        };
        let kind = match s.transport {
            SipTransport::Tcp => Transport::Tcp,
            SipTransport::Udp => Transport::Udp,
        };
        let intercom = SipAddr {
            r#type: Some(kind),
            addr: remote.into(),
        };
        let token = CancellationToken::new();
        let layer = TransportLayer::new_with_domain_resolver(
            token.clone(),
            Box::new(DomainToIntercom {
                domain: s.domain.clone(),
                intercom: intercom.clone(),
            }),
        );
        // One long-lived flow: never closed for idleness; we send keep-alives instead.
        layer.set_stream_idle_timeout(Duration::ZERO);
        let closed = token.child_token();
        let (link, local) = match s.transport {
            SipTransport::Tcp => {
                let conn = TcpConnection::connect(&intercom, Some(closed.clone()))
                    .await
                    .map_err(|e| format!("cannot connect to {remote}: {e}"))?;
                let local = conn
                    .get_addr()
                    .get_socketaddr()
                    .map_err(|e| format!("local address: {e}"))?;
                layer.add_connection(SipConnection::Tcp(conn.clone()));
                (Link::Tcp(conn), local)
            }
            SipTransport::Udp => {
                let bind = SocketAddr::new(advertise, 0);
                let conn =
                    match UdpConnection::create_connection(bind, None, Some(token.child_token()))
                        .await
                    {
                        Ok(c) => c,
                        // The advertise address may not be ours (NAT): any interface then.
                        Err(_) => UdpConnection::create_connection(
                            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
                            None,
                            Some(token.child_token()),
                        )
                        .await
                        .map_err(|e| format!("cannot bind UDP: {e}"))?,
                    };
                let local = conn
                    .get_addr()
                    .get_socketaddr()
                    .map_err(|e| format!("local address: {e}"))?;
                layer.add_transport(conn.clone().into());
                (Link::Udp(conn), local)
            }
        };
        let host = match advertise {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let t = transport_name(s.transport);
        let contact_uri = format!("sip:{}@{host}:{};transport={t}", s.user, local.port());
        let cancel_reasons = CancelReasons::default();
        let rewriter = ContactRewriter {
            cancel_reasons: cancel_reasons.clone(),
            request: format!("<{contact_uri}>;+sip.instance=\"<urn:uuid:{instance}>\""),
            answer: format!(
                "<{contact_uri};gr=urn:uuid:{instance}>;+sip.instance=\"<urn:uuid:{instance}>\""
            ),
        };
        let endpoint = EndpointBuilder::new()
            .with_user_agent(USER_AGENT)
            .with_transport_layer(layer)
            .with_cancel_token(token.clone())
            .with_inspector(Box::new(rewriter))
            .with_option(EndpointOption {
                callid_suffix: Some(advertise.to_string()),
                ..Default::default()
            })
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Options,
                Method::Bye,
                Method::Notify,
                Method::Message,
                Method::Info,
            ])
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| format!("endpoint: {e}"))?;
        let inner = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                tracing::debug!("SIP endpoint stopped: {e}");
            }
        });
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        tracing::info!(%remote, %local, transport = t, "SIP flow to the intercom is up");
        Ok(Self {
            endpoint: endpoint.inner.clone(),
            dialogs,
            incoming,
            intercom,
            local,
            advertise,
            contact_uri,
            credential: Credential {
                username: s.user.clone(),
                password: s.password.clone().unwrap_or_default(),
                realm: None,
                auth_username: None,
            },
            cancel_reasons,
            link,
            closed,
            token,
        })
    }

    /// Cancelled when the TCP connection is gone (for UDP: when the flow is closed).
    pub fn closed_signal(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// RFC 5626 §4.4.1 double-CRLF ping; an error means the flow is dead.
    pub async fn keepalive(&self) -> Result<(), String> {
        let r = match &self.link {
            Link::Tcp(c) => c.send_raw(b"\r\n\r\n").await,
            Link::Udp(c) => c.send_raw(b"\r\n\r\n", &self.intercom).await,
        };
        r.map_err(|e| format!("keep-alive failed: {e}"))
    }

    /// `sip:<user>@<domain>` style URIs.
    pub fn uri(user: &str, domain: &str) -> Result<rsipstack::sip::Uri, String> {
        rsipstack::sip::Uri::try_from(format!("sip:{user}@{domain}").as_str())
            .map_err(|e| format!("bad URI sip:{user}@{domain}: {e}"))
    }

    /// A Call-ID with our advertise address as host.
    pub fn new_call_id(&self) -> String {
        format!("{:032x}@{}", rand::random::<u128>(), self.advertise)
    }

    /// Closes the connection and stops the endpoint's tasks.
    pub fn close(&self) {
        self.closed.cancel();
        self.token.cancel();
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.close();
    }
}
