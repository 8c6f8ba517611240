//! The hub's frame path: decrypted packets of the live call → depacketizer / Speex→AAC →
//! continuous timestamps → GOP cache → each viewer's bounded queue (a full queue drops and
//! waits for the next keyframe; nobody else is slowed). Lifecycle decisions stay in `task.rs`.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::task::{HubTask, PLI_INTERVAL};
use super::{AudioFrame, Frame, HubState, StreamInfo, VideoFrame};
use crate::intercom::media::{MediaKind, MediaPacket};
use crate::media::transcode::SpeexToAac;

impl HubTask {
    pub(super) fn on_packet(&mut self, p: MediaPacket) {
        let Some(l) = self.live.as_mut() else { return };
        let now = Instant::now();
        l.last_packet = now;
        let first = *l.first_packet.get_or_insert(now);
        let since = now.duration_since(first);
        match p.kind {
            MediaKind::Video => {
                let aus = self.depack.push(p.seq, p.timestamp, p.marker, &p.payload);
                // After loss the depacketizer waits for an IDR: ask for one (at most every 500 ms).
                if l.keyframe_seen
                    && self.depack.waiting_for_keyframe()
                    && l.last_pli
                        .is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL)
                {
                    l.last_pli = Some(now);
                    l.call.request_keyframe();
                }
                for au in aus {
                    let pts = self.timeline.video(au.timestamp, since);
                    let keyframe = au.keyframe;
                    let frame = Arc::new(VideoFrame {
                        pts,
                        au,
                        received: p.arrival,
                    });
                    if keyframe {
                        self.on_keyframe(&frame);
                    }
                    self.frames_since_tick += 1;
                    self.emit(Frame::Video(frame));
                }
            }
            MediaKind::Audio => {
                let Some(t) = self.transcoder.as_mut() else {
                    return;
                };
                let frames = match t.push(p.timestamp, &p.payload) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(panel = %self.panel.name, "audio transcode: {e}");
                        return;
                    }
                };
                for f in frames {
                    let pts = self.timeline.audio(f.pts, f.duration, since);
                    self.emit(Frame::Audio(Arc::new(AudioFrame { pts, frame: f })));
                }
            }
        }
    }

    fn on_keyframe(&mut self, frame: &Arc<VideoFrame>) {
        self.status.last_keyframe = Some(frame.received);
        let _ = self.keyframe_tx.send(Some(frame.clone()));
        if let (Some(sps), Some(pps), Some(video)) =
            (self.depack.sps(), self.depack.pps(), self.depack.sps_info())
        {
            self.status.width = Some(video.width);
            self.status.height = Some(video.height);
            let audio = self
                .transcoder
                .as_ref()
                .map(SpeexToAac::audio_specific_config);
            let info = StreamInfo {
                sps: sps.clone(),
                pps: pps.clone(),
                video: video.clone(),
                audio,
            };
            self.info_tx.send_if_modified(|cur| {
                let changed = cur.as_ref() != Some(&info);
                *cur = Some(info);
                changed
            });
        }
        if let Some(l) = self.live.as_mut()
            && !l.keyframe_seen
        {
            l.keyframe_seen = true;
            tracing::info!(panel = %self.panel.name, ms = l.started.elapsed().as_millis() as u64, "first keyframe");
            let _ = l.started_wall;
        }
        self.status.state = if self.viewers.is_empty() && self.pending.is_empty() {
            HubState::Lingering
        } else {
            HubState::Live
        };
    }

    fn emit(&mut self, frame: Frame) {
        self.status.frames_in += 1;
        self.gop.push(&frame);
        if matches!(&frame, Frame::Video(v) if v.au.keyframe) && !self.pending.is_empty() {
            for p in std::mem::take(&mut self.pending) {
                self.admit(p);
            }
            return; // the admitted got this keyframe from the GOP cache; others below
        }
        self.broadcast(&frame);
    }

    /// Each viewer gets the frame through its own bounded queue; a full queue drops (counted)
    /// and makes that viewer wait for the next keyframe. Nobody else is slowed.
    pub(super) fn broadcast(&mut self, frame: &Frame) {
        let keyframe = matches!(frame, Frame::Video(v) if v.au.keyframe);
        let mut gone = Vec::new();
        for (id, slot) in self.viewers.iter_mut() {
            if slot.waiting_keyframe && !keyframe {
                continue;
            }
            match slot.tx.try_send(frame.clone()) {
                Ok(()) => {
                    slot.waiting_keyframe = false;
                    self.status.frames_out += 1;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if slot.dropped == 0 {
                        tracing::info!(panel = %self.panel.name, viewer = id, kind = ?slot.kind, "slow viewer: dropping frames until it catches up");
                    }
                    slot.dropped += 1;
                    slot.waiting_keyframe = true;
                    self.status.frames_dropped += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
            }
        }
        for id in gone {
            self.viewers.remove(&id);
        }
    }
}
