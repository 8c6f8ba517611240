//! One ring's blocking work: the snapshot (decode + JPEG) and the clip file. The recorder's task
//! hands it batches of frames inside `spawn_blocking`, so FFmpeg and the file system never run on
//! the runtime. It reports what it produced; the task turns that into events and index updates.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::RecorderSettings;
use crate::doorbell::clip::{ClipTracks, ClipWriter, Push};
use crate::doorbell::history::{RingId, file_name, panel_dir};
use crate::doorbell::snapshot::RingSnapshotter;
use crate::media::hub::Frame;
use crate::proto::aac::AudioSpecificConfig;

/// What a batch (or the end) produced.
#[derive(Debug)]
pub(super) enum Output {
    /// The ring's picture, ready to publish.
    Jpeg(Bytes),
    /// The clip is on disk: its file name in the panel's folder and its length.
    Clip { name: String, duration: Duration },
    /// Something could not be done (logged and reported, never fatal).
    Problem(String),
}

enum ClipState {
    /// No clip for this ring (off, or given up).
    Off,
    /// Waiting for the first keyframe to learn the tracks.
    Waiting,
    Writing(Box<ClipWriter<BufWriter<File>>>),
    Done,
}

pub(super) struct RingJob {
    ring_id: RingId,
    panel: String,
    dir: PathBuf,
    clip_length: Duration,
    audio: Option<AudioSpecificConfig>,
    snapshot: Option<RingSnapshotter>,
    clip: ClipState,
}

impl RingJob {
    pub fn new(
        settings: &RecorderSettings,
        ring_id: RingId,
        panel: &str,
        audio: Option<AudioSpecificConfig>,
    ) -> Self {
        Self {
            ring_id,
            panel: panel.to_owned(),
            dir: settings.dir.clone(),
            clip_length: settings.clip,
            audio,
            snapshot: Some(RingSnapshotter::new(settings.jpeg_quality)),
            clip: if settings.clip.is_zero() {
                ClipState::Off
            } else {
                ClipState::Waiting
            },
        }
    }

    /// The picture is taken and the clip (if any) is complete: no more frames are wanted.
    pub fn done(&self) -> bool {
        self.snapshot.is_none() && matches!(self.clip, ClipState::Off | ClipState::Done)
    }

    fn path(&self, ext: &str) -> PathBuf {
        panel_dir(&self.dir, &self.panel).join(file_name(&self.ring_id, &self.panel, ext))
    }

    pub fn handle(&mut self, frames: Vec<Frame>) -> Vec<Output> {
        let mut out = Vec::new();
        for frame in &frames {
            if let (Some(snap), Frame::Video(v)) = (self.snapshot.as_mut(), frame) {
                match snap.push(&v.au) {
                    Ok(Some(jpeg)) => {
                        self.snapshot = None;
                        out.push(Output::Jpeg(jpeg));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.snapshot = None;
                        out.push(Output::Problem(format!("no ring picture: {e}")));
                    }
                }
            }
            self.clip_frame(frame, &mut out);
        }
        out
    }

    fn clip_frame(&mut self, frame: &Frame, out: &mut Vec<Output>) {
        if let (ClipState::Waiting, Frame::Video(v)) = (&self.clip, frame)
            && v.au.keyframe
        {
            match self.open_clip(&v.au) {
                Ok(writer) => self.clip = ClipState::Writing(Box::new(writer)),
                Err(e) => {
                    self.clip = ClipState::Off;
                    out.push(Output::Problem(e));
                }
            }
        }
        let ClipState::Writing(writer) = &mut self.clip else {
            return;
        };
        match writer.push(frame) {
            Ok(Push::More) => {}
            Ok(Push::Full) => self.close_clip(out),
            Err(e) => {
                self.clip = ClipState::Off;
                self.discard_clip();
                out.push(Output::Problem(format!("ring clip: {e}")));
            }
        }
    }

    fn open_clip(
        &self,
        keyframe: &crate::proto::h264::AccessUnit,
    ) -> Result<ClipWriter<BufWriter<File>>, String> {
        let tracks = ClipTracks::from_keyframe(keyframe, self.audio).map_err(|e| e.to_string())?;
        let path = self.path("mp4.part");
        ensure_dir(&path)?;
        let file = File::create(&path)
            .map_err(|e| format!("ring clip: cannot create {}: {e}", path.display()))?;
        ClipWriter::new(BufWriter::new(file), tracks, self.clip_length)
            .map_err(|e| format!("ring clip {}: {e}", path.display()))
    }

    /// Finishes the clip being written: durations in place, `.part` renamed away.
    fn close_clip(&mut self, out: &mut Vec<Output>) {
        let state = std::mem::replace(&mut self.clip, ClipState::Done);
        let ClipState::Writing(writer) = state else {
            return;
        };
        let (part, done) = (self.path("mp4.part"), self.path("mp4"));
        let result = writer
            .finish()
            .map_err(|e| e.to_string())
            .and_then(|(buffered, summary)| {
                buffered
                    .into_inner()
                    .map_err(|e| e.to_string())?
                    .sync_all()
                    .map_err(|e| e.to_string())?;
                std::fs::rename(&part, &done).map_err(|e| e.to_string())?;
                Ok(summary)
            });
        match result {
            Ok(summary) => out.push(Output::Clip {
                name: file_name(&self.ring_id, &self.panel, "mp4"),
                duration: summary.duration,
            }),
            Err(e) => {
                self.discard_clip();
                out.push(Output::Problem(format!(
                    "ring clip {}: {e}",
                    done.display()
                )));
            }
        }
    }

    fn discard_clip(&self) {
        let _ = std::fs::remove_file(self.path("mp4.part"));
    }

    /// No more frames will come: close the clip with what it has.
    pub fn finish(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        match &self.clip {
            ClipState::Writing(_) => self.close_clip(&mut out),
            ClipState::Waiting => {
                self.clip = ClipState::Off;
                out.push(Output::Problem("ring clip: no keyframe arrived".to_owned()));
            }
            ClipState::Off | ClipState::Done => {}
        }
        if self.snapshot.take().is_some() {
            out.push(Output::Problem(
                "no ring picture: no decodable frame arrived".to_owned(),
            ));
        }
        out
    }
}

/// Creates the folder of `file` if needed.
pub(super) fn ensure_dir(file: &Path) -> Result<(), String> {
    match file.parent() {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display())),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary name, so readers never see half a file.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    ensure_dir(path)?;
    let ext = path
        .extension()
        .map_or_else(String::new, |e| e.to_string_lossy().into_owned());
    let tmp = path.with_extension(format!("{ext}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}
