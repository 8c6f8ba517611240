//! HLS on a cold hub against the simulator (which answers a PLI with an IDR at its next frame and
//! sends one every 2 s on its own): the first playlist already holds a full-length segment for
//! `TARGETDURATION:1` — a segment starting with an IDR, closed by the IDR the bridge asked for —
//! and every later segment keeps to the target, one PLI per segment.

use super::clients::{http_get, serve};
use super::{rig, stat};

fn extinfs(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#EXTINF:")?
                .trim_end_matches(',')
                .parse()
                .ok()
        })
        .collect()
}

fn segment_names(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| l.starts_with("seg") && l.ends_with(".m4s"))
        .collect()
}

/// Whether the fragment's media starts with an IDR: the first NAL units of its `mdat` (AVCC,
/// 4-byte lengths; the video sample comes first) up to the first slice.
fn starts_with_idr(fragment: &[u8]) -> bool {
    let Some(at) = fragment.windows(4).position(|w| w == b"mdat") else {
        return false;
    };
    let mut rest = &fragment[at + 4..];
    while rest.len() > 5 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        match rest[4] & 0x1f {
            5 => return true,
            1 => return false,
            _ => rest = rest.get(4 + len..).unwrap_or_default(),
        }
    }
    false
}

async fn get_text(addr: std::net::SocketAddr, path: &str) -> String {
    let mut resp = http_get(addr, path).await;
    assert_eq!(resp.status, 200, "{path}");
    String::from_utf8(resp.body().await).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_hls_first_playlist_has_a_full_one_second_segment_closed_by_a_requested_idr() {
    let rig = rig(None, None).await;
    let addr = serve(rig.state.clone(), rig.stop.clone()).await;
    assert_eq!(stat(&rig.sim, |s| &s.active_calls), 0, "a cold hub");

    let first = get_text(addr, "/api/doorbell/hls/index.m3u8").await;
    assert!(first.contains("#EXT-X-TARGETDURATION:1\n"), "{first}");
    assert!(
        first.contains("PART-HOLD-BACK=1.500,HOLD-BACK=3.000"),
        "{first}"
    );
    let durations = extinfs(&first);
    assert_eq!(
        durations.len(),
        1,
        "served with its first segment:\n{first}"
    );
    // Full-length for the published target: rounds to 1 s (RFC 8216 §4.3.3.1), not the 2 s GOP.
    assert!(
        durations[0] >= 0.5 && durations[0] < 1.5,
        "first segment {durations:?}"
    );
    let plis = stat(&rig.sim, |s| &s.plis_received);
    assert!(plis >= 1, "the IDR that closed it was asked for");
    assert!(stat(&rig.sim, |s| &s.idrs_sent) >= 2);
    let name = segment_names(&first)[0].to_owned();
    let mut seg = http_get(addr, &format!("/api/doorbell/hls/{name}")).await;
    assert_eq!(seg.status, 200);
    assert!(
        starts_with_idr(&seg.body().await),
        "{name} starts with an IDR"
    );

    // Four segments on: each one rounds to the target, each closed by the IDR asked for.
    let msn: u64 = name
        .trim_start_matches("seg")
        .trim_end_matches(".m4s")
        .parse()
        .expect("msn");
    let mut later = String::new();
    for next in msn + 1..=msn + 4 {
        // A blocking reload may ask at most two segments ahead.
        later = get_text(
            addr,
            &format!("/api/doorbell/hls/index.m3u8?_HLS_msn={next}"),
        )
        .await;
    }
    assert!(later.contains("#EXT-X-TARGETDURATION:1\n"), "{later}");
    let durations = extinfs(&later);
    assert!(durations.len() >= 5, "{later}");
    assert!(
        durations.iter().all(|d| *d >= 0.5 && *d < 1.5),
        "{durations:?}"
    );
    for name in segment_names(&later) {
        let mut seg = http_get(addr, &format!("/api/doorbell/hls/{name}")).await;
        assert_eq!(seg.status, 200);
        assert!(
            starts_with_idr(&seg.body().await),
            "{name} starts with an IDR"
        );
    }
    let more = stat(&rig.sim, |s| &s.plis_received) - plis;
    assert!(more >= 4, "one PLI per segment, got {more} for 4 segments");
    eprintln!("HLS 1 s segments: {durations:?}, {} PLIs", plis + more);
    rig.stop.cancel();
}
