//! Criterion micro-benchmarks of the bridge's per-packet and per-frame work, on the simulator's
//! own stream (`sim::frames::hub_frames`: 400x288 H.264 at 10 fps, Speex → AAC): SRTP unprotect,
//! H.264 depacketize, RTSP packetize + interleave for one viewer, an fMP4 fragment, Speex → AAC,
//! JPEG encode. `cargo bench --bench micro`; the system-level figures are scripts/bench.sh's.

use std::hint::black_box;

use c300x_bridge::media::hub::Frame;
use c300x_bridge::media::jpeg::{H264Decoder, JpegEncoder};
use c300x_bridge::media::transcode::{AacSettings, SpeexToAac};
use c300x_bridge::proto::aac::rfc3640_payload;
use c300x_bridge::proto::fmp4::{Sample, TrackRun, fragment};
use c300x_bridge::proto::h264::{Depacketizer, Packetizer};
use c300x_bridge::proto::rtp::RtpHeader;
use c300x_bridge::proto::rtsp::response::write_interleaved;
use c300x_bridge::proto::srtp::{SdesKey, SrtpSession};
use c300x_bridge::sim::frames::hub_frames;
use c300x_bridge::sim::media::SpeechEncoder;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Two seconds of the simulator's stream (one GOP) with its AAC.
fn frames() -> Vec<Frame> {
    c300x_bridge::media::init_ffmpeg();
    hub_frames(None, 2, 0, Some(AacSettings::default()))
        .expect("simulator frames")
        .frames
}

/// The video of `frames` as plain RTP packets (seq, timestamp, marker, payload) at the MTU.
fn video_rtp(frames: &[Frame]) -> Vec<(u16, u32, bool, Vec<u8>)> {
    let packetizer = Packetizer::new(1188);
    let mut seq = 0u16;
    let mut out = Vec::new();
    for f in frames {
        if let Frame::Video(v) = f {
            for p in packetizer.packetize(&v.au.nals) {
                out.push((seq, v.pts as u32, p.marker, p.data.to_vec()));
                seq = seq.wrapping_add(1);
            }
        }
    }
    out
}

fn srtp_unprotect(c: &mut Criterion) {
    let key = SdesKey::random();
    let mut sender = SrtpSession::new(&key).expect("srtp");
    let packets: Vec<Vec<u8>> = video_rtp(&frames())
        .into_iter()
        .map(|(seq, ts, marker, payload)| {
            let header = RtpHeader {
                marker,
                payload_type: 96,
                sequence: seq,
                timestamp: ts,
                ssrc: 0x1234_5678,
            };
            sender
                .protect_rtp(&header.to_packet(&payload))
                .expect("protect")
                .to_vec()
        })
        .collect();
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(packets.len() as u64));
    // A new receiving session per batch: SRTP's replay window refuses a packet seen before.
    g.bench_function("unprotect_rtp (per GOP of video packets)", |b| {
        b.iter_batched(
            || SrtpSession::new(&key).expect("srtp"),
            |mut rx| {
                for p in &packets {
                    black_box(rx.unprotect_rtp(p).expect("unprotect"));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn h264_depacketize(c: &mut Criterion) {
    let packets = video_rtp(&frames());
    let mut g = c.benchmark_group("h264");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("depacketize (per GOP of video packets)", |b| {
        b.iter_batched(
            Depacketizer::new,
            |mut d| {
                for (seq, ts, marker, payload) in &packets {
                    black_box(d.push(*seq, *ts, *marker, payload));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn rtsp_viewer(c: &mut Criterion) {
    let frames = frames();
    let packetizer = Packetizer::new(1188);
    let mut g = c.benchmark_group("rtsp");
    g.throughput(Throughput::Elements(frames.len() as u64));
    // What one RTSP/TCP viewer costs per frame: RTP packets of the frame, `$`-framed into the
    // connection's write buffer (video: FU-A at the MTU; audio: RFC 3640).
    g.bench_function(
        "packetize + interleave, one viewer (per GOP of frames)",
        |b| {
            let mut out = Vec::with_capacity(1 << 20);
            b.iter(|| {
                out.clear();
                let mut seq = 0u16;
                for f in &frames {
                    match f {
                        Frame::Video(v) => {
                            for p in packetizer.packetize(&v.au.nals) {
                                let h = RtpHeader {
                                    marker: p.marker,
                                    payload_type: 96,
                                    sequence: seq,
                                    timestamp: v.pts as u32,
                                    ssrc: 1,
                                };
                                seq = seq.wrapping_add(1);
                                write_interleaved(&mut out, 0, &h.to_packet(&p.data));
                            }
                        }
                        Frame::Audio(a) => {
                            let payload = rfc3640_payload(&[&a.frame.data]).expect("aac payload");
                            let h = RtpHeader {
                                marker: true,
                                payload_type: 97,
                                sequence: seq,
                                timestamp: a.pts as u32,
                                ssrc: 2,
                            };
                            write_interleaved(&mut out, 2, &h.to_packet(&payload));
                        }
                        Frame::Discontinuity => {}
                    }
                }
                black_box(out.len())
            })
        },
    );
    g.finish();
}

fn fmp4_fragment(c: &mut Criterion) {
    let frames = frames();
    let avcc: Vec<(Vec<u8>, bool)> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Video(v) => Some((v.au.to_avcc(), v.au.keyframe)),
            _ => None,
        })
        .collect();
    let aac: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Audio(a) => Some(&a.frame.data[..]),
            _ => None,
        })
        .collect();
    let mut g = c.benchmark_group("fmp4");
    g.bench_function("fragment (2 s: 20 pictures + AAC)", |b| {
        b.iter(|| {
            let runs = [
                TrackRun {
                    track_id: 1,
                    base_decode_time: 0,
                    samples: avcc
                        .iter()
                        .map(|(d, k)| Sample {
                            data: d,
                            duration: 9000,
                            keyframe: *k,
                        })
                        .collect(),
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: 0,
                    samples: aac
                        .iter()
                        .map(|d| Sample {
                            data: d,
                            duration: 1024,
                            keyframe: true,
                        })
                        .collect(),
                },
            ];
            black_box(fragment(1, &runs))
        })
    });
    g.finish();
}

fn speex_to_aac(c: &mut Criterion) {
    c300x_bridge::media::init_ffmpeg();
    let mut speech = SpeechEncoder::new().expect("speex");
    // One second of the simulator's Speex (50 packets of 20 ms at 8 kHz).
    let mut packets = Vec::new();
    while packets.len() < 50 {
        packets.extend(speech.encode_next().expect("encode"));
    }
    let mut g = c.benchmark_group("audio");
    g.bench_function(
        "speex → aac, 1 s of audio (× real time = 1 s / time)",
        |b| {
            b.iter_batched(
                || SpeexToAac::new(AacSettings::default()).expect("transcoder"),
                |mut t| {
                    for (i, p) in packets.iter().enumerate() {
                        black_box(t.push(i as u32 * 160, p).expect("push"));
                    }
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.finish();
}

fn jpeg_encode(c: &mut Criterion) {
    let frames = frames();
    let Some(Frame::Video(key)) = frames
        .iter()
        .find(|f| matches!(f, Frame::Video(v) if v.au.keyframe))
    else {
        panic!("no keyframe");
    };
    let mut decoder = H264Decoder::new().expect("decoder");
    let picture = match decoder.decode(&key.au.to_annexb()).expect("decode") {
        Some(p) => p.clone(),
        None => decoder.finish().expect("flush").expect("a picture").clone(),
    };
    let mut encoder = JpegEncoder::new(80);
    let mut g = c.benchmark_group("jpeg");
    g.bench_function("encode 400x288, quality 80", |b| {
        b.iter(|| black_box(encoder.encode(&picture).expect("jpeg")))
    });
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = srtp_unprotect, h264_depacketize, rtsp_viewer, fmp4_fragment, speex_to_aac, jpeg_encode
}
criterion_main!(micro);
