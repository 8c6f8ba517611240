//! `Intercom`: SIP + media joined into calls the rest of the bridge can use, and the commands
//! sent as SIP MESSAGE with OpenWebNet bodies (c300x-protocol.md §4, §7, §8).
//! A `MediaCall` is one SIP dialog (a view call we placed, a ring we answered, or a ring we
//! preview with early media after our 183) plus its SRTP sockets; dropping it ends the media,
//! and `hangup` sends the BYE (a preview has no dialog of ours to end: the ring goes on).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::media::{
    CallMedia, CallSockets, MediaError, MediaPacket, MediaStats, PortPool, RemoteEndpoint, TalkSink,
};
use super::sip::{
    self, AnsweredCall, EndReason, IncomingRing, RingEvent, SipError, SipHandle, SipSettings,
    ViewCall,
};
use crate::config::{Config, Lock};
use crate::proto::openwebnet;
use crate::proto::sdp::{self, LocalMedia, RemoteMedia, SdpError, SpeexVbr};
use crate::proto::srtp::SdesKey;

#[derive(Debug, thiserror::Error)]
pub enum IntercomError {
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("call {call_id}: the intercom's SDP is unusable: {source}")]
    Sdp {
        call_id: String,
        #[source]
        source: SdpError,
    },
    #[error("call {call_id} is not a ring preview: nothing to answer")]
    NotAPreview { call_id: String },
    #[error("cannot resolve intercom_host `{host}`: {detail}")]
    Resolve { host: String, detail: String },
    #[error("lock `{lock}`: the unlock was accepted but the release {release} failed: {source}")]
    Release {
        lock: String,
        release: String,
        #[source]
        source: Box<SipError>,
    },
}

/// The bridge's handle on the intercom: cheap to clone.
#[derive(Clone)]
pub struct Intercom {
    sip: SipHandle,
    pool: PortPool,
    media_ip: IpAddr,
    events: Arc<Events>,
}

/// What happened so far, for the API, MQTT and metrics.
#[derive(Debug, Default)]
pub struct Events {
    pub rings: AtomicU64,
    pub unlocks: AtomicU64,
    pub unlock_failures: AtomicU64,
    ringing: Mutex<Option<IncomingRing>>,
    last_ring: Mutex<Option<SystemTime>>,
}

impl Events {
    /// The ring that is ringing now (not yet answered, cancelled or timed out).
    pub fn ringing(&self) -> Option<IncomingRing> {
        self.ringing.lock().ok().and_then(|r| r.clone())
    }

    pub fn last_ring(&self) -> Option<SystemTime> {
        self.last_ring.lock().ok().and_then(|r| *r)
    }

    fn on_ring(&self, ev: &RingEvent) {
        let Ok(mut ringing) = self.ringing.lock() else {
            return;
        };
        match ev {
            RingEvent::Incoming(r) => {
                self.rings.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut t) = self.last_ring.lock() {
                    *t = Some(r.at);
                }
                *ringing = Some(r.clone());
            }
            RingEvent::Ended(e) => {
                if ringing.as_ref().is_some_and(|r| r.call_id == e.call_id) {
                    *ringing = None;
                }
            }
        }
    }

    fn answered(&self, call_id: &str) {
        if let Ok(mut ringing) = self.ringing.lock()
            && ringing.as_ref().is_some_and(|r| r.call_id == call_id)
        {
            *ringing = None;
        }
    }
}

/// How long after the ring's INVITE the 183 goes out (memphi2/ha-bticino-c300x waits about
/// 300 ms after its 180, c300x-protocol.md §7); the sockets are bound before the wait.
pub const PREVIEW_DELAY: Duration = Duration::from_millis(300);

enum Dialog {
    View(ViewCall),
    Ring(AnsweredCall),
    Preview(Preview),
}

/// A ring we sent 183 to: what the answer needs (same ports and keys, audio sendrecv).
struct Preview {
    call_id: String,
    sip: SipHandle,
    answer_sdp: String,
    ended: watch::Receiver<Option<EndReason>>,
}

/// One call with the intercom and its running media.
pub struct MediaCall {
    pub call_id: String,
    /// What the intercom's SDP said (ports, PTs, keys, directions).
    pub remote: RemoteMedia,
    dialog: Dialog,
    media: CallMedia,
}

impl Intercom {
    /// Starts the SIP user agent (it registers at once) for the configured intercom.
    pub async fn start(cfg: &Config, shutdown: CancellationToken) -> Result<Self, IntercomError> {
        let settings = SipSettings::from_config(cfg)?;
        let media_ip = match cfg.advertise_address {
            Some(ip) => ip,
            None => detect_media_ip(&settings.intercom_host, settings.intercom_port).await?,
        };
        let mut settings = settings;
        settings.advertise_address = Some(media_ip);
        let sip = sip::start(settings, shutdown);
        Ok(Self::from_parts(
            sip,
            PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max),
            media_ip,
        ))
    }

    /// For tests and tools that build the SIP agent themselves. Needs a tokio runtime: a small
    /// task follows the rings for `events()`.
    pub fn from_parts(sip: SipHandle, pool: PortPool, media_ip: IpAddr) -> Self {
        let events = Arc::new(Events::default());
        let mut rings = sip.rings();
        let ev = events.clone();
        tokio::spawn(async move {
            loop {
                match rings.recv().await {
                    Ok(r) => ev.on_ring(&r),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        });
        Self {
            sip,
            pool,
            media_ip,
            events,
        }
    }

    /// Ring and unlock counters, the ring that is ringing now, the time of the last ring.
    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn sip(&self) -> &SipHandle {
        &self.sip
    }

    /// The address in our SDP `c=` line, where the intercom sends SRTP.
    pub fn media_ip(&self) -> IpAddr {
        self.media_ip
    }

    fn local_media(&self) -> Result<(CallSockets, LocalMedia), IntercomError> {
        // Sockets are bound before the INVITE so early packets are not lost (§4.2).
        let sockets = CallSockets::bind(self.media_ip, &self.pool)?;
        let local = LocalMedia {
            ip: self.media_ip,
            audio_port: sockets.audio_port(),
            video_port: sockets.video_port(),
            audio_key: SdesKey::random(),
            video_key: SdesKey::random(),
        };
        Ok((sockets, local))
    }

    /// A ring's offer, parsed, and the sockets + local media an answer or a preview needs.
    fn ring_media(
        &self,
        ring: &IncomingRing,
    ) -> Result<(RemoteMedia, CallSockets, LocalMedia), IntercomError> {
        let offer =
            sdp::parse_remote(ring.offer_sdp.as_bytes()).map_err(|source| IntercomError::Sdp {
                call_id: ring.call_id.clone(),
                source,
            })?;
        let (sockets, local) = self.local_media()?;
        Ok((offer, sockets, local))
    }

    /// A view call to panel `devaddr`: INVITE with a fresh offer, then media on the answer.
    /// Received packets go to `out` (a full queue drops, never blocks).
    pub async fn view(
        &self,
        devaddr: u8,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<MediaCall, IntercomError> {
        let (sockets, local) = self.local_media()?;
        let session: u32 = rand::random();
        let offer = sdp::view_offer(devaddr, u64::from(session), u64::from(session), &local);
        let call = self.sip.invite(devaddr, offer).await?;
        let remote = match sdp::parse_remote(call.answer_sdp.as_bytes()) {
            Ok(r) => r,
            Err(source) => {
                let call_id = call.call_id.clone();
                call.hangup().await;
                return Err(IntercomError::Sdp { call_id, source });
            }
        };
        MediaCall::start(Dialog::View(call), remote, &local, sockets, out).await
    }

    /// Answers a doorbell ring (never done on our own: it takes the call from the family's
    /// phones, §7): 200 with our SDP, then media as for a view call.
    pub async fn answer_ring(
        &self,
        ring: &IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<MediaCall, IntercomError> {
        let (offer, sockets, local) = self.ring_media(ring)?;
        let answer = sdp::ring_answer(u64::from(rand::random::<u32>()), &local, &offer, true);
        let call = self.sip.answer_ring(&ring.call_id, answer).await?;
        self.events.answered(&ring.call_id);
        MediaCall::start(Dialog::Ring(call), offer, &local, sockets, out).await
    }

    /// A ring's silent preview (c300x-protocol.md §7): sockets bound, then — [`PREVIEW_DELAY`]
    /// after the INVITE — `183 Session Progress` with our SDP (audio `a=inactive`, video
    /// `recvonly`, our keys). Media is decrypted with the keys of the INVITE's offer (§4.3); we
    /// send RTCP but no audio. Never a 200: [`MediaCall::answer_preview`] does that on request.
    pub async fn preview_ring(
        &self,
        ring: &IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<MediaCall, IntercomError> {
        let (offer, sockets, local) = self.ring_media(ring)?;
        let session = u64::from(rand::random::<u32>());
        let early = sdp::ring_answer(session, &local, &offer, false);
        let answer_sdp = sdp::ring_answer(session, &local, &offer, true);
        let since = ring.at.elapsed().unwrap_or_default();
        if let Some(wait) = PREVIEW_DELAY.checked_sub(since) {
            tokio::time::sleep(wait).await;
        }
        let ended = self.sip.early_media(&ring.call_id, early).await?;
        let preview = Preview {
            call_id: ring.call_id.clone(),
            sip: self.sip.clone(),
            answer_sdp,
            ended,
        };
        MediaCall::start(Dialog::Preview(preview), offer, &local, sockets, out).await
    }

    /// Opens a door: `*8*19*W##`, then after the lock's pulse `*8*20*W##` (§8). Ok only when
    /// the intercom answered both MESSAGEs with 2xx.
    pub async fn unlock(&self, lock: &Lock) -> Result<(), IntercomError> {
        let result = self.unlock_frames(lock).await;
        let counter = if result.is_ok() {
            &self.events.unlocks
        } else {
            &self.events.unlock_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn unlock_frames(&self, lock: &Lock) -> Result<(), IntercomError> {
        self.sip.message(&openwebnet::unlock(lock.where_)).await?;
        tokio::time::sleep(lock.pulse).await;
        let release = openwebnet::release(lock.where_);
        self.sip
            .message(&release)
            .await
            .map_err(|source| IntercomError::Release {
                lock: lock.name.clone(),
                release,
                source: Box::new(source),
            })
    }

    /// Staircase light: press `*8*21*10##`, release `*8*22*10##` after `pulse`.
    pub async fn staircase_light(&self, pulse: Duration) -> Result<(), IntercomError> {
        self.sip.message(&openwebnet::staircase_light_on()).await?;
        tokio::time::sleep(pulse).await;
        self.sip.message(&openwebnet::staircase_light_off()).await?;
        Ok(())
    }

    /// Answering machine on (`*8*91##`) or off (`*8*92##`).
    pub async fn voicemail(&self, on: bool) -> Result<(), IntercomError> {
        Ok(self.sip.message(&openwebnet::voicemail(on)).await?)
    }
}

impl MediaCall {
    async fn start(
        dialog: Dialog,
        remote: RemoteMedia,
        local: &LocalMedia,
        sockets: CallSockets,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<Self, IntercomError> {
        let endpoint = RemoteEndpoint {
            ip: remote.video.ip,
            audio_rtp: remote.audio.rtp_port,
            audio_rtcp: remote.audio.rtcp_port,
            video_rtp: remote.video.rtp_port,
            video_rtcp: remote.video.rtcp_port,
            audio_pt: remote.audio.pt,
            video_pt: remote.video.pt,
            audio_rx_key: remote.audio.key.clone(),
            video_rx_key: remote.video.key.clone(),
            audio_tx_key: local.audio_key.clone(),
            video_tx_key: local.video_key.clone(),
        };
        let call_id = match &dialog {
            Dialog::View(c) => c.call_id.clone(),
            Dialog::Ring(c) => c.call_id.clone(),
            Dialog::Preview(p) => p.call_id.clone(),
        };
        let send_audio = !matches!(dialog, Dialog::Preview(_));
        // The audio may come from another address than the video (separate c= lines).
        if remote.audio.ip != remote.video.ip {
            tracing::warn!(%call_id, audio = %remote.audio.ip, video = %remote.video.ip, "audio and video from different addresses; using the video one");
        }
        match CallMedia::start_with(sockets, endpoint, out, send_audio) {
            Ok(media) => Ok(Self {
                call_id,
                remote,
                dialog,
                media,
            }),
            Err(e) => {
                match dialog {
                    Dialog::View(c) => c.hangup().await,
                    Dialog::Ring(c) => c.hangup().await,
                    Dialog::Preview(_) => {}
                }
                Err(e.into())
            }
        }
    }

    /// Asks the intercom for an IDR now (RTCP PLI), e.g. when a viewer joins.
    pub fn request_keyframe(&self) {
        self.media.request_keyframe();
    }

    pub fn stats(&self) -> MediaStats {
        self.media.stats()
    }

    /// Where talk frames for this call go, and the Speex rate mode the intercom's SDP asked
    /// for (`a=fmtp:<pt> vbr=on` on the C300X).
    pub fn talk_sink(&self) -> (TalkSink, SpeexVbr) {
        (self.media.talk_sink(), self.remote.audio.speex_vbr())
    }

    /// Where our media sockets listen (the ports in our SDP).
    pub fn local_ports(&self) -> (u16, u16) {
        (self.media.audio_port(), self.media.video_port())
    }

    /// The intercom's video RTP address.
    pub fn remote_video(&self) -> SocketAddr {
        SocketAddr::new(self.remote.video.ip, self.remote.video.rtp_port)
    }

    /// `None` while the call is up; why it ended otherwise.
    pub fn end_reason(&self) -> Option<EndReason> {
        match &self.dialog {
            Dialog::View(c) => c.end_reason(),
            Dialog::Ring(c) => c.end_reason(),
            Dialog::Preview(p) => *p.ended.borrow(),
        }
    }

    /// Fires when the call ends from the other side (remote BYE, connection lost, shutdown;
    /// for a preview: the ring ended without our 200).
    pub fn ended_watch(&self) -> watch::Receiver<Option<EndReason>> {
        match &self.dialog {
            Dialog::View(c) => c.ended_watch(),
            Dialog::Ring(c) => c.ended_watch(),
            Dialog::Preview(p) => p.ended.clone(),
        }
    }

    /// Whether this is a ring's silent preview (not answered yet).
    pub fn is_preview(&self) -> bool {
        matches!(self.dialog, Dialog::Preview(_))
    }

    /// Answers the previewed ring: `200 OK` with the ports and keys of our 183 (audio now
    /// sendrecv), waiting for the ACK. The future owns what it needs, so the call keeps
    /// streaming meanwhile; hand its result to [`Self::promote`] — no new sockets, no media gap.
    pub fn answer_preview(
        &self,
    ) -> impl std::future::Future<Output = Result<AnsweredCall, IntercomError>> + Send + 'static
    {
        let preview = match &self.dialog {
            Dialog::Preview(p) => Some((p.sip.clone(), p.call_id.clone(), p.answer_sdp.clone())),
            _ => None,
        };
        let call_id = self.call_id.clone();
        async move {
            let Some((sip, call_id, sdp)) = preview else {
                return Err(IntercomError::NotAPreview { call_id });
            };
            Ok(sip.answer_ring(&call_id, sdp).await?)
        }
    }

    /// The preview became the answered call: its dialog from now on, and our audio on.
    pub fn promote(&mut self, answered: AnsweredCall) {
        self.dialog = Dialog::Ring(answered);
        self.media.set_audio_sending(true);
    }

    /// Stops the media and sends BYE (a BYE that fails or takes too long counts as done).
    pub async fn hangup(self) {
        self.media.stop();
        match self.dialog {
            Dialog::View(c) => c.hangup().await,
            Dialog::Ring(c) => c.hangup().await,
            // The ring stays with the other phones; only our early media stops.
            Dialog::Preview(_) => {}
        }
    }
}

/// The address we advertise when none is configured: the one our host uses towards the intercom.
async fn detect_media_ip(host: &str, port: u16) -> Result<IpAddr, IntercomError> {
    let resolve = |detail: String| IntercomError::Resolve {
        host: host.to_owned(),
        detail,
    };
    let peer = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| resolve(e.to_string()))?
        .next()
        .ok_or_else(|| resolve("no address".to_owned()))?;
    super::local_ip_towards(peer)
        .await
        .ok_or_else(|| resolve(format!("no local route to {peer}; set advertise_address")))
}
