//! Wire shapes of values: dates as `YYYY-MM-DD`, date-times exactly as
//! `YYYY-MM-DDTHH:MM:SSZ` in UTC, and entity links `{type, id, name}`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{json, Value};

/// The only date-time form the client converts back into a `datetime`.
pub const DATE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
pub const DATE_FORMAT: &str = "%Y-%m-%d";

/// Formats seconds since the epoch as the site does.
pub fn format_date_time(epoch_seconds: i64) -> String {
    use chrono::{Datelike, Timelike};
    Utc.timestamp_opt(epoch_seconds, 0)
        .single()
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

/// Reads a date-time value. The client always sends the `Z` form; ISO 8601 with an
/// offset or fractions is also taken, as sites take it.
pub fn parse_date_time(text: &str) -> Option<i64> {
    // The form every reply carries, read without interpreting a format
    // string (chrono's did a fifth of decoding an import page's dates);
    // anything else, an impossible date included, takes the general path.
    if let Some(t) = parse_z_form(text.as_bytes()) {
        return Some(t);
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, DATE_TIME_FORMAT) {
        return Some(t.and_utc().timestamp());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Reads a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    if let Some(date) = plain_date(text.as_bytes()) {
        return Some(date);
    }
    NaiveDate::parse_from_str(text, DATE_FORMAT).ok()
}

/// The value of `n` ASCII digits, `None` if any is not a digit.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD` with every digit present, if it is a real date.
fn plain_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&b[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DDTHH:MM:SSZ` exactly, if it is a real moment (no leap second).
fn parse_z_form(b: &[u8]) -> Option<i64> {
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let time = plain_date(b)?.and_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    Some(time.and_utc().timestamp())
}

/// A link to a record, as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityLink {
    pub entity_type: String,
    pub id: i64,
}

impl EntityLink {
    /// Reads `{type, id, ...}`; extra keys (name, url, ...) are allowed, as the
    /// client sends them unstripped in `create` and `batch`.
    pub fn from_json(value: &Value) -> Option<EntityLink> {
        let obj = value.as_object()?;
        let entity_type = obj.get("type")?.as_str()?.to_string();
        let id = obj.get("id")?.as_i64()?;
        Some(EntityLink { entity_type, id })
    }

    /// `{type, id, name}`, the shape of every link in a result.
    pub fn to_json(&self, name: Value) -> Value {
        json!({"type": self.entity_type, "id": self.id, "name": name})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quick reading of the usual forms gives what chrono's reading of
    /// the format gives, for valid and impossible values alike.
    #[test]
    fn quick_reading_agrees_with_the_format() {
        let general = |t: &str| {
            NaiveDateTime::parse_from_str(t, DATE_TIME_FORMAT)
                .ok()
                .map(|t| t.and_utc().timestamp())
        };
        let mut checked = 0;
        for year in [
            "1969", "1970", "2000", "2024", "2100", "0000", "9999", "20x4",
        ] {
            for month in ["00", "01", "02", "09", "12", "13", "1x"] {
                for day in ["00", "01", "28", "29", "30", "31", "32"] {
                    let date = format!("{year}-{month}-{day}");
                    assert_eq!(
                        plain_date(date.as_bytes()),
                        NaiveDate::parse_from_str(&date, DATE_FORMAT).ok(),
                        "{date}"
                    );
                    assert_eq!(
                        parse_date(&date),
                        NaiveDate::parse_from_str(&date, DATE_FORMAT).ok()
                    );
                    for time in [
                        "00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00", "07:08:09",
                    ] {
                        let text = format!("{date}T{time}Z");
                        let quick = parse_z_form(text.as_bytes());
                        if quick.is_some() {
                            checked += 1;
                        }
                        assert!(quick.is_none() || quick == general(&text), "{text}");
                        assert_eq!(parse_date_time(&text), general(&text), "{text}");
                    }
                }
            }
        }
        assert!(checked > 300, "the quick path was taken {checked} times");
        for other in [
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05",
            "2024-1-02T03:04:05Z",
            "+2024-01-02T03:04:0Z",
        ] {
            assert_eq!(parse_z_form(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn date_times_use_exactly_the_z_form() {
        let t = parse_date_time("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(format_date_time(t), "2024-01-02T03:04:05Z");
        assert_eq!(parse_date_time("2024-01-02T04:04:05+01:00"), Some(t));
        assert_eq!(format_date_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_date_time("yesterday"), None);
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2024-2-1").is_none());
    }

    #[test]
    fn links_accept_extra_keys_and_render_with_name() {
        let link =
            EntityLink::from_json(&json!({"type": "Shot", "id": 3, "name": "x", "url": "u"}))
                .unwrap();
        assert_eq!(
            link,
            EntityLink {
                entity_type: "Shot".into(),
                id: 3
            }
        );
        assert_eq!(
            link.to_json(json!("sh010")),
            json!({"type": "Shot", "id": 3, "name": "sh010"})
        );
        assert!(EntityLink::from_json(&json!({"type": "Shot"})).is_none());
        assert!(EntityLink::from_json(&json!({"type": "Shot", "id": "3"})).is_none());
    }
}
