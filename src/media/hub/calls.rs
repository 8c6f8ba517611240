//! What the hub needs from a call, as two small traits — `CallPlacer` (place a view call, answer
//! or preview a ring) and `HubCall` (one running call) — and their implementation by the
//! bridge's `Intercom` / `MediaCall`. The driver's tests implement them with fakes.

use std::future::Future;

use tokio::sync::{mpsc, watch};

use crate::intercom::media::{MediaPacket, TalkSink};
use crate::intercom::sip::{EndReason, IncomingRing};
use crate::intercom::{Intercom, MediaCall};
use crate::proto::sdp::SpeexVbr;

/// What the hub needs from the intercom: place a view call, answer or preview a ring.
/// `Intercom` in the bridge; a fake in the driver's tests. Packets of the call go to `out`
/// (full = dropped).
pub trait CallPlacer: Clone + Send + Sync + 'static {
    type Call: HubCall;
    fn view(
        &self,
        devaddr: u8,
        out: mpsc::Sender<MediaPacket>,
    ) -> impl Future<Output = Result<Self::Call, String>> + Send;
    fn answer(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> impl Future<Output = Result<Self::Call, String>> + Send;
    /// The ring's silent preview: 183 with our SDP, early media (never a 200).
    fn preview(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> impl Future<Output = Result<Self::Call, String>> + Send;
}

/// One call as the hub uses it.
pub trait HubCall: Send + 'static {
    /// What answering a preview gives back, for [`Self::promote`].
    type Answered: Send + 'static;
    fn call_id(&self) -> &str;
    /// Answers the previewed ring on this call's media (200, then the ACK); the future owns
    /// what it needs, so frames keep flowing meanwhile. Fails on a call that is no preview.
    fn answer_preview(
        &self,
    ) -> impl Future<Output = Result<Self::Answered, String>> + Send + 'static;
    /// The preview is the answered call from now on (same media).
    fn promote(&mut self, answered: Self::Answered);
    fn request_keyframe(&self);
    /// SRTP/SRTCP authentication failures so far.
    fn srtp_failures(&self) -> u64;
    /// `Some(reason)` once the call ended without us.
    fn ended(&self) -> watch::Receiver<Option<EndReason>>;
    /// BYE (bounded; a call that already ended only stops its media).
    fn hang_up(self) -> impl Future<Output = ()> + Send;
    /// Where talk frames for this call go, and the Speex mode its SDP asked for; `None` for a
    /// call that cannot carry talk.
    fn talk_sink(&self) -> Option<(TalkSink, SpeexVbr)> {
        None
    }
}

impl CallPlacer for Intercom {
    type Call = MediaCall;
    async fn view(&self, devaddr: u8, out: mpsc::Sender<MediaPacket>) -> Result<MediaCall, String> {
        Intercom::view(self, devaddr, out)
            .await
            .map_err(|e| e.to_string())
    }
    async fn answer(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<MediaCall, String> {
        self.answer_ring(&ring, out)
            .await
            .map_err(|e| e.to_string())
    }
    async fn preview(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<MediaCall, String> {
        self.preview_ring(&ring, out)
            .await
            .map_err(|e| e.to_string())
    }
}

impl HubCall for MediaCall {
    type Answered = crate::intercom::sip::AnsweredCall;
    fn call_id(&self) -> &str {
        &self.call_id
    }
    fn answer_preview(
        &self,
    ) -> impl Future<Output = Result<Self::Answered, String>> + Send + 'static {
        let answer = MediaCall::answer_preview(self);
        async move { answer.await.map_err(|e| e.to_string()) }
    }
    fn promote(&mut self, answered: Self::Answered) {
        MediaCall::promote(self, answered);
    }
    fn request_keyframe(&self) {
        MediaCall::request_keyframe(self);
    }
    fn srtp_failures(&self) -> u64 {
        self.stats().srtp_failures()
    }
    fn ended(&self) -> watch::Receiver<Option<EndReason>> {
        self.ended_watch()
    }
    async fn hang_up(self) {
        self.hangup().await;
    }
    fn talk_sink(&self) -> Option<(TalkSink, SpeexVbr)> {
        Some(MediaCall::talk_sink(self))
    }
}
