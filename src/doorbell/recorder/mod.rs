//! `RingRecorder`: what a ring leaves behind — its picture (published at once), its clip and
//! its history entry. Input: `ring_started` (→ a `RingFeed` for the ring's frames),
//! `RingFeed::push`, `ring_ended`. Output: `RecorderEvent`s, `rings(panel)`, `snapshot(...)`.
//! Never blocks the caller: each feed is a bounded queue (a full one drops frames, counted, and
//! the clip skips to the next keyframe); decoding and file writes run in `spawn_blocking`.

mod job;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::history::{self, RingId, RingOutcome, RingRecord, file_name, panel_dir};
use crate::config::Config;
use crate::media::hub::Frame;
use crate::proto::aac::AudioSpecificConfig;
use job::{Output, RingJob, write_atomically};

/// How the recorder behaves; `from_config` reads the options.
#[derive(Debug, Clone, PartialEq)]
pub struct RecorderSettings {
    /// `clip_dir`: one folder per panel below it.
    pub dir: PathBuf,
    /// `ring_history`: write each ring's picture (and its record) to disk.
    pub history: bool,
    /// Rings kept per panel (on disk and listed).
    pub keep: usize,
    pub max_age: Option<Duration>,
    /// `ring_clip_seconds`; zero: no clip.
    pub clip: Duration,
    pub jpeg_quality: u8,
    /// Frames one ring may have queued before new ones are dropped.
    pub queue: usize,
    /// Ring pictures kept in memory per panel (older ones are read back from disk).
    pub jpegs_in_memory: usize,
}

impl RecorderSettings {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            dir: cfg.clip_dir.clone(),
            history: cfg.ring_history,
            keep: cfg.ring_history_keep as usize,
            max_age: cfg.ring_history_max_age(),
            clip: cfg.ring_clip,
            jpeg_quality: cfg.mjpeg_quality,
            queue: 512,
            jpegs_in_memory: 20,
        }
    }

    fn writes_files(&self) -> bool {
        self.history || !self.clip.is_zero()
    }
}

/// A ring begins (phase 2: the hub, when the ring's media becomes a call source).
#[derive(Debug, Clone)]
pub struct RingStart {
    pub ring_id: RingId,
    pub panel: String,
    /// Whether the INVITE said which panel rang (false: put on the first panel).
    pub attributed: bool,
    /// The AAC config of the hub's audio, for the clip's audio track (`None`: video only).
    pub audio: Option<AudioSpecificConfig>,
}

/// What the recorder tells the rest of the bridge (MQTT image and events, the API, the page).
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    /// The ring's picture; `after`: from `ring_started` to the JPEG.
    Snapshot {
        ring_id: RingId,
        panel: String,
        jpeg: Bytes,
        after: Duration,
    },
    /// The clip is complete in the panel's folder.
    Clip {
        ring_id: RingId,
        panel: String,
        path: PathBuf,
        duration: Duration,
    },
    /// Something could not be done for this ring (no picture, a file not written).
    Problem {
        ring_id: RingId,
        panel: String,
        detail: String,
    },
}

struct Entry {
    record: RingRecord,
    jpeg: Option<Bytes>,
}

#[derive(Default)]
struct Index {
    /// Per panel, oldest first.
    panels: HashMap<String, VecDeque<Entry>>,
}

struct Inner {
    settings: RecorderSettings,
    index: Mutex<Index>,
    events: broadcast::Sender<RecorderEvent>,
    tasks: TaskTracker,
    stop: CancellationToken,
    dropped: AtomicU64,
}

/// The handle: cheap to clone.
#[derive(Clone)]
pub struct RingRecorder {
    inner: Arc<Inner>,
}

/// Where one ring's frames go. Dropping it ends the ring's media (the clip closes).
pub struct RingFeed {
    tx: mpsc::Sender<Frame>,
    /// A frame was dropped: the next push first sends a discontinuity (the clip waits for a
    /// keyframe instead of recording a broken picture).
    gap: AtomicBool,
    inner: Arc<Inner>,
}

impl RingFeed {
    /// Queues one frame without waiting. `false` once the recorder wants no more frames of
    /// this ring (picture taken, clip complete): the caller may drop the feed.
    pub fn push(&self, frame: Frame) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if self.gap.load(Ordering::Relaxed) {
            if self.tx.try_send(Frame::Discontinuity).is_err() {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return !self.tx.is_closed();
            }
            self.gap.store(false, Ordering::Relaxed);
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                self.gap.store(true, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn wants_frames(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The hub's ring tap is the recorder's feed.
impl crate::media::hub::FrameSink for RingFeed {
    fn push(&mut self, frame: Frame) -> bool {
        RingFeed::push(self, frame)
    }
}

impl RingRecorder {
    /// Starts the recorder; the history of `panels` is read back from disk in the background.
    /// `shutdown` (the bridge's) stops it too.
    pub fn start(
        settings: RecorderSettings,
        panels: &[String],
        shutdown: &CancellationToken,
    ) -> Self {
        let (events, _) = broadcast::channel(64);
        let inner = Arc::new(Inner {
            settings,
            index: Mutex::new(Index::default()),
            events,
            tasks: TaskTracker::new(),
            stop: shutdown.child_token(),
            dropped: AtomicU64::new(0),
        });
        if inner.settings.writes_files() {
            let (load, panels) = (inner.clone(), panels.to_vec());
            inner
                .tasks
                .spawn_blocking(move || load.load_history(&panels));
        }
        Self { inner }
    }

    pub fn settings(&self) -> &RecorderSettings {
        &self.inner.settings
    }

    pub fn events(&self) -> broadcast::Receiver<RecorderEvent> {
        self.inner.events.subscribe()
    }

    /// Frames dropped because a ring's queue was full (all rings).
    pub fn dropped_frames(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// A ring began: it is listed at once (outcome `pending`); its frames go to the feed.
    pub fn ring_started(&self, start: RingStart) -> RingFeed {
        let (tx, rx) = mpsc::channel(self.inner.settings.queue.max(1));
        self.inner.with_panel(&start.panel, |entries, keep| {
            entries.retain(|e| e.record.ring_id != start.ring_id);
            entries.push_back(Entry {
                record: RingRecord::new(start.ring_id.clone(), &start.panel, start.attributed),
                jpeg: None,
            });
            while entries.len() > keep {
                entries.pop_front();
            }
        });
        let inner = self.inner.clone();
        self.inner.tasks.spawn(inner.run_ring(start, rx));
        RingFeed {
            tx,
            gap: AtomicBool::new(false),
            inner: self.inner.clone(),
        }
    }

    /// How the ring ended (answered, missed, ...): recorded in the history.
    pub fn ring_ended(&self, panel: &str, ring_id: &RingId, outcome: RingOutcome) {
        let mut found = false;
        self.inner.with_panel(panel, |entries, _| {
            if let Some(e) = entries.iter_mut().find(|e| &e.record.ring_id == ring_id) {
                e.record.outcome = outcome;
                found = true;
            }
        });
        if found {
            self.inner.save_record(panel, ring_id);
        }
    }

    /// The rings of `panel`, newest first.
    pub fn rings(&self, panel: &str) -> Vec<RingRecord> {
        let Ok(index) = self.inner.index.lock() else {
            return Vec::new();
        };
        index
            .panels
            .get(panel)
            .map(|e| e.iter().rev().map(|e| e.record.clone()).collect())
            .unwrap_or_default()
    }

    /// A ring's picture: from memory, else from its file.
    pub async fn snapshot(&self, panel: &str, ring_id: &RingId) -> Option<Bytes> {
        let name = {
            let index = self.inner.index.lock().ok()?;
            let entry = index
                .panels
                .get(panel)?
                .iter()
                .find(|e| &e.record.ring_id == ring_id)?;
            if let Some(jpeg) = &entry.jpeg {
                return Some(jpeg.clone());
            }
            entry.record.snapshot.clone()?
        };
        let path = panel_dir(&self.inner.settings.dir, panel).join(name);
        tokio::fs::read(path).await.ok().map(Bytes::from)
    }

    /// The clip's path, if the ring has one on disk.
    pub fn clip_path(&self, panel: &str, ring_id: &RingId) -> Option<PathBuf> {
        let index = self.inner.index.lock().ok()?;
        let entry = index
            .panels
            .get(panel)?
            .iter()
            .find(|e| &e.record.ring_id == ring_id)?;
        let name = entry.record.clip.as_ref()?;
        Some(panel_dir(&self.inner.settings.dir, panel).join(name))
    }

    /// Stops taking frames, closes the open clips and waits for every file write.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Waits until the work started so far is done (for tests).
    pub async fn idle(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}

impl Inner {
    fn with_panel(&self, panel: &str, f: impl FnOnce(&mut VecDeque<Entry>, usize)) {
        if let Ok(mut index) = self.index.lock() {
            let keep = self.settings.keep.max(1);
            f(index.panels.entry(panel.to_owned()).or_default(), keep);
        }
    }

    fn emit(&self, event: RecorderEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    async fn run_ring(self: Arc<Self>, start: RingStart, mut rx: mpsc::Receiver<Frame>) {
        let began = Instant::now();
        let (ring_id, panel) = (start.ring_id.clone(), start.panel.clone());
        // FFmpeg's contexts cannot move between threads: the job lives on one blocking thread
        // and this task forwards frames to it (and stops forwarding on shutdown).
        let (work_tx, mut work_rx) = mpsc::channel::<Frame>(self.settings.queue.max(1));
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Output>();
        let (settings, id, p) = (self.settings.clone(), ring_id.clone(), panel.clone());
        let worker = tokio::task::spawn_blocking(move || {
            let mut job = RingJob::new(&settings, id, &p, start.audio);
            while let Some(frame) = work_rx.blocking_recv() {
                for output in job.handle(vec![frame]) {
                    let _ = out_tx.send(output);
                }
                if job.done() {
                    break;
                }
            }
            drop(work_rx);
            for output in job.finish() {
                let _ = out_tx.send(output);
            }
        });
        let mut work_tx = Some(work_tx);
        loop {
            tokio::select! {
                biased;
                output = out_rx.recv() => match output {
                    Some(output) => self.output(&ring_id, &panel, output, began).await,
                    None => break, // the job is over
                },
                () = self.stop.cancelled(), if work_tx.is_some() => work_tx = None,
                frame = rx.recv(), if work_tx.is_some() => {
                    let sent = match (frame, &work_tx) {
                        (Some(frame), Some(tx)) => tx.send(frame).await.is_ok(),
                        _ => false,
                    };
                    if !sent {
                        work_tx = None;
                    }
                }
            }
            if work_tx.is_none() {
                // The feed's owner sees `push` fail from here on.
                rx.close();
            }
        }
        if worker.await.is_err() {
            tracing::error!(%ring_id, "ring recorder: the worker panicked");
        }
        if self.settings.writes_files() {
            self.save_record(&panel, &ring_id);
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.prune(&panel)).await;
        }
    }

    async fn output(&self, ring_id: &RingId, panel: &str, output: Output, began: Instant) {
        match output {
            Output::Jpeg(jpeg) => {
                // Publish first; the file can wait.
                self.emit(RecorderEvent::Snapshot {
                    ring_id: ring_id.clone(),
                    panel: panel.to_owned(),
                    jpeg: jpeg.clone(),
                    after: began.elapsed(),
                });
                self.keep_jpeg(panel, ring_id, &jpeg);
                if self.settings.history {
                    let path =
                        panel_dir(&self.settings.dir, panel).join(file_name(ring_id, panel, "jpg"));
                    let written =
                        tokio::task::spawn_blocking(move || write_atomically(&path, &jpeg))
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()));
                    match written {
                        Ok(()) => self.with_panel(panel, |entries, _| {
                            if let Some(e) =
                                entries.iter_mut().find(|e| &e.record.ring_id == ring_id)
                            {
                                e.record.snapshot = Some(file_name(ring_id, panel, "jpg"));
                            }
                        }),
                        Err(detail) => self.problem(ring_id, panel, detail),
                    }
                }
            }
            Output::Clip { name, duration } => {
                let path = panel_dir(&self.settings.dir, panel).join(&name);
                self.with_panel(panel, |entries, _| {
                    if let Some(e) = entries.iter_mut().find(|e| &e.record.ring_id == ring_id) {
                        e.record.clip = Some(name);
                        e.record.clip_seconds = Some(duration.as_secs_f64());
                    }
                });
                self.emit(RecorderEvent::Clip {
                    ring_id: ring_id.clone(),
                    panel: panel.to_owned(),
                    path,
                    duration,
                });
            }
            Output::Problem(detail) => self.problem(ring_id, panel, detail),
        }
    }

    fn problem(&self, ring_id: &RingId, panel: &str, detail: String) {
        tracing::warn!(%ring_id, panel, "ring recorder: {detail}");
        self.emit(RecorderEvent::Problem {
            ring_id: ring_id.clone(),
            panel: panel.to_owned(),
            detail,
        });
    }

    /// Keeps the JPEG in memory (the newest `jpegs_in_memory` per panel).
    fn keep_jpeg(&self, panel: &str, ring_id: &RingId, jpeg: &Bytes) {
        let limit = self.settings.jpegs_in_memory;
        self.with_panel(panel, |entries, _| {
            if let Some(e) = entries.iter_mut().find(|e| &e.record.ring_id == ring_id) {
                e.jpeg = Some(jpeg.clone());
            }
            let with_jpeg = entries.iter().filter(|e| e.jpeg.is_some()).count();
            for e in entries
                .iter_mut()
                .filter(|e| e.jpeg.is_some())
                .take(with_jpeg.saturating_sub(limit))
            {
                e.jpeg = None;
            }
        });
    }

    /// Writes the ring's record next to its files (in the background, tracked).
    fn save_record(self: &Arc<Self>, panel: &str, ring_id: &RingId) {
        if !self.settings.writes_files() {
            return;
        }
        let (me, panel, ring_id) = (self.clone(), panel.to_owned(), ring_id.clone());
        self.tasks.spawn_blocking(move || {
            // Read the record when writing, so the last write always has the latest state.
            let record = me.index.lock().ok().and_then(|index| {
                index
                    .panels
                    .get(&panel)?
                    .iter()
                    .find(|e| e.record.ring_id == ring_id)
                    .map(|e| e.record.clone())
            });
            let Some(record) = record else { return };
            let path =
                panel_dir(&me.settings.dir, &panel).join(file_name(&ring_id, &panel, "json"));
            let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
            if let Err(e) = write_atomically(&path, &json) {
                tracing::warn!(%ring_id, panel, "ring recorder: {e}");
            }
        });
    }

    /// Retention for one panel's folder, then the same ids out of the index. Blocking.
    fn prune(&self, panel: &str) {
        let s = &self.settings;
        match history::prune(&s.dir, panel, SystemTime::now(), s.keep.max(1), s.max_age) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(panel, rings = gone.len(), "ring history: deleted old rings");
                self.with_panel(panel, |entries, _| {
                    entries.retain(|e| !gone.contains(&e.record.ring_id));
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(panel, dir = %s.dir.display(), "ring history: cannot prune: {e}")
            }
        }
    }

    /// Reads the panels' folders back (after a restart the API still lists past rings).
    fn load_history(&self, panels: &[String]) {
        for panel in panels {
            self.prune(panel);
            match history::scan(&self.settings.dir, panel) {
                Ok(records) => self.with_panel(panel, |entries, keep| {
                    // Rings started meanwhile stay; the disk's go in front of them.
                    let fresh: Vec<Entry> = entries.drain(..).collect();
                    for record in records {
                        if !fresh.iter().any(|e| e.record.ring_id == record.ring_id) {
                            entries.push_back(Entry { record, jpeg: None });
                        }
                    }
                    entries.extend(fresh);
                    while entries.len() > keep {
                        entries.pop_front();
                    }
                }),
                Err(e) => tracing::warn!(
                    panel,
                    dir = %self.settings.dir.display(),
                    "ring history: cannot read: {e}"
                ),
            }
        }
    }
}
