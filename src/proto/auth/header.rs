//! The `Authorization` header of RTSP and HTTP requests: Basic (RFC 7617), Digest MD5 (RFC 2617
//! §3.2, RFC 7616) and Bearer (RFC 6750) checked against the configured [`Secrets`], and the
//! `WWW-Authenticate` challenges of a 401. Nonces are the caller's (one per RTSP connection,
//! signed and timed for HTTP); `nonce` says whether one is ours and still fresh.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};

use super::Secrets;

pub const REALM: &str = "c300x-bridge";

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Basic,
    Digest,
    Bearer,
}

/// Why a header did not prove anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// A header with wrong credentials, an unknown scheme or bad syntax.
    Wrong,
    /// A correct Digest answer to a nonce that has expired: the client retries with a new one.
    StaleNonce,
}

/// What the caller knows about a Digest nonce the client echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Fresh,
    Stale,
    Unknown,
}

/// The `WWW-Authenticate` values of a 401: Digest first (clients pick the strongest), then Basic.
pub fn challenges(nonce: &str, stale: bool) -> [String; 2] {
    let stale = if stale { ", stale=true" } else { "" };
    [
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5{stale}"),
        format!("Basic realm=\"{REALM}\""),
    ]
}

/// Whether `authorization` proves `secrets` for a request with `method`. Basic and Digest pass
/// with the configured user and password, or with any user name and the API token as password;
/// Bearer passes with the API token.
pub fn check(
    authorization: Option<&str>,
    method: &str,
    secrets: &Secrets,
    nonce: impl Fn(&str) -> NonceState,
) -> Result<Proof, Failure> {
    let Some(value) = authorization.map(str::trim) else {
        return Err(Failure::Missing);
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("Basic") {
        check_basic(rest, secrets)
            .then_some(Proof::Basic)
            .ok_or(Failure::Wrong)
    } else if scheme.eq_ignore_ascii_case("Digest") {
        check_digest(rest, method, secrets, nonce).map(|()| Proof::Digest)
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        let ok = secrets
            .api_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(rest.as_bytes(), t.as_bytes()));
        ok.then_some(Proof::Bearer).ok_or(Failure::Wrong)
    } else {
        Err(Failure::Wrong)
    }
}

/// The passwords `user` may use: the configured one if the name matches, and the API token.
fn passwords<'a>(secrets: &'a Secrets, user: &str) -> impl Iterator<Item = &'a str> {
    let own = secrets
        .user
        .as_ref()
        .filter(|(u, _)| u == user)
        .map(|(_, p)| p.as_str());
    own.into_iter().chain(secrets.api_token.as_deref())
}

fn check_basic(token: &str, secrets: &Secrets) -> bool {
    let Ok(raw) = STANDARD.decode(token) else {
        return false;
    };
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return false;
    };
    let Ok(user) = std::str::from_utf8(&raw[..colon]) else {
        return false;
    };
    let given = &raw[colon + 1..];
    // Every candidate is compared, so the time does not tell which one matched.
    passwords(secrets, user).fold(false, |ok, p| constant_time_eq(given, p.as_bytes()) | ok)
}

fn check_digest(
    params: &str,
    method: &str,
    secrets: &Secrets,
    nonce: impl Fn(&str) -> NonceState,
) -> Result<(), Failure> {
    let p = digest_params(params);
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let (Some(user), Some(uri), Some(response), Some(their_nonce)) =
        (get("username"), get("uri"), get("response"), get("nonce"))
    else {
        return Err(Failure::Wrong);
    };
    if get("realm").is_some_and(|r| r != REALM)
        || get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
    {
        return Err(Failure::Wrong);
    }
    let state = nonce(their_nonce);
    if state == NonceState::Unknown {
        return Err(Failure::Wrong);
    }
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let tail = match get("qop") {
        None => format!("{their_nonce}:{ha2}"),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return Err(Failure::Wrong);
            };
            format!("{their_nonce}:{nc}:{cnonce}:auth:{ha2}")
        }
        Some(_) => return Err(Failure::Wrong),
    };
    let given = response.to_ascii_lowercase();
    let matched = passwords(secrets, user).fold(false, |ok, password| {
        let ha1 = md5_hex(&format!("{user}:{REALM}:{password}"));
        let expected = md5_hex(&format!("{ha1}:{tail}"));
        constant_time_eq(given.as_bytes(), expected.as_bytes()) | ok
    });
    match (matched, state) {
        (false, _) => Err(Failure::Wrong),
        (true, NonceState::Stale) => Err(Failure::StaleNonce),
        (true, _) => Ok(()),
    }
}

pub(crate) fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `k=v, k="v, with comma"` → pairs; unquoted values end at a comma.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
        if chars.peek().is_none() {
            return out;
        }
    }
}

/// Compares without an early exit, so a secret cannot be guessed byte by byte from timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            user: Some(("admin".into(), "s3cret".into())),
            api_token: Some("tok3n".into()),
        }
    }

    fn ours(n: &str) -> NonceState {
        if n == "n" || n == "abc123" {
            NonceState::Fresh
        } else if n == "old" {
            NonceState::Stale
        } else {
            NonceState::Unknown
        }
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn basic_bearer_and_the_token_as_password() {
        let s = secrets();
        let c = |h: Option<&str>| check(h, "DESCRIBE", &s, ours);
        assert_eq!(c(Some(&basic("admin:s3cret"))), Ok(Proof::Basic));
        assert_eq!(c(Some(&basic("anyone:tok3n"))), Ok(Proof::Basic));
        assert_eq!(c(Some(&basic("admin:nope"))), Err(Failure::Wrong));
        assert_eq!(c(Some(&basic("other:s3cret"))), Err(Failure::Wrong));
        assert_eq!(c(Some("Basic !!!")), Err(Failure::Wrong));
        assert_eq!(c(Some(&basic("no colon"))), Err(Failure::Wrong));
        assert_eq!(c(None), Err(Failure::Missing));
        assert_eq!(c(Some("Bearer tok3n")), Ok(Proof::Bearer));
        assert_eq!(c(Some("bearer  tok3n ")), Ok(Proof::Bearer));
        assert_eq!(c(Some("Bearer tok3")), Err(Failure::Wrong));
        assert_eq!(c(Some("Negotiate x")), Err(Failure::Wrong));
        let no_token = Secrets {
            api_token: None,
            ..secrets()
        };
        assert_eq!(
            check(Some("Bearer tok3n"), "GET", &no_token, ours),
            Err(Failure::Wrong)
        );
        assert_eq!(
            check(Some(&basic("x:")), "GET", &no_token, ours),
            Err(Failure::Wrong)
        );
    }

    fn digest(user: &str, pass: &str, method: &str, nonce: &str, qop: bool) -> String {
        let uri = "rtsp://127.0.0.1:8554/doorbell";
        let ha1 = md5_hex(&format!("{user}:c300x-bridge:{pass}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        if qop {
            let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}"));
            format!(
                "Digest username=\"{user}\",realm=\"c300x-bridge\",nonce=\"{nonce}\",uri=\"{uri}\",qop=auth,nc=00000001,cnonce=\"xyz\",response=\"{resp}\",algorithm=MD5"
            )
        } else {
            let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Digest username=\"{user}\", realm=\"c300x-bridge\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\""
            )
        }
    }

    #[test]
    fn digest_without_and_with_qop_and_stale_nonces() {
        let s = secrets();
        let c = |h: &str, m: &str| check(Some(h), m, &s, ours);
        let h = digest("admin", "s3cret", "DESCRIBE", "abc123", false);
        assert_eq!(c(&h, "DESCRIBE"), Ok(Proof::Digest));
        assert_eq!(c(&h, "SETUP"), Err(Failure::Wrong), "method is hashed");
        let other = digest("admin", "s3cret", "DESCRIBE", "zzz", false);
        assert_eq!(c(&other, "DESCRIBE"), Err(Failure::Wrong), "our nonce only");
        let h = digest("admin", "s3cret", "DESCRIBE", "abc123", true);
        assert_eq!(c(&h, "DESCRIBE"), Ok(Proof::Digest));
        let h = digest("nvr", "tok3n", "PLAY", "n", true);
        assert_eq!(c(&h, "PLAY"), Ok(Proof::Digest), "the token as password");
        let stale = digest("admin", "s3cret", "GET", "old", false);
        assert_eq!(c(&stale, "GET"), Err(Failure::StaleNonce));
        let stale_wrong = digest("admin", "bad", "GET", "old", false);
        assert_eq!(c(&stale_wrong, "GET"), Err(Failure::Wrong));
        assert_eq!(c("Digest", "DESCRIBE"), Err(Failure::Wrong));
        assert_eq!(c("Digest ,,,=\"\\", "DESCRIBE"), Err(Failure::Wrong));
    }

    #[test]
    fn challenges_name_both_schemes() {
        let [d, b] = challenges("n1", false);
        assert_eq!(
            d,
            "Digest realm=\"c300x-bridge\", nonce=\"n1\", algorithm=MD5"
        );
        assert_eq!(b, "Basic realm=\"c300x-bridge\"");
        assert!(challenges("n1", true)[0].ends_with(", stale=true"));
    }
}
