//! The hub driver with a fake intercom (`CallPlacer`) and tokio's paused clock: the timers run
//! in virtual time, calls are placed and ended by the test, packets are crafted H.264. Checks
//! what the driver does with the machine's actions, not the rules themselves (`machine/tests`).

use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::intercom::media::{MediaKind, TalkFrame, TalkSink};
use crate::media::hub::{Frame, HubState, StreamHub, Viewer, ViewerKind};
use crate::proto::sdp::SpeexVbr;

use crate::proto::h264::testdata::{PPS, SPS};
/// The fake intercom answers after this long.
const ANSWER: Duration = Duration::from_millis(100);

/// The test's end of one call: feed packets, end it from the intercom's side.
struct Ctl {
    id: String,
    out: Option<mpsc::Sender<MediaPacket>>,
    ended: Arc<watch::Sender<Option<EndReason>>>,
    seq: u16,
    ts: u32,
}

impl Ctl {
    async fn send(&mut self, marker: bool, payload: &[u8]) {
        self.seq = self.seq.wrapping_add(1);
        let p = MediaPacket {
            kind: MediaKind::Video,
            seq: self.seq,
            timestamp: self.ts,
            marker,
            ssrc: 1,
            payload_type: 96,
            payload: Bytes::copy_from_slice(payload),
            arrival: SystemTime::now(),
        };
        if let Some(out) = &self.out {
            out.send(p).await.expect("the hub takes packets");
        }
    }

    async fn keyframe(&mut self) {
        self.ts += 9000;
        self.send(false, SPS).await;
        self.send(false, PPS).await;
        self.send(true, &[0x65, 0x88, 0x84, 0x21]).await;
    }

    async fn p_frame(&mut self) {
        self.ts += 9000;
        self.send(true, &[0x41, 0x9a, 0x02, 0x03]).await;
    }
}

#[derive(Default)]
struct FakeState {
    placed: Vec<String>,
    calls: Vec<Ctl>,
    hung_up: Vec<String>,
    /// The next placement fails with this.
    fail: Option<String>,
    /// Previews answered (`answer_preview`) and promoted, by call id.
    answered: Vec<String>,
    /// The next `answer_preview` fails with this.
    answer_fails: Option<String>,
    /// What talkers sent into each call (index = call number − 1).
    talk: Vec<Option<mpsc::Receiver<TalkFrame>>>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.0.lock().expect("fake state"))
    }

    fn placed(&self) -> Vec<String> {
        self.with(|s| s.placed.clone())
    }

    fn hung_up(&self) -> Vec<String> {
        self.with(|s| s.hung_up.clone())
    }

    /// Takes the control of call `n` (1-based) out of the fake to drive it.
    fn call(&self, n: usize) -> Ctl {
        self.with(|s| {
            let c = &mut s.calls[n - 1];
            Ctl {
                id: c.id.clone(),
                out: c.out.take(),
                ended: c.ended.clone(),
                seq: 0,
                ts: 0,
            }
        })
    }

    /// The talk frames sent into call `n` (1-based) so far.
    fn talk_frames(&self, n: usize) -> usize {
        self.with(|s| {
            let rx = s.talk[n - 1].as_mut().expect("talk receiver");
            std::iter::from_fn(|| rx.try_recv().ok()).count()
        })
    }

    async fn place(
        &self,
        what: String,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<FakeCall, String> {
        tokio::time::sleep(ANSWER).await;
        self.with(|s| {
            s.placed.push(what);
            if let Some(e) = s.fail.take() {
                return Err(e);
            }
            let id = format!("call-{}", s.calls.len() + 1);
            let ended = Arc::new(watch::channel(None).0);
            let (talk, talk_rx) = TalkSink::channel(64);
            s.talk.push(Some(talk_rx));
            s.calls.push(Ctl {
                id: id.clone(),
                out: Some(out),
                ended: ended.clone(),
                seq: 0,
                ts: 0,
            });
            Ok(FakeCall {
                id,
                ended,
                fake: self.clone(),
                talk,
            })
        })
    }
}

struct FakeCall {
    id: String,
    ended: Arc<watch::Sender<Option<EndReason>>>,
    fake: Fake,
    talk: TalkSink,
}

impl CallPlacer for Fake {
    type Call = FakeCall;
    async fn view(&self, devaddr: u8, out: mpsc::Sender<MediaPacket>) -> Result<FakeCall, String> {
        self.place(format!("view:{devaddr}"), out).await
    }
    async fn answer(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<FakeCall, String> {
        self.place(format!("answer:{}", ring.call_id), out).await
    }
    async fn preview(
        &self,
        ring: IncomingRing,
        out: mpsc::Sender<MediaPacket>,
    ) -> Result<FakeCall, String> {
        self.place(format!("preview:{}", ring.call_id), out).await
    }
}

impl HubCall for FakeCall {
    type Answered = String;
    fn call_id(&self) -> &str {
        &self.id
    }
    fn answer_preview(&self) -> impl Future<Output = Result<String, String>> + Send + 'static {
        let (fake, id) = (self.fake.clone(), self.id.clone());
        async move {
            tokio::time::sleep(ANSWER).await;
            match fake.with(|s| s.answer_fails.take()) {
                Some(e) => Err(e),
                None => Ok(id),
            }
        }
    }
    fn promote(&mut self, answered: String) {
        self.fake.with(|s| s.answered.push(answered));
    }
    fn request_keyframe(&self) {}
    fn srtp_failures(&self) -> u64 {
        0
    }
    fn ended(&self) -> watch::Receiver<Option<EndReason>> {
        self.ended.subscribe()
    }
    async fn hang_up(self) {
        // A BYE only for a call the intercom has not ended itself.
        if self.ended.borrow().is_none() {
            self.fake.with(|s| s.hung_up.push(self.id.clone()));
        }
        self.ended.send_replace(Some(EndReason::LocalHangup));
    }
    fn talk_sink(&self) -> Option<(TalkSink, SpeexVbr)> {
        Some((self.talk.clone(), SpeexVbr::On))
    }
}

fn settings() -> HubSettings {
    HubSettings {
        linger: Duration::from_secs(10),
        start_timeout: Duration::from_secs(10),
        no_rtp_timeout: Duration::from_secs(5),
        retry_backoff: Duration::from_secs(5),
        max_call: Duration::from_secs(300),
        viewer_queue: 256,
        audio: None,
    }
}

fn hub(fake: &Fake) -> (StreamHub, CancellationToken, JoinHandle<()>) {
    let stop = CancellationToken::new();
    let panel = Panel {
        name: "doorbell".into(),
        devaddr: 20,
    };
    let (hub, task) = StreamHub::new(panel, fake.clone(), settings(), stop.clone());
    (hub, stop, tokio::spawn(task))
}

/// Joins in the background; the hub answers once a keyframe arrives.
fn join(hub: &StreamHub) -> JoinHandle<Result<Viewer, HubError>> {
    let hub = hub.clone();
    tokio::spawn(async move { hub.join(ViewerKind::Rtsp).await })
}

/// Lets the hub and the fake run for `ms` of virtual time.
async fn after(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn frames(v: &mut Viewer) -> Vec<&'static str> {
    std::iter::from_fn(|| v.frames.try_recv().ok())
        .map(|f| match f {
            Frame::Video(v) if v.au.keyframe => "K",
            Frame::Video(_) => "P",
            Frame::Audio(_) => "A",
            Frame::Discontinuity => "D",
        })
        .collect()
}

/// A viewer watching call 1 (keyframe seen).
async fn watching(fake: &Fake, hub: &StreamHub) -> (Viewer, Ctl) {
    let joining = join(hub);
    after(150).await;
    let mut call = fake.call(1);
    call.keyframe().await;
    let mut v = joining.await.expect("task").expect("joined");
    assert_eq!(frames(&mut v), ["K"]);
    (v, call)
}

#[tokio::test(start_paused = true)]
async fn first_viewer_calls_last_one_lingers_then_bye_and_packets_publish_nothing() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut v, mut call) = watching(&fake, &hub).await;
    assert_eq!(fake.placed(), ["view:20"]);
    let s = hub.status();
    assert_eq!(
        (s.state, s.viewers, s.call_source),
        (HubState::Live, 1, Some("view"))
    );
    assert_eq!(s.call_id.as_deref(), Some("call-1"));
    let mut watch = hub.status_watch();
    watch.borrow_and_update();
    for _ in 0..30 {
        call.p_frame().await;
        after(100).await;
    }
    assert_eq!(frames(&mut v).len(), 30);
    assert!(
        !watch.has_changed().expect("hub alive"),
        "30 frames must not wake the status followers"
    );
    assert!(hub.status().frames_in >= 31, "but the counters count them");
    drop(v);
    after(9_900).await;
    assert_eq!(hub.status().state, HubState::Lingering);
    assert!(fake.hung_up().is_empty(), "not before the linger");
    after(200).await;
    assert_eq!(fake.hung_up(), ["call-1"]);
    let s = hub.status();
    assert_eq!(s.state, HubState::Idle);
    assert_eq!(s.calls_ended, [("linger", 1)]);
    assert_eq!(s.last_end.map(|(r, _)| r), Some(CallEnd::Linger));
}

#[tokio::test(start_paused = true)]
async fn every_remote_hang_up_is_replaced_and_the_viewer_keeps_watching() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut v, call) = watching(&fake, &hub).await;
    let mut calls = vec![call];
    for n in 1..=3 {
        calls[n - 1].ended.send_replace(Some(EndReason::RemoteBye));
        after(150).await;
        calls.push(fake.call(n + 1));
        calls[n].keyframe().await;
        after(10).await;
        assert_eq!(
            frames(&mut v),
            ["D", "K"],
            "hang-up {n}: the next call's keyframe"
        );
    }
    assert_eq!(fake.placed().len(), 4);
    assert!(fake.hung_up().is_empty(), "the intercom ended them: no BYE");
    let s = hub.status();
    assert_eq!(s.calls_ended, [("remote_bye", 3)]);
    assert_eq!((s.state, s.viewers), (HubState::Live, 1));
}

#[tokio::test(start_paused = true)]
async fn an_answered_ring_survives_a_joiner_that_gives_up_and_ends_on_hang_up() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let ring = IncomingRing {
        call_id: "ring-1".into(),
        from: "<sip:c300x@example>".into(),
        offer_sdp: String::new(),
        at: SystemTime::now(),
    };
    hub.answer_ring(ring).await.expect("answered");
    assert_eq!(fake.placed(), ["answer:ring-1"]);
    assert_eq!(hub.status().call_source, Some("answered_ring"));
    // The unit sends no video: the joiner gives up after the start timeout...
    let err = hub.join(ViewerKind::Hls).await.err().expect("times out");
    assert!(
        matches!(err, HubError::StartTimeout { secs: 10, .. }),
        "{err}"
    );
    after(60_000).await;
    // ...and the answered call stays: no linger, no abort.
    assert!(fake.hung_up().is_empty());
    assert_eq!(hub.status().call_id.as_deref(), Some("call-1"));
    hub.hang_up();
    after(10).await;
    assert_eq!(fake.hung_up(), ["call-1"]);
    assert_eq!(hub.status().calls_ended, [("local_hangup", 1)]);
    assert_eq!(hub.status().state, HubState::Idle);
}

#[tokio::test(start_paused = true)]
async fn dead_media_brings_a_new_call_and_a_failed_start_closes_viewers_then_backs_off() {
    let fake = Fake::default();
    let (hub, _stop, _task) = hub(&fake);
    let (mut v, mut call) = watching(&fake, &hub).await;
    fake.with(|s| s.fail = Some("486 Busy Here".into()));
    call.out = None; // both media tasks gone: the packet channel closes
    after(150).await;
    assert_eq!(hub.status().calls_ended, [("media_died", 1)]);
    assert_eq!(fake.hung_up(), ["call-1"], "the dialog was still up: BYE");
    assert_eq!(fake.placed().len(), 2);
    let s = hub.status();
    assert_eq!(s.state, HubState::Failed);
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("486")),
        "{s:?}"
    );
    assert!(v.frames.recv().await.is_none(), "the viewer's stream ended");
    after(5_000).await;
    assert_eq!(
        hub.status().state,
        HubState::Idle,
        "after the backoff, with nobody left"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_hangs_up_refuses_joiners_and_ends_the_task() {
    let fake = Fake::default();
    let (hub, stop, task) = hub(&fake);
    let (_v, _call) = watching(&fake, &hub).await;
    let waiting = join(&hub);
    after(10).await;
    stop.cancel();
    task.await.expect("the hub task ends cleanly");
    assert_eq!(fake.hung_up(), ["call-1"]);
    assert_eq!(hub.status().calls_ended, [("shutdown", 1)]);
    // The waiting joiner was admitted (a keyframe was cached) or refused; later ones are told.
    let _ = waiting.await;
    assert!(matches!(
        hub.join(ViewerKind::Rtsp).await,
        Err(HubError::Stopped { .. })
    ));
}

mod ring;
mod talk;
