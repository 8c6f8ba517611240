//! The status page at `/` and its assets (plain HTML/CSS/JS and the vendored hls.js, embedded in
//! the binary: no CDN, no build step). Relative URLs throughout, plus a `<base>` from the
//! `X-Ingress-Path` header, so the page works under Home Assistant ingress (home-assistant.md §4).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};

const INDEX: &str = include_str!("../../../assets/index.html");
const APP_JS: &str = include_str!("../../../assets/app.js");
const STYLE: &str = include_str!("../../../assets/style.css");
const TALK_JS: &str = include_str!("../../../assets/talk.js");
const TALK_WORKLET: &str = include_str!("../../../assets/talk-worklet.js");
const HLS_JS: &[u8] = include_bytes!("../../../assets/hls.min.js");
const HLS_LICENSE: &str = include_str!("../../../assets/hls.js.LICENSE");

/// The ingress prefix if it is a plain path (anything else is ignored rather than escaped).
fn ingress_base(headers: &HeaderMap) -> Option<String> {
    let path = headers.get("x-ingress-path")?.to_str().ok()?.trim();
    let plain = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    plain.then(|| format!("{}/", path.trim_end_matches('/')))
}

pub async fn index(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let base = ingress_base(&headers)
        .map(|b| format!("<base href=\"{b}\">"))
        .unwrap_or_default();
    let demo = if shared.state.demo.is_some() {
        "true"
    } else {
        "false"
    };
    let html = INDEX
        .replace("<!--BASE-->", &base)
        .replace("data-demo=\"false\"", &format!("data-demo=\"{demo}\""));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "app.js" => (APP_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "style.css" => (STYLE.as_bytes(), "text/css; charset=utf-8"),
        "talk.js" => (TALK_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "talk-worklet.js" => (TALK_WORKLET.as_bytes(), "text/javascript; charset=utf-8"),
        "hls.min.js" => (HLS_JS, "text/javascript; charset=utf-8"),
        "hls.js.LICENSE" => (HLS_LICENSE.as_bytes(), "text/plain; charset=utf-8"),
        _ => {
            return Err(ApiError::NotFound(format!(
                "no asset `{}`",
                file.escape_debug()
            )));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_base_is_a_plain_path_or_nothing() {
        let mut h = HeaderMap::new();
        assert_eq!(ingress_base(&h), None);
        h.insert(
            "x-ingress-path",
            "/api/hassio_ingress/abc-DEF_1".parse().expect("value"),
        );
        assert_eq!(
            ingress_base(&h).as_deref(),
            Some("/api/hassio_ingress/abc-DEF_1/")
        );
        h.insert("x-ingress-path", "/x\"><script>".parse().expect("value"));
        assert_eq!(ingress_base(&h), None);
    }
}
