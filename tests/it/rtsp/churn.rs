//! Viewer churn: 150 short RTSP sessions in 15 overlapping waves of 10 (each plays a few hundred
//! ms, then half TEARDOWN and half just drop the connection). One call serves them all, every
//! session gets video at once from the GOP cache, the viewer count returns to 0 and the BYE
//! follows the linger.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::raw::Raw;
use super::{T, start};
use crate::rig::eventually;

#[tokio::test]
async fn viewer_churn_keeps_one_call_and_ends_it_after_the_last() {
    let f = start(10, |_| {}).await;
    let started = Instant::now();
    let (mut served, mut torn_down) = (0usize, 0usize);
    let mut peak = 0;
    for wave in 0..15u64 {
        let mut clients = JoinSet::new();
        for i in 0..10u64 {
            let (addr, url) = (f.addr, f.url());
            clients.spawn(async move {
                let mut raw = Raw::connect(addr).await;
                let session = raw.play_tcp(&url).await;
                let counts = raw.count_frames(Duration::from_millis(200 + 30 * i)).await;
                let teardown = (wave + i) % 2 == 0;
                if teardown {
                    let r = raw
                        .request("TEARDOWN", &url, &[("Session", &session)])
                        .await;
                    assert_eq!(r.status, 200, "{}", r.head);
                }
                (counts[0] > 0, teardown)
            });
        }
        while !clients.is_empty() {
            peak = peak.max(f.hub.status().viewers);
            if let Some(done) = clients.try_join_next() {
                let (got_video, teardown) = done.expect("client");
                served += usize::from(got_video);
                torn_down += usize::from(teardown);
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let churn = started.elapsed();
    assert_eq!(served, 150, "every session got video");
    assert_eq!(f.invites(), 1, "one call for the whole churn");
    let last_left = Instant::now();
    eventually("viewers back to 0", T, || f.hub.status().viewers == 0).await;
    eventually("BYE after the linger", T, || f.byes() == 1).await;
    eprintln!(
        "churn: 150 sessions ({torn_down} TEARDOWN, {} dropped) in {churn:.1?}, peak {peak} viewers, \
         1 INVITE, BYE {:.1?} after the last left",
        150 - torn_down,
        last_left.elapsed()
    );
}
