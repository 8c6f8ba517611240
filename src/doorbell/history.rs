//! Ring history: what one ring left behind (`RingRecord`: id, panel, time, outcome, picture,
//! clip), how it is named on disk (`<clip_dir>/<panel>/<ring_id>_<panel>.{jpg,mp4,json}`, UTC
//! times) and retention by count and age. `retention` is pure; `scan` and `prune` do the file
//! I/O (blocking: call them off the runtime).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A ring's id: `YYYYMMDD-HHMMSS-mmm` of its start, UTC. Safe in URLs and file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RingId(String);

impl RingId {
    /// The id of a ring that started at `at`.
    pub fn at(at: SystemTime) -> Self {
        // "2024-03-01T12:00:05.123Z" → "20240301-120005-123"
        let t = crate::proto::rfc3339::format(at, crate::proto::rfc3339::Precision::Millis);
        let digits: String = t.chars().filter(char::is_ascii_digit).collect();
        Self(format!(
            "{}-{}-{}",
            &digits[..8],
            &digits[8..14],
            &digits[14..17]
        ))
    }

    /// Accepts what `at` produces (and nothing that could leave a directory or break a URL).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let ok = b.len() == 19
            && b[8] == b'-'
            && b[15] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit());
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instant the id names (to the millisecond).
    pub fn time(&self) -> SystemTime {
        let n = |r: std::ops::Range<usize>| self.0[r].parse::<u64>().unwrap_or(0);
        let days = days_from_civil(n(0..4), n(4..6), n(6..8));
        let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + n(16..19))
    }
}

impl std::fmt::Display for RingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RingId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("`{s}` is not a ring id (YYYYMMDD-HHMMSS-mmm)"))
    }
}

impl From<RingId> for String {
    fn from(id: RingId) -> String {
        id.0
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y.saturating_sub(1) } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d.saturating_sub(1);
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// How a ring ended, as the doorbell events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingOutcome {
    /// Still ringing.
    Pending,
    /// Answered from Home Assistant (200 sent by us).
    AnsweredHere,
    /// Answered on another phone or the indoor unit (CANCEL with `Reason`, or after our 183).
    AnsweredElsewhere,
    /// Rejected from Home Assistant.
    Rejected,
    /// Nobody answered (CANCEL without an answer, or our ring timeout).
    Missed,
}

impl RingOutcome {
    /// The snake_case name (`answered_here`, …), as in the ring's `.json` and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AnsweredHere => "answered_here",
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::Rejected => "rejected",
            Self::Missed => "missed",
        }
    }

    /// The doorbell event type that announces this outcome (`None` while pending).
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Self::Pending => None,
            Self::AnsweredHere | Self::AnsweredElsewhere => Some("answered"),
            Self::Rejected | Self::Missed => Some("missed"),
        }
    }
}

/// One ring as the history keeps it (also the `.json` next to its files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingRecord {
    pub ring_id: RingId,
    pub panel: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub outcome: RingOutcome,
    /// Whether the INVITE said which panel rang (false: reported on the first panel).
    pub attributed: bool,
    /// The picture's file name in the panel's folder, when written.
    pub snapshot: Option<String>,
    /// The clip's file name in the panel's folder, when written.
    pub clip: Option<String>,
    pub clip_seconds: Option<f64>,
}

impl RingRecord {
    pub fn new(ring_id: RingId, panel: &str, attributed: bool) -> Self {
        let time =
            crate::proto::rfc3339::format(ring_id.time(), crate::proto::rfc3339::Precision::Millis);
        Self {
            ring_id,
            panel: panel.to_owned(),
            time,
            outcome: RingOutcome::Pending,
            attributed,
            snapshot: None,
            clip: None,
            clip_seconds: None,
        }
    }
}

/// What a ring's files are called: `<ring_id>_<panel>.<ext>` in `<dir>/<panel>/`.
pub fn file_name(ring_id: &RingId, panel: &str, ext: &str) -> String {
    format!("{ring_id}_{panel}.{ext}")
}

pub fn panel_dir(dir: &Path, panel: &str) -> PathBuf {
    dir.join(panel)
}

/// The ring a file name belongs to, if it is one of ours for `panel`.
pub fn ring_of_file(name: &str, panel: &str) -> Option<RingId> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !matches!(ext, "jpg" | "mp4" | "json" | "part") {
        return None;
    }
    let stem = stem.strip_suffix(".mp4").unwrap_or(stem);
    let (id, owner) = stem.split_once('_')?;
    (owner == panel).then(|| RingId::parse(id)).flatten()
}

/// Retention (pure): of `rings` (any order), the ids to delete — all but the newest `keep`, and
/// any older than `max_age` at `now`.
pub fn retention(
    rings: &[RingId],
    now: SystemTime,
    keep: usize,
    max_age: Option<Duration>,
) -> Vec<RingId> {
    let mut sorted: Vec<&RingId> = rings.iter().collect();
    sorted.sort();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(keep);
    sorted
        .iter()
        .enumerate()
        .filter(|(i, id)| {
            *i < excess
                || max_age.is_some_and(|age| {
                    now.duration_since(id.time())
                        .is_ok_and(|elapsed| elapsed > age)
                })
        })
        .map(|(_, id)| (*id).clone())
        .collect()
}

/// The rings with files in `<dir>/<panel>/` (oldest first) and their records (from the `.json`,
/// or rebuilt from the file names). A missing folder is an empty history.
pub fn scan(dir: &Path, panel: &str) -> std::io::Result<Vec<RingRecord>> {
    let folder = panel_dir(dir, panel);
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records: Vec<RingRecord> = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(id) = ring_of_file(&name, panel) else {
            continue;
        };
        let at = match records.iter().position(|r| r.ring_id == id) {
            Some(i) => i,
            None => {
                records.push(RingRecord::new(id.clone(), panel, true));
                records.len() - 1
            }
        };
        let record = &mut records[at];
        if name.ends_with(".json") {
            let parsed = std::fs::read(folder.join(&name))
                .ok()
                .and_then(|b| serde_json::from_slice::<RingRecord>(&b).ok());
            if let Some(r) = parsed.filter(|r| r.ring_id == id && r.panel == panel) {
                let (snapshot, clip) = (record.snapshot.take(), record.clip.take());
                *record = r;
                record.snapshot = record.snapshot.take().or(snapshot);
                record.clip = record.clip.take().or(clip);
            }
        } else if name.ends_with(".jpg") {
            record.snapshot = Some(name);
        } else if name.ends_with(".mp4") {
            record.clip = Some(name);
        }
    }
    records.sort_by(|a, b| a.ring_id.cmp(&b.ring_id));
    Ok(records)
}

/// Applies `retention` to the folder of `panel`: deletes every file of the rings it selects
/// (unfinished `.part` clips included). Returns the ids deleted.
pub fn prune(
    dir: &Path,
    panel: &str,
    now: SystemTime,
    keep: usize,
    max_age: Option<Duration>,
) -> std::io::Result<Vec<RingId>> {
    let folder = panel_dir(dir, panel);
    let names: Vec<String> = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let ids: Vec<RingId> = names
        .iter()
        .filter_map(|n| ring_of_file(n, panel))
        .collect();
    let doomed = retention(&ids, now, keep, max_age);
    for name in &names {
        if ring_of_file(name, panel).is_some_and(|id| doomed.contains(&id)) {
            match std::fs::remove_file(folder.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RingId {
        RingId::parse(s).expect("id")
    }

    #[test]
    fn ids_come_from_the_time_and_back() {
        let at = UNIX_EPOCH + Duration::from_millis(1_709_294_405_123);
        let r = RingId::at(at);
        assert_eq!(r.as_str(), "20240301-120005-123");
        assert_eq!(r.time(), at);
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_007);
        assert_eq!(RingId::at(leap).time(), leap);
        for bad in [
            "",
            "../../etc",
            "20240301-120005-12x",
            "20240301_120005-123",
            "x".repeat(19).as_str(),
        ] {
            assert_eq!(RingId::parse(bad), None, "{bad:?}");
        }
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(json, "\"20240301-120005-123\"");
        assert!(serde_json::from_str::<RingId>("\"../x\"").is_err());
    }

    #[test]
    fn file_names_carry_time_and_panel() {
        let r = id("20240301-120005-123");
        assert_eq!(
            file_name(&r, "front", "jpg"),
            "20240301-120005-123_front.jpg"
        );
        assert_eq!(
            ring_of_file("20240301-120005-123_front.jpg", "front"),
            Some(r.clone())
        );
        assert_eq!(
            ring_of_file("20240301-120005-123_front.mp4.part", "front"),
            Some(r)
        );
        assert_eq!(ring_of_file("20240301-120005-123_gate.jpg", "front"), None);
        assert_eq!(ring_of_file("holiday.jpg", "front"), None);
        assert_eq!(ring_of_file("20240301-120005-123_front.txt", "front"), None);
    }

    #[test]
    fn retention_keeps_the_newest_and_drops_the_old() {
        let ids: Vec<RingId> = [
            "20240301-120000-000",
            "20240305-120000-000",
            "20240302-120000-000",
            "20240304-120000-000",
        ]
        .iter()
        .map(|s| id(s))
        .collect();
        let now = id("20240306-000000-000").time();
        // By count: the two oldest go.
        assert_eq!(
            retention(&ids, now, 2, None),
            vec![id("20240301-120000-000"), id("20240302-120000-000")]
        );
        // By age (3 days): rings before 2024-03-03 go, whatever the count.
        let three_days = Some(Duration::from_secs(3 * 86_400));
        assert_eq!(
            retention(&ids, now, 100, three_days),
            vec![id("20240301-120000-000"), id("20240302-120000-000")]
        );
        // Both rules together, nothing to do, and a ring from the future is not "old".
        assert_eq!(retention(&ids, now, 1, three_days).len(), 3);
        assert!(retention(&ids, now, 4, None).is_empty());
        let future = [id("20990101-000000-000")];
        assert!(retention(&future, now, 1, three_days).is_empty());
    }

    #[test]
    fn scan_and_prune_work_on_the_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        let folder = panel_dir(dir.path(), "front");
        std::fs::create_dir_all(&folder).expect("mkdir");
        let old = id("20240301-120000-000");
        let new = id("20240305-120000-000");
        for (r, ext) in [
            (&old, "jpg"),
            (&old, "mp4"),
            (&new, "jpg"),
            (&new, "mp4.part"),
        ] {
            std::fs::write(folder.join(file_name(r, "front", ext)), b"x").expect("write");
        }
        let mut record = RingRecord::new(new.clone(), "front", false);
        record.outcome = RingOutcome::Missed;
        std::fs::write(
            folder.join(file_name(&new, "front", "json")),
            serde_json::to_vec(&record).expect("json"),
        )
        .expect("write");
        std::fs::write(folder.join("notes.txt"), b"mine").expect("write");
        let found = scan(dir.path(), "front").expect("scan");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].ring_id, old);
        assert_eq!(
            found[0].snapshot.as_deref(),
            Some("20240301-120000-000_front.jpg")
        );
        assert_eq!(
            found[0].clip.as_deref(),
            Some("20240301-120000-000_front.mp4")
        );
        assert_eq!(found[1].outcome, RingOutcome::Missed);
        assert!(!found[1].attributed, "from the json");
        assert_eq!(found[1].clip, None, "an unfinished clip is not listed");
        let now = id("20240306-000000-000").time();
        assert_eq!(
            prune(dir.path(), "front", now, 1, None).expect("prune"),
            vec![old]
        );
        let mut left: Vec<String> = std::fs::read_dir(&folder)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "20240305-120000-000_front.jpg",
                "20240305-120000-000_front.json",
                "20240305-120000-000_front.mp4.part",
                "notes.txt"
            ]
        );
        assert!(scan(dir.path(), "nobody").expect("scan").is_empty());
    }
}
