//! The one parser of URL query strings (`application/x-www-form-urlencoded`, WHATWG URL §5.1)
//! used both by the access policy and by the handlers, so the two can never read a request
//! differently (`?live=1&live=0`, `?li%76e=1`): a repeated key is an error for both.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("query parameter `{0}` is given more than once")]
    Repeated(String),
    #[error("query parameter `{key}` must be {allowed}, not `{value}`")]
    Invalid {
        key: String,
        value: String,
        allowed: &'static str,
    },
}

/// Longest query we look at; the rest is ignored (no handler needs more).
const MAX_QUERY: usize = 4096;

/// `%XX` and `+` decoded; invalid escapes are kept as they are; invalid UTF-8 is replaced.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Every `key=value` pair, decoded; `key` alone has the value `""`.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    let end = query.len().min(MAX_QUERY);
    let query = query.get(..end).unwrap_or("");
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

/// The value of `key` if present once; an error if repeated.
pub fn single(query: Option<&str>, key: &str) -> Result<Option<String>, QueryError> {
    let mut found = None;
    for (k, v) in pairs(query.unwrap_or("")) {
        if k == key {
            if found.is_some() {
                return Err(QueryError::Repeated(key.to_owned()));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// A yes/no parameter: absent or `0|false|no|off` is no, `1|true|yes|on` or bare (`?live`) is yes.
pub fn flag(query: Option<&str>, key: &str) -> Result<bool, QueryError> {
    match single(query, key)?.as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("" | "1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(QueryError::Invalid {
            key: key.to_owned(),
            value: other.chars().take(16).collect(),
            allowed: "1 or 0",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_a_browser_encodes() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("li%76e"), "live");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{FFFD}");
        assert!(matches!(decode("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn flags_and_repeats() {
        assert_eq!(flag(None, "live"), Ok(false));
        assert_eq!(flag(Some("live=1"), "live"), Ok(true));
        assert_eq!(flag(Some("live"), "live"), Ok(true));
        assert_eq!(flag(Some("x=1&li%76e=yes"), "live"), Ok(true));
        assert_eq!(flag(Some("live=0"), "live"), Ok(false));
        assert_eq!(
            flag(Some("live=1&live=0"), "live"),
            Err(QueryError::Repeated("live".into()))
        );
        assert!(matches!(
            flag(Some("live=maybe"), "live"),
            Err(QueryError::Invalid { .. })
        ));
        assert_eq!(single(Some("&&a=b&"), "a"), Ok(Some("b".into())));
        assert_eq!(single(Some("a=b=c"), "a"), Ok(Some("b=c".into())));
    }
}
