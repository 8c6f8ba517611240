//! The recorder with real frames (the simulator's camera and microphone as hub frames) and a
//! temporary `clip_dir`: picture event, files named by time and panel, history after a restart,
//! retention, outcome records, a feed that stops wanting frames, and a full queue that drops.

use std::time::UNIX_EPOCH;

use super::*;
use crate::doorbell::snapshot::tests::jpeg_size;
use crate::media::transcode::AacSettings;
use crate::sim::frames::{HubFrames, hub_frames};

fn settings(dir: &std::path::Path) -> RecorderSettings {
    RecorderSettings {
        dir: dir.to_owned(),
        history: true,
        keep: 10,
        max_age: None,
        clip: Duration::ZERO,
        jpeg_quality: 80,
        queue: 512,
        jpegs_in_memory: 20,
    }
}

fn ring_id(secs: u64) -> RingId {
    RingId::at(UNIX_EPOCH + Duration::from_secs(1_709_294_400 + secs))
}

fn start(id: &RingId, panel: &str, audio: Option<AudioSpecificConfig>) -> RingStart {
    RingStart {
        ring_id: id.clone(),
        panel: panel.to_owned(),
        attributed: true,
        audio,
    }
}

fn frames(label: &str, seconds: u32, audio: bool) -> HubFrames {
    hub_frames(
        Some(label),
        seconds,
        450_000,
        audio.then(AacSettings::default),
    )
    .expect("frames")
}

async fn next_event(rx: &mut broadcast::Receiver<RecorderEvent>) -> RecorderEvent {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an event in time")
        .expect("event")
}

#[tokio::test]
async fn picture_event_files_and_history_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let stop = CancellationToken::new();
    let rec = RingRecorder::start(settings(dir.path()), &["front".into()], &stop);
    let mut events = rec.events();
    let id = ring_id(5);
    let feed = rec.ring_started(start(&id, "front", None));
    assert_eq!(rec.rings("front")[0].outcome, RingOutcome::Pending);
    for f in frames("front", 1, false).frames {
        if !feed.push(f) {
            break;
        }
    }
    let RecorderEvent::Snapshot {
        ring_id: got,
        panel,
        jpeg,
        after,
    } = next_event(&mut events).await
    else {
        panic!("expected the picture first");
    };
    assert_eq!((got, panel.as_str()), (id.clone(), "front"));
    assert_eq!(jpeg_size(&jpeg), Some((400, 288)));
    assert!(after < Duration::from_secs(20));
    // No clip wanted: once the picture is taken the feed is refused.
    eventually(|| !feed.wants_frames()).await;
    rec.ring_ended("front", &id, RingOutcome::Missed);
    drop(feed);
    rec.idle().await;
    let folder = dir.path().join("front");
    let jpg = folder.join("20240301-120005-000_front.jpg");
    assert_eq!(std::fs::read(&jpg).expect("jpg on disk"), jpeg.to_vec());
    let json: RingRecord = serde_json::from_slice(
        &std::fs::read(folder.join("20240301-120005-000_front.json")).expect("json"),
    )
    .expect("record");
    assert_eq!(json.outcome, RingOutcome::Missed);
    assert_eq!(
        json.snapshot.as_deref(),
        Some("20240301-120005-000_front.jpg")
    );
    assert_eq!(rec.snapshot("front", &id).await, Some(jpeg.clone()));

    // A new recorder (a restart) lists the ring again and serves its picture from the file.
    let again = RingRecorder::start(settings(dir.path()), &["front".into()], &stop);
    again.idle().await;
    let listed = again.rings("front");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outcome, RingOutcome::Missed);
    assert_eq!(again.snapshot("front", &id).await, Some(jpeg));
    assert_eq!(again.snapshot("front", &ring_id(6)).await, None);
    assert_eq!(again.snapshot("gate", &id).await, None);
}

#[tokio::test]
async fn retention_deletes_the_oldest_ring_and_history_off_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let stop = CancellationToken::new();
    let rec = RingRecorder::start(
        RecorderSettings {
            keep: 2,
            ..settings(dir.path())
        },
        &["front".into()],
        &stop,
    );
    let video = frames("front", 1, false).frames;
    for secs in [1, 2, 3] {
        let feed = rec.ring_started(start(&ring_id(secs), "front", None));
        for f in video.iter().take(3) {
            feed.push(f.clone());
        }
        drop(feed);
        rec.idle().await;
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("front"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "20240301-120002-000_front.jpg",
            "20240301-120003-000_front.jpg"
        ]
    );
    let listed: Vec<RingId> = rec.rings("front").into_iter().map(|r| r.ring_id).collect();
    assert_eq!(
        listed,
        [ring_id(3), ring_id(2)],
        "newest first, the oldest gone"
    );

    // Without history (and without clips) nothing touches the disk, but the picture is served.
    let quiet = tempfile::tempdir().expect("tmp");
    let rec = RingRecorder::start(
        RecorderSettings {
            history: false,
            ..settings(quiet.path())
        },
        &["front".into()],
        &stop,
    );
    let feed = rec.ring_started(start(&ring_id(9), "front", None));
    for f in video.iter().take(2) {
        feed.push(f.clone());
    }
    drop(feed);
    rec.idle().await;
    assert!(rec.snapshot("front", &ring_id(9)).await.is_some());
    assert_eq!(std::fs::read_dir(quiet.path()).expect("ls").count(), 0);
}

#[tokio::test]
async fn a_clip_is_written_and_listed_and_a_ring_without_video_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let stop = CancellationToken::new();
    let rec = RingRecorder::start(
        RecorderSettings {
            clip: Duration::from_secs(2),
            ..settings(dir.path())
        },
        &["gate".into()],
        &stop,
    );
    let mut events = rec.events();
    let media = frames("gate", 3, true);
    let id = ring_id(7);
    let feed = rec.ring_started(start(&id, "gate", media.audio));
    for f in media.frames {
        feed.push(f);
    }
    let mut clip = None;
    for _ in 0..3 {
        if let RecorderEvent::Clip { path, duration, .. } = next_event(&mut events).await {
            clip = Some((path, duration));
            break;
        }
    }
    let (path, duration) = clip.expect("a clip event");
    assert_eq!(duration, Duration::from_secs(2));
    assert_eq!(path, dir.path().join("gate/20240301-120007-000_gate.mp4"));
    assert!(std::fs::metadata(&path).expect("clip on disk").len() > 10_000);
    eventually(|| !feed.wants_frames()).await; // picture and clip done
    drop(feed);
    rec.idle().await;
    assert_eq!(rec.clip_path("gate", &id), Some(path));
    assert_eq!(rec.rings("gate")[0].clip_seconds, Some(2.0));

    // Audio only, then the feed is gone: no picture, said so.
    let id = ring_id(8);
    let feed = rec.ring_started(start(&id, "gate", None));
    drop(feed);
    loop {
        if let RecorderEvent::Problem {
            ring_id, detail, ..
        } = next_event(&mut events).await
        {
            assert_eq!(ring_id, id);
            assert!(detail.contains("no"), "{detail}");
            break;
        }
    }
    rec.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_frames_without_blocking() {
    let dir = tempfile::tempdir().expect("tmp");
    let stop = CancellationToken::new();
    let rec = RingRecorder::start(
        RecorderSettings {
            queue: 2,
            clip: Duration::from_secs(30),
            ..settings(dir.path())
        },
        &["front".into()],
        &stop,
    );
    let feed = rec.ring_started(start(&ring_id(1), "front", None));
    let video = frames("front", 1, false).frames;
    // Far more than the queue holds, pushed without yielding: some are dropped, none block.
    for f in video.iter().cycle().take(200) {
        assert!(feed.push(f.clone()));
    }
    assert!(rec.dropped_frames() > 0);
    // Shutdown closes the clip with what it got.
    rec.shutdown().await;
    drop(feed);
}

/// Polls `cond` every 10 ms for up to 10 s.
pub(super) async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met in 10 s");
}
