//! HTTP Digest for the simulator's registrar/proxy (RFC 3261 §22, RFC 2617 MD5, qop=auth),
//! used when a test turns on "require digest auth" — like a flexisip without trusted-hosts.

use md5::{Digest as _, Md5};

use super::message::split_list;

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The challenge header value for `realm` and `nonce`.
pub fn challenge(realm: &str, nonce: &str) -> String {
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
}

/// Parses `Digest k=v, k="v"` into lower-case keys.
fn fields(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest")?.trim();
    Some(
        split_list(rest)
            .into_iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                ))
            })
            .collect(),
    )
}

/// Checks an Authorization/Proxy-Authorization value against the credentials.
/// `nonce_ok` says whether the nonce is one we issued.
pub fn verify(
    value: &str,
    method: &str,
    user: &str,
    password: &str,
    realm: &str,
    nonce_ok: impl Fn(&str) -> bool,
) -> bool {
    let Some(f) = fields(value) else {
        return false;
    };
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(username), Some(nonce), Some(uri), Some(response)) =
        (get("username"), get("nonce"), get("uri"), get("response"))
    else {
        return false;
    };
    if username != user || get("realm") != Some(realm) || !nonce_ok(nonce) {
        return false;
    }
    if let Some(alg) = get("algorithm")
        && !alg.eq_ignore_ascii_case("MD5")
    {
        return false;
    }
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match (get("qop"), get("nc"), get("cnonce")) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    };
    expected.eq_ignore_ascii_case(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5 (the HTTP example, same algorithm).
        let auth = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
            nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
            opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let ok = |n: &str| n == "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        assert!(verify(
            auth,
            "GET",
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            ok
        ));
        assert!(!verify(
            auth,
            "GET",
            "Mufasa",
            "wrong",
            "testrealm@host.com",
            ok
        ));
        assert!(!verify(
            auth,
            "GET",
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            |_| false
        ));
        assert!(!verify(
            "Basic xyz",
            "GET",
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            ok
        ));
    }
}
