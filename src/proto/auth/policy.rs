//! The access model for HTTP (DOCS "Access"): which requests need credentials and which proofs
//! count. With no secrets configured everything is open; otherwise every request needs the
//! user/password (Basic or Digest), the API token (Bearer, or as a password), the Home Assistant
//! ingress proxy, or — for one panel's viewing endpoints only — a signed URL token. Static assets
//! are public, and the cached snapshot (no call) is public only with `public_snapshot`.

use super::Secrets;
use super::header::{self, Failure, Proof};
use super::query;
use super::signed::Signer;

/// What a request asks for, as far as access is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `/assets/…`: the page's static files.
    Asset,
    /// `GET /api/<panel>/snapshot.jpg` without `live`: the last picture, never a call.
    CachedSnapshot { panel: String },
    /// Live video, audio and live snapshots of a panel (`hls/…`, `mjpeg`, `snapshot.jpg?live=1`):
    /// these may start a call.
    View { panel: String },
    /// `GET /api/<panel>/signed-urls`: mints URL tokens, so a URL token cannot open it.
    Sign { panel: String },
    /// Everything else: the page, status, metrics and every command (unlock, light, answer,
    /// push-to-talk…).
    Protected,
}

/// Percent-decoding of a path segment (`+` stays `+` in paths).
fn path_segment(s: &str) -> String {
    query::decode(&s.replace('+', "%2B")).into_owned()
}

/// Classifies a request by method, path and query (the same parser the handlers use).
pub fn classify(method: &str, path: &str, query_string: Option<&str>) -> Resource {
    let read = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    if !read {
        return Resource::Protected;
    }
    if path.starts_with("/assets/") {
        return Resource::Asset;
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return Resource::Protected;
    };
    let Some((panel, what)) = rest.split_once('/') else {
        return Resource::Protected;
    };
    if panel.is_empty() {
        return Resource::Protected;
    }
    let panel = path_segment(panel);
    match what {
        // An unreadable `live` is treated as live: the handler refuses it with 400 anyway.
        "snapshot.jpg" => match query::flag(query_string, "live") {
            Ok(false) => Resource::CachedSnapshot { panel },
            _ => Resource::View { panel },
        },
        "mjpeg" => Resource::View { panel },
        "signed-urls" => Resource::Sign { panel },
        w if w.starts_with("hls/") => Resource::View { panel },
        _ => Resource::Protected,
    }
}

/// One request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// The token of a `/signed/<token>/…` URL.
    pub url_token: Option<&'a str>,
    /// The request came through Home Assistant's ingress proxy (already authenticated by HA).
    pub ingress: bool,
    /// Unix seconds.
    pub now: u64,
}

/// Why a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No credentials are configured.
    Open,
    /// A public resource (assets; the cached snapshot with `public_snapshot`).
    Public,
    Ingress,
    Header(Proof),
    SignedUrl,
}

impl Grant {
    /// Whether this grant may start a call (everything but a public resource).
    pub fn may_start_call(self) -> bool {
        self != Grant::Public
    }
}

/// A 401: `stale` asks a Digest client to retry with the new nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub stale: bool,
    pub reason: &'static str,
}

/// The configured secrets and options, and the key derived from them.
#[derive(Debug, Clone)]
pub struct Policy {
    pub secrets: Secrets,
    pub signer: Signer,
    pub public_snapshot: bool,
}

impl Policy {
    pub fn new(secrets: Secrets, public_snapshot: bool) -> Self {
        let signer = Signer::from_secrets(&secrets);
        Self {
            secrets,
            signer,
            public_snapshot,
        }
    }

    /// Whether any credentials are configured (if not, everything is open).
    pub fn required(&self) -> bool {
        self.secrets.required()
    }

    pub fn decide(&self, a: &Attempt<'_>) -> Result<Grant, Refusal> {
        let resource = classify(a.method, a.path, a.query);
        if resource == Resource::Asset {
            return Ok(Grant::Public);
        }
        if !self.required() {
            return Ok(Grant::Open);
        }
        if a.ingress {
            return Ok(Grant::Ingress);
        }
        let nonce = |n: &str| self.signer.check_nonce(n, a.now);
        let failure = match header::check(a.authorization, a.method, &self.secrets, nonce) {
            Ok(proof) => return Ok(Grant::Header(proof)),
            Err(f) => f,
        };
        if let (Some(token), Resource::View { panel } | Resource::CachedSnapshot { panel }) =
            (a.url_token, &resource)
            && self.signer.check_url_token(token, panel, a.now).is_ok()
        {
            return Ok(Grant::SignedUrl);
        }
        if matches!(resource, Resource::CachedSnapshot { .. }) && self.public_snapshot {
            return Ok(Grant::Public);
        }
        Err(Refusal {
            stale: failure == Failure::StaleNonce,
            reason: match (failure, a.url_token.is_some()) {
                (Failure::Missing, false) => "credentials required",
                (Failure::Missing, true) => "the signed URL is invalid, expired or not for this",
                (Failure::Wrong, _) => "wrong credentials",
                (Failure::StaleNonce, _) => "stale Digest nonce",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn policy(public_snapshot: bool) -> Policy {
        Policy::new(
            Secrets {
                user: Some(("admin".into(), "pw".into())),
                api_token: Some("tok".into()),
            },
            public_snapshot,
        )
    }

    fn attempt<'a>(method: &'a str, path: &'a str, query: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            method,
            path,
            query,
            authorization: None,
            url_token: None,
            ingress: false,
            now: 1000,
        }
    }

    #[test]
    fn classification_table() {
        use Resource::*;
        let p = || "doorbell".to_owned();
        for (method, path, query, want) in [
            ("GET", "/assets/app.js", None, Asset),
            ("HEAD", "/assets/x", None, Asset),
            ("POST", "/assets/x", None, Protected),
            ("GET", "/", None, Protected),
            ("GET", "/metrics", None, Protected),
            ("GET", "/api/status", None, Protected),
            // Push-to-talk is as privileged as unlocking: never a signed URL, never public.
            ("GET", "/api/doorbell/talk", None, Protected),
            ("GET", "/api/doorbell/talk", Some("rate=48000"), Protected),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                None,
                CachedSnapshot { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                Some("live=0"),
                CachedSnapshot { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                Some("live=1"),
                View { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                Some("li%76e"),
                View { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                Some("live=0&live=1"),
                View { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/snapshot.jpg",
                Some("live=x"),
                View { panel: p() },
            ),
            ("GET", "/api/door%62ell/mjpeg", None, View { panel: p() }),
            (
                "GET",
                "/api/doorbell/hls/index.m3u8",
                Some("_HLS_msn=3"),
                View { panel: p() },
            ),
            (
                "GET",
                "/api/doorbell/signed-urls",
                None,
                Sign { panel: p() },
            ),
            ("POST", "/api/doorbell/unlock", None, Protected),
            ("POST", "/api/doorbell/mjpeg", None, Protected),
            ("GET", "/api//mjpeg", None, Protected),
            ("GET", "/api/doorbell", None, Protected),
        ] {
            assert_eq!(
                classify(method, path, query),
                want,
                "{method} {path} {query:?}"
            );
        }
    }

    #[test]
    fn decisions() {
        let pol = policy(false);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:pw")
        );
        let token = pol.signer.url_token("doorbell", 1600);
        let live = attempt("GET", "/api/doorbell/mjpeg", None);
        assert_eq!(
            pol.decide(&live).map_err(|r| r.reason),
            Err("credentials required")
        );
        assert_eq!(
            pol.decide(&Attempt {
                authorization: Some(&basic),
                ..live
            }),
            Ok(Grant::Header(Proof::Basic))
        );
        assert_eq!(
            pol.decide(&Attempt {
                authorization: Some("Bearer tok"),
                ..live
            }),
            Ok(Grant::Header(Proof::Bearer))
        );
        assert!(
            pol.decide(&Attempt {
                authorization: Some("Bearer no"),
                ..live
            })
            .is_err()
        );
        assert_eq!(
            pol.decide(&Attempt {
                ingress: true,
                ..live
            }),
            Ok(Grant::Ingress)
        );
        assert_eq!(
            pol.decide(&Attempt {
                url_token: Some(&token),
                ..live
            }),
            Ok(Grant::SignedUrl)
        );
        let expired = Attempt {
            url_token: Some(&token),
            now: 1600,
            ..live
        };
        assert!(pol.decide(&expired).is_err());
        let other_panel = attempt("GET", "/api/garden/mjpeg", None);
        assert!(
            pol.decide(&Attempt {
                url_token: Some(&token),
                ..other_panel
            })
            .is_err()
        );
        // A URL token opens neither commands nor the minting endpoint.
        for (m, p) in [
            ("POST", "/api/doorbell/unlock"),
            ("GET", "/api/doorbell/signed-urls"),
            ("GET", "/api/status"),
            ("GET", "/api/doorbell/talk"),
        ] {
            let a = Attempt {
                url_token: Some(&token),
                ..attempt(m, p, None)
            };
            assert!(pol.decide(&a).is_err(), "{m} {p}");
        }
        // The cached snapshot: private unless the option says so; live never public.
        let cached = attempt("GET", "/api/doorbell/snapshot.jpg", None);
        assert!(pol.decide(&cached).is_err());
        assert_eq!(policy(true).decide(&cached), Ok(Grant::Public));
        let live_snap = attempt("GET", "/api/doorbell/snapshot.jpg", Some("live=1"));
        assert!(policy(true).decide(&live_snap).is_err());
        assert_eq!(
            pol.decide(&attempt("GET", "/assets/app.js", None)),
            Ok(Grant::Public)
        );
        let open = Policy::new(Secrets::default(), false);
        assert_eq!(
            open.decide(&attempt("POST", "/api/doorbell/unlock", None)),
            Ok(Grant::Open)
        );
        assert!(!Grant::Public.may_start_call() && Grant::SignedUrl.may_start_call());
    }
}
