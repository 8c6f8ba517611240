//! RFC 3339 UTC timestamps from `SystemTime` (no time crate needed for one format): the MQTT
//! payloads and HA's timestamp sensor use seconds with `+00:00`, the HTTP API milliseconds + `Z`.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `2024-03-01T12:00:05+00:00`
    Seconds,
    /// `2024-03-01T12:00:05.123Z`
    Millis,
}

/// Formats `t` in UTC; times before 1970 print as the epoch.
pub fn format(t: SystemTime, precision: Precision) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    match precision {
        Precision::Seconds => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}+00:00"),
        Precision::Millis => format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            d.subsec_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        assert_eq!(
            format(UNIX_EPOCH, Precision::Millis),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format(UNIX_EPOCH, Precision::Seconds),
            "1970-01-01T00:00:00+00:00"
        );
        let leap = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123);
        assert_eq!(format(leap, Precision::Millis), "2024-02-29T23:59:59.123Z");
        let y2k = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format(y2k, Precision::Seconds), "2000-02-29T00:00:00+00:00");
    }
}
