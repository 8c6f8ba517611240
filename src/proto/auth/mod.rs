//! The access model's pure half (DOCS "Access"): the configured [`Secrets`], `Authorization`
//! header checks shared by RTSP and HTTP (`header`), signed URL tokens and Digest nonces
//! (`signed`), the one query-string parser (`query`), the HTTP policy (`policy`) and the
//! wrong-password throttle (`throttle`).
//! Text and `now` in, a verdict out; which peer counts as ingress is `servers::access`'s.

pub mod header;
pub mod policy;
pub mod query;
pub mod signed;
pub mod throttle;

pub use header::{Failure, NonceState, Proof};
pub use policy::{Attempt, Grant, Policy, Refusal, Resource};
pub use signed::{Signer, TokenError};

/// The configured credentials. `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// `rtsp_user` / `rtsp_password`: Basic or Digest, on RTSP and on HTTP.
    pub user: Option<(String, String)>,
    /// `api_token`: `Authorization: Bearer` on HTTP, and the password of any user name.
    pub api_token: Option<String>,
}

impl Secrets {
    /// Whether any credentials are configured: then every protected path requires them.
    pub fn required(&self) -> bool {
        self.user.is_some() || self.api_token.is_some()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("api_token", &self.api_token.as_ref().map(|_| "********"))
            .finish()
    }
}
