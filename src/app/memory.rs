//! The heap between calls (issue 13: idle RSS). glibc's malloc keeps what a call freed: its
//! dynamic mmap threshold climbs after the first large free (FFmpeg's codec contexts, frame
//! buffers), so later large buffers come from per-thread arenas that never shrink. [`tune`] pins
//! the thresholds (and one arena) before any thread starts; [`trim_when_idle`] hands the freed
//! pages back (`malloc_trim`) once every hub is idle again. Other C libraries: both do nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use tokio::sync::watch;

use crate::media::hub::{HubState, HubStatus, StreamHub};

/// Allocations from this size on are their own mappings, returned to the kernel when freed
/// (glibc's starting value, kept fixed instead of growing with the largest free).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is returned at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 128 * 1024;
/// One arena for every thread: the bridge's few threads rarely allocate at the same time, and
/// each further arena keeps its own freed pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: i32 = 1;

/// After the last call ends, the trim waits this long for the call's tasks to finish their drops.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Sets the allocator up for a long-running bridge. Call it first thing in `main`, before the
/// runtime starts its threads (arenas are made per thread on its first allocation).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes malloc's parameters (an int each); before any other thread
    // exists nothing races with it, and a value glibc rejects is ignored (returns 0).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns freed heap pages to the kernel; true when some were. Takes a few milliseconds
/// (it walks the free lists): call it from a blocking thread.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: malloc_trim takes the arenas' own locks; it is safe from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Whether a hub in `state` holds a call (placing, live or lingering).
pub fn busy(state: HubState) -> bool {
    matches!(
        state,
        HubState::Starting | HubState::Live | HubState::Lingering
    )
}

/// Edge detection: given whether any hub was busy and whether any is now, tells whether the
/// bridge just became idle (time to trim).
pub fn became_idle(was_busy: bool, now_busy: bool) -> bool {
    was_busy && !now_busy
}

/// Trims the heap [`SETTLE`] after the last hub's call ends (a new call in the meantime waits
/// for its own end); returns at `stop`.
pub async fn trim_when_idle(hubs: Vec<StreamHub>, stop: CancellationToken) -> Result<(), String> {
    let watches = hubs.iter().map(StreamHub::status_watch).collect();
    follow(watches, stop, trim).await;
    Ok(())
}

/// The driver of [`trim_when_idle`], with the trim passed in (tests count its calls).
async fn follow<F>(mut watches: Vec<watch::Receiver<HubStatus>>, stop: CancellationToken, trim: F)
where
    F: Fn() -> bool + Clone + Send + 'static,
{
    if watches.is_empty() {
        stop.cancelled().await;
        return;
    }
    let mut was_busy = false;
    loop {
        let now_busy = watches
            .iter_mut()
            .any(|w| busy(w.borrow_and_update().state));
        if became_idle(was_busy, now_busy) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            if !watches.iter().any(|w| busy(w.borrow().state)) {
                let released = tokio::task::spawn_blocking(trim.clone())
                    .await
                    .unwrap_or(false);
                tracing::debug!(released, "calls over: heap trimmed");
            }
        }
        was_busy = now_busy;
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        tokio::select! {
            _ = stop.cancelled() => return,
            (changed, _, _) = futures_util::future::select_all(changes) => {
                if changed.is_err() {
                    // A hub is gone: the bridge is stopping (its supervisor reports why).
                    stop.cancelled().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_make_a_hub_busy() {
        let table = [
            (HubState::Idle, false),
            (HubState::Starting, true),
            (HubState::Live, true),
            (HubState::Lingering, true),
            (HubState::Failed, false),
        ];
        for (state, want) in table {
            assert_eq!(busy(state), want, "{state:?}");
        }
    }

    #[test]
    fn trims_on_the_busy_to_idle_edge_only() {
        let table = [
            (false, false, false),
            (false, true, false),
            (true, true, false),
            (true, false, true),
        ];
        for (was, now, want) in table {
            assert_eq!(became_idle(was, now), want, "was {was} now {now}");
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_returns_freed_pages_below_a_live_block() {
        tune();
        // 4 MB of heap blocks (each below the mmap threshold), then one block above them that
        // stays: their pages are free but not at the heap's top, only a trim returns them.
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        let pin = std::hint::black_box(vec![1u8; 1024]);
        drop(std::hint::black_box(blocks));
        assert!(trim(), "malloc_trim released nothing");
        drop(pin);
    }

    fn status(state: HubState) -> HubStatus {
        let panel = crate::config::Panel {
            name: "doorbell".into(),
            devaddr: 20,
        };
        HubStatus {
            state,
            ..HubStatus::initial(&panel)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn trims_once_after_the_last_call_ends_and_settles() {
        use std::time::Duration;
        let (a_tx, a) = watch::channel(status(HubState::Idle));
        let (b_tx, b) = watch::channel(status(HubState::Idle));
        let (trims_tx, mut trims) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(vec![a, b], stop.clone(), move || {
            trims_tx.send(()).is_ok()
        }));
        let quiet = |secs| tokio::time::sleep(Duration::from_secs(secs));
        let settle_ms = SETTLE.as_millis() as u64;

        // Idle from the start: nothing to give back.
        quiet(5).await;
        assert!(trims.try_recv().is_err(), "trimmed with no call");
        // A call on `a`: lingering is still a call; the trim comes SETTLE after it ends.
        a_tx.send_replace(status(HubState::Starting));
        a_tx.send_replace(status(HubState::Live));
        quiet(1).await;
        a_tx.send_replace(status(HubState::Lingering));
        quiet(30).await;
        assert!(trims.try_recv().is_err(), "trimmed during the call");
        a_tx.send_replace(status(HubState::Idle));
        tokio::time::sleep(Duration::from_millis(settle_ms - 100)).await;
        assert!(trims.try_recv().is_err(), "trimmed before the settle delay");
        let trimmed = tokio::time::timeout(Duration::from_secs(1), trims.recv()).await;
        assert_eq!(trimmed, Ok(Some(())), "no trim after the call");

        // Both hubs busy, `a` ends first: no trim while `b` has a call, one when it ends.
        a_tx.send_replace(status(HubState::Live));
        b_tx.send_replace(status(HubState::Live));
        quiet(1).await;
        a_tx.send_replace(status(HubState::Idle));
        quiet(10).await;
        assert!(
            trims.try_recv().is_err(),
            "trimmed while another hub had a call"
        );
        b_tx.send_replace(status(HubState::Failed));
        let trimmed = tokio::time::timeout(SETTLE * 2, trims.recv()).await;
        assert_eq!(trimmed, Ok(Some(())), "no trim after the last call");

        // A new call within the settle delay: no trim until that one ends.
        a_tx.send_replace(status(HubState::Live));
        quiet(1).await;
        a_tx.send_replace(status(HubState::Idle));
        quiet(1).await;
        a_tx.send_replace(status(HubState::Live));
        quiet(10).await;
        assert!(trims.try_recv().is_err(), "trimmed during the next call");
        a_tx.send_replace(status(HubState::Idle));
        let trimmed = tokio::time::timeout(SETTLE * 2, trims.recv()).await;
        assert_eq!(trimmed, Ok(Some(())), "no trim after the next call");
        quiet(10).await;
        assert!(
            trims.try_recv().is_err(),
            "trimmed twice for one idle period"
        );

        stop.cancel();
        assert!(task.await.is_ok());
    }
}
