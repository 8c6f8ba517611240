//! Parsers of the doorbell options (`ring_*`, `clip_dir`): counts, the reject status and the clip
//! folder. Kept apart from `validate` (which calls them) so that file stays small.

use serde_json::Value;

use super::scalars::{text, whole};
use super::validate::Allowed;

pub(super) fn reject_code(value: &Value) -> Result<u16, Allowed> {
    let allowed = || {
        format!(
            "must be one of {:?}: the SIP status a rejected ring gets",
            super::REJECT_CODES
        )
    };
    let n = whole(value).ok_or_else(allowed)?;
    super::REJECT_CODES
        .into_iter()
        .find(|c| i64::from(*c) == n)
        .ok_or_else(allowed)
}

/// A directory path (it need not exist yet: the bridge creates it when it first writes).
pub(super) fn directory(value: &Value) -> Result<std::path::PathBuf, Allowed> {
    let s = text(value)?;
    let s = s.trim();
    if s.is_empty() || s.contains('\0') {
        return Err("must be a directory path such as /media/c300x".to_owned());
    }
    Ok(std::path::PathBuf::from(s))
}
