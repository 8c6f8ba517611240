//! Basic (RFC 7617) and Digest MD5 (RFC 2617 §3.2, RFC 7616) checks of an `Authorization`
//! header against the one configured user, and the two `WWW-Authenticate` challenges of a 401.
//! Nonces come from the caller (one per connection); stale-nonce handling is not needed there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};

pub const REALM: &str = "c300x-bridge";

/// The configured user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// The `WWW-Authenticate` values of a 401: Digest first (clients pick the strongest), then Basic.
pub fn challenges(nonce: &str) -> [String; 2] {
    [
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5"),
        format!("Basic realm=\"{REALM}\""),
    ]
}

/// Whether `authorization` proves `creds` for a request with `method`, using our `nonce`.
pub fn check(authorization: Option<&str>, method: &str, creds: &Credentials, nonce: &str) -> bool {
    let Some(value) = authorization.map(str::trim) else {
        return false;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("Basic") {
        check_basic(rest.trim(), creds)
    } else if scheme.eq_ignore_ascii_case("Digest") {
        check_digest(rest, method, creds, nonce)
    } else {
        false
    }
}

fn check_basic(token: &str, creds: &Credentials) -> bool {
    let Ok(raw) = STANDARD.decode(token) else {
        return false;
    };
    let expected = format!("{}:{}", creds.user, creds.password);
    constant_time_eq(&raw, expected.as_bytes())
}

fn check_digest(params: &str, method: &str, creds: &Credentials, nonce: &str) -> bool {
    let p = digest_params(params);
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let (Some(user), Some(uri), Some(response), Some(their_nonce)) =
        (get("username"), get("uri"), get("response"), get("nonce"))
    else {
        return false;
    };
    if user != creds.user || their_nonce != nonce || get("realm").is_some_and(|r| r != REALM) {
        return false;
    }
    if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
        return false;
    }
    let ha1 = md5_hex(&format!("{}:{REALM}:{}", creds.user, creds.password));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match get("qop") {
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return false;
            };
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        Some(_) => return false,
    };
    constant_time_eq(
        response.to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    )
}

fn md5_hex(s: &str) -> String {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: "admin".into(),
            password: "s3cret".into(),
        }
    }

    #[test]
    fn basic() {
        let good = format!("Basic {}", STANDARD.encode("admin:s3cret"));
        assert!(check(Some(&good), "DESCRIBE", &creds(), "n"));
        let bad = format!("Basic {}", STANDARD.encode("admin:nope"));
        assert!(!check(Some(&bad), "DESCRIBE", &creds(), "n"));
        assert!(!check(Some("Basic !!!"), "DESCRIBE", &creds(), "n"));
        assert!(!check(None, "DESCRIBE", &creds(), "n"));
        assert!(!check(Some("Bearer x"), "DESCRIBE", &creds(), "n"));
    }

    #[test]
    fn digest_rfc2617_style_without_and_with_qop() {
        let nonce = "abc123";
        let uri = "rtsp://127.0.0.1:8554/doorbell";
        let ha1 = md5_hex("admin:c300x-bridge:s3cret");
        let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
        let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        let h = format!(
            "Digest username=\"admin\", realm=\"c300x-bridge\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\""
        );
        assert!(check(Some(&h), "DESCRIBE", &creds(), nonce));
        assert!(
            !check(Some(&h), "SETUP", &creds(), nonce),
            "method is hashed"
        );
        assert!(
            !check(Some(&h), "DESCRIBE", &creds(), "other"),
            "our nonce only"
        );
        let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}"));
        let h = format!(
            "Digest username=\"admin\",realm=\"c300x-bridge\",nonce=\"{nonce}\",uri=\"{uri}\",qop=auth,nc=00000001,cnonce=\"xyz\",response=\"{resp}\",algorithm=MD5"
        );
        assert!(check(Some(&h), "DESCRIBE", &creds(), nonce));
        assert!(!check(Some("Digest"), "DESCRIBE", &creds(), nonce));
        assert!(!check(Some("Digest ,,,=\"\\"), "DESCRIBE", &creds(), nonce));
    }

    #[test]
    fn challenges_name_both_schemes() {
        let [d, b] = challenges("n1");
        assert!(d.starts_with("Digest realm=\"c300x-bridge\", nonce=\"n1\""));
        assert_eq!(b, "Basic realm=\"c300x-bridge\"");
    }
}
