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
    NaiveDate::parse_from_str(text, DATE_FORMAT).ok()
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
