//! `GET /api/<panel>/mjpeg`: `multipart/x-mixed-replace` JPEG parts from the shared feed
//! (streaming.md §7); `mjpeg_fps` caps the rate, `?fps=<n>` this client's. Each open connection is a viewer.
//! The body is written into an in-memory pipe; a closed connection breaks it and ends the writer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::codec::{BytesCodec, FramedRead};

use super::jpeg_feed::{FeedState, Picture};
use super::{ApiError, Shared};
use crate::media::hub::HubError;

pub const BOUNDARY: &str = "frame";

/// Waits for a picture newer than `after` (by index), the feed's failure, or the timeout.
pub(super) async fn next_picture(
    rx: &mut watch::Receiver<FeedState>,
    after: u64,
    timeout: Duration,
) -> Result<Arc<Picture>, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match &*rx.borrow_and_update() {
            FeedState::Picture(p) if p.index > after => return Ok(p.clone()),
            FeedState::Failed(e) => return Err(ApiError::StreamEnded(e.clone())),
            _ => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ApiError::StreamEnded("the JPEG feed stopped".into())),
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "no picture within {} s",
                    timeout.as_secs()
                )));
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct MjpegQuery {
    fps: Option<f32>,
}

fn part(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + 96);
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(jpeg);
    out.extend_from_slice(b"\r\n");
    out
}

pub async fn mjpeg(
    State(shared): State<Arc<Shared>>,
    Path(panel): Path<String>,
    Query(q): Query<MjpegQuery>,
) -> Result<Response, ApiError> {
    let p = shared.panel(&panel)?;
    let min_gap = match q.fps {
        Some(f) if !(f > 0.0 && f <= 60.0) => {
            return Err(ApiError::BadRequest(format!(
                "fps must be in (0, 60], not {f}"
            )));
        }
        Some(f) => Duration::from_secs_f32(1.0 / f),
        // The configured cap (mjpeg_fps), or the camera's own rate.
        None => match shared.state.config.mjpeg_fps {
            0 => Duration::ZERO,
            f => Duration::from_secs_f32(1.0 / f32::from(f)),
        },
    };
    if !p.hub.status().streaming_allowed {
        return Err(HubError::StreamingDisabled { panel }.into());
    }
    let mut rx = p.jpeg.subscribe();
    let wait = shared.state.config.start_timeout + Duration::from_secs(5);
    let first = next_picture(&mut rx, 0, wait).await?;
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    shared.tasks.spawn(async move {
        let mut last = first;
        let mut sent_at = Instant::now();
        if writer.write_all(&part(&last.jpeg)).await.is_err() {
            return;
        }
        loop {
            let Ok(next) = next_picture(&mut rx, last.index, Duration::from_secs(30)).await else {
                break;
            };
            let since = sent_at.elapsed();
            if since < min_gap {
                tokio::time::sleep(min_gap - since).await;
                // Send whatever is newest after the pause.
                if let FeedState::Picture(p) = &*rx.borrow_and_update() {
                    last = p.clone();
                } else {
                    last = next;
                }
            } else {
                last = next;
            }
            sent_at = Instant::now();
            if writer.write_all(&part(&last.jpeg)).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let body = Body::from_stream(FramedRead::new(reader, BytesCodec::new()));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}
