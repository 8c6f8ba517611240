//! One shared H.264 → JPEG feed per panel: it holds one hub lease (kind MJPEG) and decodes only
//! while at least one MJPEG client or live snapshot subscribes; the last one gone ends it.
//! Decoding runs on its own thread; subscribers see the newest picture through a `watch`.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::watch;

use super::tasks::Tasks;
use crate::media::hub::{Frame, StreamHub, VideoFrame, ViewerKind};
use crate::media::jpeg::{H264Decoder, JpegEncoder};

/// One encoded picture.
#[derive(Debug)]
pub struct Picture {
    pub jpeg: Bytes,
    pub received: SystemTime,
    /// Counts pictures of this feed, so a client can tell a new one from a repeat.
    pub index: u64,
}

#[derive(Debug, Clone)]
pub enum FeedState {
    Waiting,
    Picture(Arc<Picture>),
    Failed(String),
}

type Slot = Arc<Mutex<Option<(u64, watch::Sender<FeedState>)>>>;

pub struct JpegFeed {
    hub: StreamHub,
    quality: u8,
    slot: Slot,
    tasks: Tasks,
}

/// Access units queued for the decoder thread; beyond, frames are skipped up to the next IDR.
const DECODE_QUEUE: usize = 32;

impl JpegFeed {
    pub fn new(hub: StreamHub, quality: u8, tasks: Tasks) -> Self {
        Self {
            hub,
            quality,
            slot: Arc::new(Mutex::new(None)),
            tasks,
        }
    }

    /// Subscribes; the first subscriber starts the feed (and with it, maybe, a call).
    pub fn subscribe(&self) -> watch::Receiver<FeedState> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let Ok(mut slot) = self.slot.lock() else {
            let (_, rx) = watch::channel(FeedState::Failed("feed lock poisoned".into()));
            return rx;
        };
        if let Some((_, tx)) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(FeedState::Waiting);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = Some((id, tx.clone()));
        self.tasks.spawn(run(
            self.hub.clone(),
            tx,
            self.slot.clone(),
            id,
            self.quality,
        ));
        rx
    }

    /// The newest picture of a running feed, without subscribing (never starts anything).
    pub fn latest(&self) -> Option<Arc<Picture>> {
        let slot = self.slot.lock().ok()?;
        let (_, tx) = slot.as_ref()?;
        match &*tx.borrow() {
            FeedState::Picture(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Whether the feed runs (it holds a lease then).
    pub fn running(&self) -> bool {
        self.slot.lock().map(|s| s.is_some()).unwrap_or(false)
    }
}

/// Clears the slot if it still holds feed `id`; with `only_if_unused`, only when nobody listens.
fn release(slot: &Slot, id: u64, tx: &watch::Sender<FeedState>, only_if_unused: bool) -> bool {
    let Ok(mut s) = slot.lock() else {
        return true;
    };
    if only_if_unused && tx.receiver_count() > 0 {
        return false;
    }
    if s.as_ref().is_some_and(|(i, _)| *i == id) {
        *s = None;
    }
    true
}

async fn run(hub: StreamHub, tx: watch::Sender<FeedState>, slot: Slot, id: u64, quality: u8) {
    let join = hub.join(ViewerKind::Mjpeg);
    tokio::pin!(join);
    let joined = loop {
        tokio::select! {
            j = &mut join => break j,
            _ = tx.closed() => if release(&slot, id, &tx, true) {
                return;
            },
        }
    };
    let mut viewer = match joined {
        Ok(v) => v,
        Err(e) => {
            release(&slot, id, &tx, false);
            tx.send_replace(FeedState::Failed(e.to_string()));
            return;
        }
    };
    let (frames, decoder_rx) = std_mpsc::sync_channel::<Arc<VideoFrame>>(DECODE_QUEUE);
    let out = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("jpeg-feed".into())
        .spawn(move || decode_loop(&decoder_rx, &out, quality));
    if let Err(e) = spawned {
        release(&slot, id, &tx, false);
        tx.send_replace(FeedState::Failed(format!("decoder thread: {e}")));
        return;
    }
    let mut skip_to_idr = false;
    loop {
        tokio::select! {
            _ = tx.closed() => {
                if release(&slot, id, &tx, true) {
                    break;
                }
            }
            f = viewer.frames.recv() => match f {
                None => {
                    release(&slot, id, &tx, false);
                    tx.send_replace(FeedState::Failed("the stream ended".into()));
                    break;
                }
                Some(Frame::Video(v)) => {
                    if skip_to_idr && !v.au.keyframe {
                        continue;
                    }
                    skip_to_idr = frames.try_send(v).is_err();
                }
                Some(Frame::Discontinuity) => skip_to_idr = true,
                Some(Frame::Audio(_)) => {}
            },
        }
    }
    // Dropping `frames` ends the decoder thread; dropping `viewer` is leaving the hub.
    drop(frames);
    drop(viewer);
}

/// Decodes every access unit (P-frames need their predecessors) but encodes only the newest
/// picture of each batch, so a slow encoder skips pictures instead of falling behind.
fn decode_loop(
    rx: &std_mpsc::Receiver<Arc<VideoFrame>>,
    tx: &watch::Sender<FeedState>,
    quality: u8,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tx.send_replace(FeedState::Failed(e.to_string()));
            return;
        }
    };
    let mut encoder = JpegEncoder::new(quality);
    let mut started = false;
    let mut index = 0u64;
    let mut errors = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let last = batch.len() - 1;
        for (i, frame) in batch.into_iter().enumerate() {
            // The first frames of a call may be garbage until the first IDR (streaming.md §7).
            if !started && !frame.au.keyframe {
                continue;
            }
            started = true;
            let picture = match decoder.decode(&frame.au.to_annexb()) {
                Ok(p) => p,
                Err(e) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::debug!(errors, "MJPEG feed: {e}");
                    }
                    continue;
                }
            };
            if let (true, Some(p)) = (i == last, picture) {
                match encoder.encode(p) {
                    Ok(jpeg) => {
                        index += 1;
                        tx.send_replace(FeedState::Picture(Arc::new(Picture {
                            jpeg,
                            received: frame.received,
                            index,
                        })));
                    }
                    Err(e) => tracing::debug!("MJPEG feed: {e}"),
                }
            }
        }
    }
}
