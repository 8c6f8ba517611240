//! `GET /api/<panel>/hls/<file>`: the playlist (`index.m3u8`, with blocking reload
//! `_HLS_msn/_HLS_part`), `init.mp4`, segments `seg<n>.m4s` and LL-HLS parts `part<n>.<i>.m4s`.
//! Every request keeps the panel's HLS session (and so its one lease) alive; see `hls_session`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::hls_muxer::TARGET;
use super::hls_session::WaitError;
use super::{ApiError, Shared};
use crate::media::hub::HubError;
use crate::proto::hls::{BlockingReload, Resource};

#[derive(Debug, Deserialize)]
pub struct HlsQuery {
    #[serde(rename = "_HLS_msn")]
    msn: Option<String>,
    #[serde(rename = "_HLS_part")]
    part: Option<String>,
}

fn wait_error(e: WaitError, what: &str) -> ApiError {
    match e {
        WaitError::Timeout => ApiError::Timeout(format!("{what} not ready in time")),
        WaitError::Failed(why) => ApiError::StreamEnded(why),
    }
}

fn media(body: Bytes, content_type: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

pub async fn resource(
    State(shared): State<Arc<Shared>>,
    Path((panel, file)): Path<(String, String)>,
    Query(q): Query<HlsQuery>,
) -> Result<Response, ApiError> {
    let p = shared.panel(&panel)?;
    let res = Resource::parse(&file)
        .ok_or_else(|| ApiError::NotFound(format!("no HLS resource `{}`", file.escape_debug())))?;
    let block = BlockingReload::from_query(q.msn.as_deref(), q.part.as_deref())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !p.hub.status().streaming_allowed {
        return Err(HubError::StreamingDisabled { panel }.into());
    }
    let (session, _guard) = p.hls.session();
    // Long enough for a call to start plus one whole segment.
    let first = p.hls.start_timeout + Duration::from_secs(6);
    let target = session
        .mux
        .lock()
        .ok()
        .and_then(|m| m.as_ref().map(|m| m.target_duration()))
        .unwrap_or(TARGET);
    // Blocking reloads and media wait up to 3 target durations (at least 3 s).
    let hold = Duration::from_secs(3 * u64::from(target.max(1)));
    const M3U8: &str = "application/vnd.apple.mpegurl";
    const MP4: &str = "video/mp4";
    match res {
        Resource::Playlist => {
            let current = session
                .wait_for(first, |m| (m.complete_segments() > 0).then(|| m.playlist()))
                .await
                .map_err(|e| wait_error(e, "the first HLS segment"))?;
            let text = match block {
                None => current.render(),
                Some(b) => {
                    b.check_reachable(&current)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    match session
                        .wait_for(hold, |m| {
                            let pl = m.playlist();
                            b.satisfied_by(&pl).then(|| pl.render())
                        })
                        .await
                    {
                        Ok(text) => text,
                        // Not there in time: answer with what there is (the client retries).
                        Err(WaitError::Timeout) => session
                            .wait_for(Duration::ZERO, |m| Some(m.playlist().render()))
                            .await
                            .map_err(|e| wait_error(e, "the playlist"))?,
                        Err(e) => return Err(wait_error(e, "the playlist")),
                    }
                }
            };
            Ok(media(text.into(), M3U8, "no-cache"))
        }
        Resource::Init => {
            let init = session
                .wait_for(first, |m| m.init.clone())
                .await
                .map_err(|e| wait_error(e, "the init segment"))?;
            Ok(media(init, MP4, "max-age=60"))
        }
        Resource::Segment(msn) => {
            let seg = session
                .wait_for(hold, |m| match m.segment(msn) {
                    Some(s) if s.complete => Some(Some(s.bytes())),
                    Some(_) => None,
                    None => gone_or_far(m.segments.front().map(|s| s.msn), m.newest_msn(), msn),
                })
                .await
                .map_err(|e| wait_error(e, "the segment"))?
                .ok_or_else(|| ApiError::NotFound(format!("segment {msn} is not available")))?;
            Ok(media(seg, MP4, "max-age=60"))
        }
        Resource::Part(msn, i) => {
            let part = session
                .wait_for(hold, |m| match m.segment(msn) {
                    Some(s) => match s.parts.get(i as usize) {
                        Some(p) => Some(Some(p.data.clone())),
                        None if s.complete => Some(None),
                        None => None,
                    },
                    None => gone_or_far(m.segments.front().map(|s| s.msn), m.newest_msn(), msn),
                })
                .await
                .map_err(|e| wait_error(e, "the part"))?
                .ok_or_else(|| ApiError::NotFound(format!("part {msn}.{i} is not available")))?;
            Ok(media(part, MP4, "max-age=60"))
        }
    }
}

/// For a segment not held: `Some(None)` when it is gone or too far ahead (404), `None` to wait.
fn gone_or_far(oldest: Option<u64>, newest: Option<u64>, msn: u64) -> Option<Option<Bytes>> {
    match (oldest, newest) {
        (Some(o), _) if msn < o => Some(None),
        (_, Some(n)) if msn > n + 1 => Some(None),
        _ => None,
    }
}
