//! HLS media playlists (RFC 8216 §4.3) with the LL-HLS additions (draft-pantos-hls-rfc8216bis:
//! EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL, blocking reload `_HLS_msn/_HLS_part`).
//! Pure: segment facts in, playlist text out; resource names in both directions. Players that
//! ignore the LL tags read the same playlist as plain live HLS (streaming.md §5).

use std::fmt::Write as _;

/// One partial segment (a CMAF chunk).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartInfo {
    pub duration: f64,
    /// Starts with an IDR.
    pub independent: bool,
}

/// One media segment: complete ones have `duration`; the open one (last) has `complete: false`.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    pub msn: u64,
    pub duration: f64,
    pub parts: Vec<PartInfo>,
    pub complete: bool,
    /// A new call or format change before this segment.
    pub discontinuity: bool,
}

/// Everything a playlist says.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    pub target_duration: u32,
    pub part_target: f64,
    pub discontinuity_sequence: u64,
    /// Oldest first; at most one incomplete segment, at the end.
    pub segments: Vec<SegmentInfo>,
    /// Complete segments (from the newest) whose parts are still listed.
    pub parts_for_last: usize,
}

/// Resource names served next to the playlist (relative URIs, so reverse proxies keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Playlist,
    Init,
    Segment(u64),
    Part(u64, u32),
}

pub const PLAYLIST: &str = "index.m3u8";
pub const INIT: &str = "init.mp4";

impl Resource {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            PLAYLIST => return Some(Self::Playlist),
            INIT => return Some(Self::Init),
            _ => {}
        }
        if let Some(n) = name
            .strip_prefix("seg")
            .and_then(|r| r.strip_suffix(".m4s"))
        {
            return n.parse().ok().map(Self::Segment);
        }
        let rest = name.strip_prefix("part")?.strip_suffix(".m4s")?;
        let (msn, part) = rest.split_once('.')?;
        Some(Self::Part(msn.parse().ok()?, part.parse().ok()?))
    }

    pub fn uri(self) -> String {
        match self {
            Self::Playlist => PLAYLIST.to_owned(),
            Self::Init => INIT.to_owned(),
            Self::Segment(msn) => format!("seg{msn}.m4s"),
            Self::Part(msn, i) => format!("part{msn}.{i}.m4s"),
        }
    }
}

/// A blocking playlist reload request (`_HLS_msn=<n>[&_HLS_part=<m>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingReload {
    pub msn: u64,
    pub part: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HlsError {
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    #[error("`{name}` is not a number: `{value}`")]
    NotANumber { name: &'static str, value: String },
    #[error("_HLS_msn={msn} is more than two segments ahead of the newest ({newest})")]
    TooFarAhead { msn: u64, newest: u64 },
}

impl BlockingReload {
    /// From the query parameters; `Ok(None)` for a plain request.
    pub fn from_query(msn: Option<&str>, part: Option<&str>) -> Result<Option<Self>, HlsError> {
        let num = |name: &'static str, v: &str| {
            v.trim().parse().map_err(|_| HlsError::NotANumber {
                name,
                value: v.chars().take(32).collect(),
            })
        };
        match (msn, part) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(HlsError::PartWithoutMsn),
            (Some(m), p) => Ok(Some(Self {
                msn: num("_HLS_msn", m)?,
                part: p
                    .map(|p| num("_HLS_part", p))
                    .transpose()?
                    .map(|v: u64| v as u32),
            })),
        }
    }

    /// Whether `playlist` already satisfies the request: segment `msn` complete, or (with a part)
    /// that part of it published.
    pub fn satisfied_by(&self, playlist: &Playlist) -> bool {
        playlist.segments.iter().any(|s| {
            s.msn > self.msn
                || (s.msn == self.msn
                    && (s.complete || self.part.is_some_and(|p| (p as usize) < s.parts.len())))
        })
    }

    /// The draft says a request more than two segments beyond the newest gets 400.
    pub fn check_reachable(&self, playlist: &Playlist) -> Result<(), HlsError> {
        let newest = playlist.segments.last().map_or(0, |s| s.msn);
        if self.msn > newest + 2 {
            return Err(HlsError::TooFarAhead {
                msn: self.msn,
                newest,
            });
        }
        Ok(())
    }
}

impl Playlist {
    /// The playlist text. Parts are listed for the open segment and the last `parts_for_last`
    /// complete ones, followed by a preload hint for the next part.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(1024);
        let first = self.segments.first().map_or(0, |s| s.msn);
        let _ = writeln!(o, "#EXTM3U");
        let _ = writeln!(o, "#EXT-X-VERSION:9");
        let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(o, "#EXT-X-INDEPENDENT-SEGMENTS");
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}",
            self.part_target * 3.0,
            f64::from(self.target_duration) * 3.0
        );
        let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={:.3}", self.part_target);
        let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{first}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                o,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        let _ = writeln!(o, "#EXT-X-MAP:URI=\"{INIT}\"");
        let complete = self.segments.iter().filter(|s| s.complete).count();
        let mut seen_complete = 0;
        let mut next_part = None;
        for s in &self.segments {
            if s.discontinuity {
                let _ = writeln!(o, "#EXT-X-DISCONTINUITY");
            }
            let list_parts = !s.complete || complete - seen_complete <= self.parts_for_last;
            if list_parts {
                for (i, p) in s.parts.iter().enumerate() {
                    let uri = Resource::Part(s.msn, i as u32).uri();
                    let ind = if p.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        o,
                        "#EXT-X-PART:DURATION={:.3},URI=\"{uri}\"{ind}",
                        p.duration
                    );
                }
            }
            if s.complete {
                seen_complete += 1;
                let _ = writeln!(o, "#EXTINF:{:.3},", s.duration);
                let _ = writeln!(o, "{}", Resource::Segment(s.msn).uri());
                next_part = Some((s.msn + 1, 0));
            } else {
                next_part = Some((s.msn, s.parts.len() as u32));
            }
        }
        if let Some((msn, i)) = next_part {
            let _ = writeln!(
                o,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                Resource::Part(msn, i).uri()
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, parts: usize, complete: bool) -> SegmentInfo {
        SegmentInfo {
            msn,
            duration: 0.5 * parts as f64,
            parts: (0..parts)
                .map(|i| PartInfo {
                    duration: 0.5,
                    independent: i == 0,
                })
                .collect(),
            complete,
            discontinuity: false,
        }
    }

    fn playlist() -> Playlist {
        Playlist {
            target_duration: 2,
            part_target: 0.5,
            discontinuity_sequence: 0,
            segments: vec![
                seg(3, 4, true),
                seg(4, 4, true),
                seg(5, 4, true),
                seg(6, 2, false),
            ],
            parts_for_last: 1,
        }
    }

    #[test]
    fn renders_segments_parts_and_a_preload_hint() {
        let text = playlist().render();
        let expected_head = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n";
        assert!(text.starts_with(expected_head), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(text.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500"));
        assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
        assert!(text.contains("#EXTINF:2.000,\nseg3.m4s\n"));
        // Parts of the last complete segment and the open one only.
        assert!(!text.contains("part4.0.m4s"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.500,URI=\"part5.0.m4s\",INDEPENDENT=YES\n"));
        assert!(text.contains("URI=\"part6.1.m4s\"\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part6.2.m4s\"\n"));
        assert!(!text.contains("seg6.m4s"));
    }

    #[test]
    fn preload_hint_after_a_complete_last_segment_names_the_next_segment() {
        let mut p = playlist();
        p.segments.pop();
        p.segments[0].discontinuity = true;
        p.discontinuity_sequence = 2;
        let text = p.render();
        assert!(text.ends_with("URI=\"part6.0.m4s\"\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"));
    }

    #[test]
    fn resource_names_round_trip() {
        for r in [
            Resource::Playlist,
            Resource::Init,
            Resource::Segment(12),
            Resource::Part(12, 3),
        ] {
            assert_eq!(Resource::parse(&r.uri()), Some(r));
        }
        for bad in [
            "seg.m4s",
            "part1.m4s",
            "partx.1.m4s",
            "seg1.ts",
            "../init.mp4",
            "",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn blocking_reload_parsing_and_satisfaction() {
        assert_eq!(BlockingReload::from_query(None, None), Ok(None));
        assert_eq!(
            BlockingReload::from_query(None, Some("1")),
            Err(HlsError::PartWithoutMsn)
        );
        assert!(BlockingReload::from_query(Some("x"), None).is_err());
        let p = playlist();
        let req = |msn, part| BlockingReload { msn, part };
        assert!(req(5, None).satisfied_by(&p));
        assert!(!req(6, None).satisfied_by(&p));
        assert!(req(6, Some(1)).satisfied_by(&p));
        assert!(!req(6, Some(2)).satisfied_by(&p));
        assert!(!req(7, Some(0)).satisfied_by(&p));
        assert!(req(8, None).check_reachable(&p).is_ok());
        assert!(req(9, None).check_reachable(&p).is_err());
        let parsed = BlockingReload::from_query(Some("6"), Some("2")).expect("ok");
        assert_eq!(parsed, Some(req(6, Some(2))));
    }
}
