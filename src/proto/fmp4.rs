//! Fragmented MP4 (ISO/IEC 14496-12, CMAF-style) for HLS and ring clips: the init segment
//! (`ftyp`, `moov` with `avc1`/`avcC` and `mp4a`/`esds`; for a finished file also the durations
//! and `mehd`) and media fragments (`moof` + `mdat`, one `traf` per track). Pure bytes out; which
//! frames go into which fragment is the caller's business (streaming.md §6).

/// Track ids used in every init segment and fragment.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Video timescale: the RTP clock, so 90 kHz timestamps are used unchanged.
pub const VIDEO_TIMESCALE: u32 = 90_000;

const SAMPLE_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (I picture)
const SAMPLE_NON_SYNC: u32 = 0x0101_0000; // depends_on = 1, sample_is_non_sync_sample

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Fmp4Error {
    #[error("SPS too short ({0} bytes) for avcC")]
    ShortSps(usize),
    #[error("{what} is {len} bytes, larger than the box field allows")]
    TooLarge { what: &'static str, len: usize },
}

/// The H.264 track: parameter sets (NAL header included, no start code) and picture size.
#[derive(Debug, Clone)]
pub struct VideoTrack<'a> {
    pub sps: &'a [u8],
    pub pps: &'a [u8],
    pub width: u32,
    pub height: u32,
}

/// The AAC track: the AudioSpecificConfig bytes, rate and channels.
#[derive(Debug, Clone)]
pub struct AudioTrack<'a> {
    pub asc: &'a [u8],
    pub sample_rate: u32,
    pub channels: u16,
}

/// One sample: its bytes (AVCC for video, raw AAC for audio), duration in track ticks.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub data: &'a [u8],
    pub duration: u32,
    pub keyframe: bool,
}

/// The samples of one track in one fragment, starting at `base_decode_time` (track ticks).
#[derive(Debug, Clone)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub samples: Vec<Sample<'a>>,
}

/// Writes a box: 32-bit size, type, then whatever `body` appends.
fn mp4_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box whose body starts with version (8 bits) and flags (24 bits).
fn full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    mp4_box(out, kind, |o| {
        o.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(o);
    });
}

fn u16be(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn u32be(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix(out: &mut Vec<u8>) {
    for v in MATRIX {
        u32be(out, v);
    }
}

/// How long a finished fragmented file lasts: written into `mvhd`, `tkhd`, `mdhd` and `mehd`
/// (§8.8.2) so players and ffprobe know the duration without reading every fragment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durations {
    /// Video duration in 90 kHz ticks.
    pub video_90k: u64,
    /// Audio duration in samples at the audio track's rate.
    pub audio_samples: u64,
}

/// Movie timescale (`mvhd`, `tkhd`, `mehd`): milliseconds.
const MOVIE_TIMESCALE: u64 = 1000;

/// `ftyp` + `moov` for the video track and, when given, the audio track (live: no durations).
pub fn init_segment(video: &VideoTrack, audio: Option<&AudioTrack>) -> Result<Vec<u8>, Fmp4Error> {
    init_segment_with(video, audio, None)
}

/// `init_segment` for a file: with `durations` (64-bit fields, so a placeholder written first can
/// be overwritten in place by the final values: the length depends only on the tracks).
pub fn init_segment_with_durations(
    video: &VideoTrack,
    audio: Option<&AudioTrack>,
    durations: Durations,
) -> Result<Vec<u8>, Fmp4Error> {
    init_segment_with(video, audio, Some(durations))
}

fn init_segment_with(
    video: &VideoTrack,
    audio: Option<&AudioTrack>,
    durations: Option<Durations>,
) -> Result<Vec<u8>, Fmp4Error> {
    if video.sps.len() < 4 {
        return Err(Fmp4Error::ShortSps(video.sps.len()));
    }
    for (what, len) in [("SPS", video.sps.len()), ("PPS", video.pps.len())] {
        if len > usize::from(u16::MAX) {
            return Err(Fmp4Error::TooLarge { what, len });
        }
    }
    if let Some(a) = audio
        && a.asc.len() > 100
    {
        return Err(Fmp4Error::TooLarge {
            what: "AudioSpecificConfig",
            len: a.asc.len(),
        });
    }
    let mut out = Vec::with_capacity(1024);
    mp4_box(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        u32be(o, 0);
        for brand in [b"iso6", b"cmfc", b"mp41", b"isom", b"avc1"] {
            o.extend_from_slice(brand);
        }
    });
    // Track durations in the movie timescale, and the movie's (the longer track).
    let ms = |ticks: u64, rate: u64| ticks.saturating_mul(MOVIE_TIMESCALE) / rate.max(1);
    let video_ms = durations.map(|d| ms(d.video_90k, u64::from(VIDEO_TIMESCALE)));
    let audio_ms = match (durations, audio) {
        (Some(d), Some(a)) => Some(ms(d.audio_samples, u64::from(a.sample_rate))),
        _ => None,
    };
    let movie_ms = video_ms.map(|v| v.max(audio_ms.unwrap_or(0)));
    mp4_box(&mut out, b"moov", |o| {
        full_box(o, b"mvhd", u8::from(durations.is_some()), 0, |o| {
            time_fields(
                o,
                durations.is_some(),
                MOVIE_TIMESCALE as u32,
                movie_ms.unwrap_or(0),
            );
            u32be(o, 0x0001_0000); // rate 1.0
            u16be(o, 0x0100); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]); // pre_defined
            u32be(o, AUDIO_TRACK + 1); // next_track_ID
        });
        video_trak(o, video, video_ms.zip(durations.map(|d| d.video_90k)));
        if let Some(a) = audio {
            audio_trak(o, a, audio_ms.zip(durations.map(|d| d.audio_samples)));
        }
        mp4_box(o, b"mvex", |o| {
            if let Some(total) = movie_ms {
                // Movie extends header: the whole file's duration, movie timescale.
                full_box(o, b"mehd", 1, 0, |o| {
                    o.extend_from_slice(&total.to_be_bytes())
                });
            }
            let mut tracks = vec![VIDEO_TRACK];
            if audio.is_some() {
                tracks.push(AUDIO_TRACK);
            }
            for id in tracks {
                full_box(o, b"trex", 0, 0, |o| {
                    u32be(o, id);
                    u32be(o, 1); // default_sample_description_index
                    u32be(o, 0);
                    u32be(o, 0);
                    u32be(o, 0);
                });
            }
        });
    });
    Ok(out)
}

/// creation, modification, [track id, reserved,] timescale-or-not, duration: version 1 (64-bit
/// times) when the file carries durations, so the length never depends on their values.
fn time_fields(o: &mut Vec<u8>, wide: bool, timescale: u32, duration: u64) {
    if wide {
        o.extend_from_slice(&[0; 16]);
        u32be(o, timescale);
        o.extend_from_slice(&duration.to_be_bytes());
    } else {
        o.extend_from_slice(&[0; 8]);
        u32be(o, timescale);
        u32be(o, u32::try_from(duration).unwrap_or(u32::MAX));
    }
}

/// `duration`: in the movie timescale, for a file (`None` live).
fn tkhd(o: &mut Vec<u8>, id: u32, audio: bool, (width, height): (u32, u32), duration: Option<u64>) {
    full_box(o, b"tkhd", u8::from(duration.is_some()), 0x3, |o| {
        match duration {
            Some(d) => {
                o.extend_from_slice(&[0; 16]);
                u32be(o, id);
                u32be(o, 0); // reserved
                o.extend_from_slice(&d.to_be_bytes());
            }
            None => {
                u32be(o, 0);
                u32be(o, 0);
                u32be(o, id);
                u32be(o, 0); // reserved
                u32be(o, 0); // duration
            }
        }
        o.extend_from_slice(&[0; 8]);
        u16be(o, 0); // layer
        u16be(o, 0); // alternate_group
        u16be(o, if audio { 0x0100 } else { 0 });
        u16be(o, 0);
        matrix(o);
        u32be(o, width << 16);
        u32be(o, height << 16);
    });
}

/// `duration`: in the track's timescale, for a file (`None` live).
fn mdhd_hdlr(
    o: &mut Vec<u8>,
    timescale: u32,
    duration: Option<u64>,
    handler: &[u8; 4],
    name: &str,
) {
    full_box(o, b"mdhd", u8::from(duration.is_some()), 0, |o| {
        time_fields(o, duration.is_some(), timescale, duration.unwrap_or(0));
        u16be(o, 0x55c4); // "und"
        u16be(o, 0);
    });
    full_box(o, b"hdlr", 0, 0, |o| {
        u32be(o, 0);
        o.extend_from_slice(handler);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(name.as_bytes());
        o.push(0);
    });
}

/// `dinf` and the empty sample tables around one sample entry.
fn dinf_stbl(o: &mut Vec<u8>, entry: impl FnOnce(&mut Vec<u8>)) {
    mp4_box(o, b"dinf", |o| {
        full_box(o, b"dref", 0, 0, |o| {
            u32be(o, 1);
            full_box(o, b"url ", 0, 1, |_| {});
        });
    });
    mp4_box(o, b"stbl", |o| {
        full_box(o, b"stsd", 0, 0, |o| {
            u32be(o, 1);
            entry(o);
        });
        full_box(o, b"stts", 0, 0, |o| u32be(o, 0));
        full_box(o, b"stsc", 0, 0, |o| u32be(o, 0));
        full_box(o, b"stsz", 0, 0, |o| {
            u32be(o, 0);
            u32be(o, 0);
        });
        full_box(o, b"stco", 0, 0, |o| u32be(o, 0));
    });
}

/// `duration`: (movie timescale, track timescale) for a file.
fn video_trak(o: &mut Vec<u8>, v: &VideoTrack, duration: Option<(u64, u64)>) {
    mp4_box(o, b"trak", |o| {
        tkhd(
            o,
            VIDEO_TRACK,
            false,
            (v.width, v.height),
            duration.map(|d| d.0),
        );
        mp4_box(o, b"mdia", |o| {
            mdhd_hdlr(
                o,
                VIDEO_TIMESCALE,
                duration.map(|d| d.1),
                b"vide",
                "VideoHandler",
            );
            mp4_box(o, b"minf", |o| {
                full_box(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                dinf_stbl(o, |o| {
                    mp4_box(o, b"avc1", |o| {
                        o.extend_from_slice(&[0; 6]);
                        u16be(o, 1); // data_reference_index
                        o.extend_from_slice(&[0; 16]);
                        u16be(o, u16::try_from(v.width).unwrap_or(u16::MAX));
                        u16be(o, u16::try_from(v.height).unwrap_or(u16::MAX));
                        u32be(o, 0x0048_0000);
                        u32be(o, 0x0048_0000);
                        u32be(o, 0);
                        u16be(o, 1); // frame_count
                        o.extend_from_slice(&[0; 32]); // compressorname
                        u16be(o, 0x0018);
                        u16be(o, 0xffff);
                        mp4_box(o, b"avcC", |o| {
                            o.extend_from_slice(&[1, v.sps[1], v.sps[2], v.sps[3], 0xff, 0xe1]);
                            u16be(o, v.sps.len() as u16);
                            o.extend_from_slice(v.sps);
                            o.push(1);
                            u16be(o, v.pps.len() as u16);
                            o.extend_from_slice(v.pps);
                        });
                    });
                });
            });
        });
    });
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3) with a one-byte length (bodies < 128 bytes).
fn descriptor(o: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    o.push(tag);
    let at = o.len();
    o.push(0);
    body(o);
    o[at] = (o.len() - at - 1).min(127) as u8;
}

/// `duration`: (movie timescale, track timescale) for a file.
fn audio_trak(o: &mut Vec<u8>, a: &AudioTrack, duration: Option<(u64, u64)>) {
    mp4_box(o, b"trak", |o| {
        tkhd(o, AUDIO_TRACK, true, (0, 0), duration.map(|d| d.0));
        mp4_box(o, b"mdia", |o| {
            mdhd_hdlr(
                o,
                a.sample_rate,
                duration.map(|d| d.1),
                b"soun",
                "SoundHandler",
            );
            mp4_box(o, b"minf", |o| {
                full_box(o, b"smhd", 0, 0, |o| u32be(o, 0));
                dinf_stbl(o, |o| {
                    mp4_box(o, b"mp4a", |o| {
                        o.extend_from_slice(&[0; 6]);
                        u16be(o, 1);
                        o.extend_from_slice(&[0; 8]);
                        u16be(o, a.channels);
                        u16be(o, 16);
                        u32be(o, 0);
                        u32be(o, a.sample_rate.min(0xffff) << 16);
                        full_box(o, b"esds", 0, 0, |o| {
                            descriptor(o, 0x03, |o| {
                                u16be(o, AUDIO_TRACK as u16); // ES_ID
                                o.push(0);
                                descriptor(o, 0x04, |o| {
                                    o.push(0x40); // MPEG-4 audio
                                    o.push(0x15); // audio stream, upstream 0, reserved 1
                                    o.extend_from_slice(&[0, 0, 0]); // bufferSizeDB
                                    u32be(o, 0);
                                    u32be(o, 0);
                                    descriptor(o, 0x05, |o| o.extend_from_slice(a.asc));
                                });
                                descriptor(o, 0x06, |o| o.push(0x02));
                            });
                        });
                    });
                });
            });
        });
    });
}

/// One `moof` + `mdat` holding every run (video first by convention); `sequence` goes in `mfhd`.
pub fn fragment(sequence: u32, runs: &[TrackRun]) -> Vec<u8> {
    // The moof's size does not depend on the data offsets, so write it once to learn it.
    let moof_len = moof(sequence, runs, 0).len();
    let mut out = moof(sequence, runs, moof_len as u32 + 8);
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    out.reserve(data_len + 8);
    mp4_box(&mut out, b"mdat", |o| {
        for s in runs.iter().flat_map(|r| r.samples.iter()) {
            o.extend_from_slice(s.data);
        }
    });
    out
}

fn moof(sequence: u32, runs: &[TrackRun], first_offset: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut offset = first_offset;
    mp4_box(&mut out, b"moof", |o| {
        full_box(o, b"mfhd", 0, 0, |o| u32be(o, sequence));
        for run in runs {
            mp4_box(o, b"traf", |o| {
                // default-base-is-moof: data offsets count from this moof's first byte.
                full_box(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, run.track_id));
                full_box(o, b"tfdt", 1, 0, |o| {
                    o.extend_from_slice(&run.base_decode_time.to_be_bytes())
                });
                // data-offset, sample duration, size and flags present.
                full_box(o, b"trun", 0, 0x0701, |o| {
                    u32be(o, run.samples.len() as u32);
                    u32be(o, offset);
                    for s in &run.samples {
                        u32be(o, s.duration);
                        u32be(o, s.data.len() as u32);
                        u32be(
                            o,
                            if s.keyframe {
                                SAMPLE_SYNC
                            } else {
                                SAMPLE_NON_SYNC
                            },
                        );
                    }
                });
            });
            let run_len: usize = run.samples.iter().map(|s| s.data.len()).sum();
            offset = offset.saturating_add(run_len as u32);
        }
    });
    out
}

#[cfg(test)]
mod tests;
