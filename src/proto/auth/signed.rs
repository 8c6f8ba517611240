//! Signed, short-lived URL tokens for players that cannot send headers (hls.js, `<img>`, a still
//! URL) and the timed nonces of HTTP Digest, both HMAC-SHA256 under a key derived from the
//! configured secrets: changing the password or the token revokes every URL signed before.
//! A URL token is `<expires>.<mac>` and is valid for one panel's viewing endpoints until `expires`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::Secrets;
use super::header::{NonceState, constant_time_eq};

/// The longest validity a URL token may be signed for.
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long an HTTP Digest nonce is accepted before the client is told it is stale.
pub const NONCE_TTL_SECS: u64 = 300;
/// Bytes of MAC kept in a URL token (128 bits).
const URL_MAC_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the signed URL token is malformed")]
    Malformed,
    #[error("the signed URL has expired")]
    Expired,
    #[error(
        "the signed URL's signature does not match (tampered, another panel, or the credentials changed)"
    )]
    BadSignature,
}

/// The key everything here is signed with.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Signer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The key for `secrets`: the same secrets give the same key across restarts.
    pub fn from_secrets(secrets: &Secrets) -> Self {
        let (user, password) = secrets
            .user
            .as_ref()
            .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
        let token = secrets.api_token.as_deref().unwrap_or("");
        let key = hmac(
            b"c300x-bridge signing key v1",
            &[user.as_bytes(), password.as_bytes(), token.as_bytes()],
        );
        Self { key }
    }

    fn url_mac(&self, panel: &str, expires: u64) -> [u8; 32] {
        hmac(
            &self.key,
            &[b"url v1", panel.as_bytes(), &expires.to_be_bytes()],
        )
    }

    /// A token for `panel`'s viewing endpoints, valid until `expires` (Unix seconds).
    pub fn url_token(&self, panel: &str, expires: u64) -> String {
        let mac = self.url_mac(panel, expires);
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(&mac[..URL_MAC_LEN]))
    }

    /// Checks a URL token for `panel` at `now` (Unix seconds).
    pub fn check_url_token(&self, token: &str, panel: &str, now: u64) -> Result<(), TokenError> {
        let (expires, mac) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if expires.is_empty() || expires.len() > 20 || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(TokenError::Malformed);
        }
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let given = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        let expected = self.url_mac(panel, expires);
        if !constant_time_eq(&given, &expected[..URL_MAC_LEN]) {
            return Err(TokenError::BadSignature);
        }
        if now >= expires {
            return Err(TokenError::Expired);
        }
        if expires - now > MAX_TTL_SECS {
            // Signed by us, but for longer than we ever sign: treat as forged.
            return Err(TokenError::BadSignature);
        }
        Ok(())
    }

    /// An HTTP Digest nonce issued at `now` (`salt` makes each one unique).
    pub fn nonce(&self, now: u64, salt: u64) -> String {
        let mac = hmac(
            &self.key,
            &[b"nonce v1", &now.to_be_bytes(), &salt.to_be_bytes()],
        );
        format!("{now:x}-{salt:x}-{}", hex::encode(&mac[..12]))
    }

    /// Whether `nonce` is one of ours and younger than [`NONCE_TTL_SECS`].
    pub fn check_nonce(&self, nonce: &str, now: u64) -> NonceState {
        let mut parts = nonce.splitn(3, '-');
        let (Some(t), Some(s), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return NonceState::Unknown;
        };
        let (Ok(t), Ok(s)) = (u64::from_str_radix(t, 16), u64::from_str_radix(s, 16)) else {
            return NonceState::Unknown;
        };
        if !constant_time_eq(self.nonce(t, s).as_bytes(), nonce.as_bytes()) {
            return NonceState::Unknown;
        }
        if t > now || now - t > NONCE_TTL_SECS {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_secrets(&Secrets {
            user: Some(("admin".into(), "pw".into())),
            api_token: Some("t".into()),
        })
    }

    #[test]
    fn url_tokens_are_bound_to_panel_time_and_secrets() {
        let s = signer();
        let t = s.url_token("doorbell", 1_000_600);
        assert_eq!(s.check_url_token(&t, "doorbell", 1_000_000), Ok(()));
        assert_eq!(
            s.check_url_token(&t, "doorbell", 1_000_600),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.check_url_token(&t, "garden", 1_000_000),
            Err(TokenError::BadSignature)
        );
        // A later expiry with the old MAC, a flipped MAC character.
        let (_, mac) = t.split_once('.').expect("dot");
        assert_eq!(
            s.check_url_token(&format!("1000700.{mac}"), "doorbell", 1_000_000),
            Err(TokenError::BadSignature)
        );
        let mut chars: Vec<char> = t.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert!(s.check_url_token(&flipped, "doorbell", 1_000_000).is_err());
        // Other secrets: another key.
        let other = Signer::from_secrets(&Secrets {
            user: Some(("admin".into(), "pw2".into())),
            api_token: Some("t".into()),
        });
        assert_eq!(
            other.check_url_token(&t, "doorbell", 1_000_000),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            ".",
            "x.y",
            "12",
            "12.",
            "-1.AAAA",
            "1.!!",
            "99999999999999999999999.AA",
        ] {
            assert!(s.check_url_token(bad, "doorbell", 0).is_err(), "{bad:?}");
        }
        let far = s.url_token("doorbell", 10 + MAX_TTL_SECS + 1);
        assert_eq!(
            s.check_url_token(&far, "doorbell", 10),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn nonces_age_and_cannot_be_made_up() {
        let s = signer();
        let n = s.nonce(5000, 42);
        assert_eq!(s.check_nonce(&n, 5000), NonceState::Fresh);
        assert_eq!(s.check_nonce(&n, 5000 + NONCE_TTL_SECS), NonceState::Fresh);
        assert_eq!(s.check_nonce(&n, 5001 + NONCE_TTL_SECS), NonceState::Stale);
        assert_eq!(s.check_nonce(&n, 4999), NonceState::Stale);
        let forged = format!("{:x}-{:x}-{}", 9000, 42, "0".repeat(24));
        assert_eq!(s.check_nonce(&forged, 9000), NonceState::Unknown);
        for bad in ["", "a-b", "zz-1-00", "1-2-3-4"] {
            assert_eq!(s.check_nonce(bad, 0), NonceState::Unknown, "{bad:?}");
        }
    }
}
