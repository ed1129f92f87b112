//! An entry of `PutEvents` as the event rules match and targets get: EventBridge's
//! envelope (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail`), and the per-entry refusals EventBridge answers with.

use serde::Deserialize;
use serde_json::{Value, json};

/// The most a `PutEvents` call may carry, all entries together (EventBridge's 1 MB).
pub const REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// Entries per call.
pub const ENTRIES_MAX: usize = 10;

/// One entry of `PutEvents`, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub time: Option<Value>,
    pub source: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail_type: Option<String>,
    pub detail: Option<String>,
    pub event_bus_name: Option<String>,
}

/// Why one entry was refused: its `ErrorCode` and `ErrorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub code: &'static str,
    pub message: String,
}

impl EntryError {
    fn invalid(parameter: &str, reason: &str) -> Self {
        Self {
            code: "InvalidArgument",
            message: format!("Parameter {parameter} is not valid. Reason: {reason}"),
        }
    }
}

impl Entry {
    /// What EventBridge counts of an entry against the size limit: the UTF-8 bytes of its
    /// source, detail type, detail and resources, and 14 for a time.
    pub fn size(&self) -> usize {
        self.source.as_deref().map_or(0, str::len)
            + self.detail_type.as_deref().map_or(0, str::len)
            + self.detail.as_deref().map_or(0, str::len)
            + self.resources.iter().map(String::len).sum::<usize>()
            + if self.time.is_some() { 14 } else { 0 }
    }

    /// The event of this entry (`id` new, `time` the entry's or now), or why it is refused.
    pub fn event(&self, account: &str, region: &str, now_ms: u64) -> Result<Value, EntryError> {
        let required = |v: &Option<String>, name: &str| match v.as_deref() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(EntryError::invalid(
                name,
                &format!("{name} is a required argument."),
            )),
        };
        let source = required(&self.source, "Source")?;
        let detail_type = required(&self.detail_type, "DetailType")?;
        let detail_text = required(&self.detail, "Detail")?;
        if source.len() > 256 || detail_type.len() > 256 {
            return Err(EntryError::invalid(
                if source.len() > 256 {
                    "Source"
                } else {
                    "DetailType"
                },
                "It is longer than 256 characters.",
            ));
        }
        if source.starts_with("aws.") {
            return Err(EntryError {
                code: "NotAuthorizedForSourceException",
                message: format!("Not authorized for the source {source}."),
            });
        }
        let detail: Value = match serde_json::from_str(&detail_text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(EntryError {
                    code: "MalformedDetail",
                    message: "Detail is malformed.".into(),
                });
            }
        };
        let time_ms = match &self.time {
            None => now_ms,
            Some(t) => {
                time_of(t).ok_or_else(|| EntryError::invalid("Time", "It is not a time."))?
            }
        };
        Ok(json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": source,
            "account": account,
            "time": iso_seconds(time_ms),
            "region": region,
            "resources": self.resources,
            "detail": detail,
        }))
    }
}

/// A `Time` as botocore sends it (epoch seconds, maybe fractional) or an ISO-8601 string.
pub fn time_of(value: &Value) -> Option<u64> {
    if let Some(seconds) = value.as_f64() {
        return (seconds >= 0.0).then_some((seconds * 1000.0) as u64);
    }
    let text = value.as_str()?;
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0).then_some((seconds * 1000.0) as u64);
    }
    crate::timefmt::parse_iso(text)
}

/// `2026-01-01T00:00:00Z`: EventBridge's event time, whole seconds.
pub fn iso_seconds(ms: u64) -> String {
    let full = crate::timefmt::iso_timestamp(ms);
    format!("{}Z", &full[..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail: &str) -> Entry {
        Entry {
            source: Some("shop.orders".into()),
            detail_type: Some("OrderPlaced".into()),
            detail: Some(detail.into()),
            resources: vec!["arn:aws:x".into()],
            ..Entry::default()
        }
    }

    #[test]
    fn an_entry_becomes_eventbridges_envelope() {
        let event = entry(r#"{"id": 7}"#)
            .event("000000000000", "us-east-1", 1_700_000_000_123)
            .unwrap();
        assert_eq!(event["version"], "0");
        assert_eq!(event["detail-type"], "OrderPlaced");
        assert_eq!(event["source"], "shop.orders");
        assert_eq!(event["account"], "000000000000");
        assert_eq!(event["region"], "us-east-1");
        assert_eq!(event["time"], "2023-11-14T22:13:20Z");
        assert_eq!(event["resources"], json!(["arn:aws:x"]));
        assert_eq!(event["detail"], json!({"id": 7}));
        assert_eq!(event["id"].as_str().unwrap().len(), 36);
        let timed = Entry {
            time: Some(json!(1_600_000_000.5)),
            ..entry("{}")
        };
        assert_eq!(
            timed.event("a", "r", 0).unwrap()["time"],
            "2020-09-13T12:26:40Z"
        );
    }

    #[test]
    fn bad_entries_are_refused_as_eventbridge_refuses_them() {
        let code = |e: Entry| e.event("a", "r", 0).unwrap_err().code;
        assert_eq!(code(entry("not json")), "MalformedDetail");
        assert_eq!(code(entry("[1]")), "MalformedDetail");
        assert_eq!(
            code(Entry {
                source: None,
                ..entry("{}")
            }),
            "InvalidArgument"
        );
        assert_eq!(
            code(Entry {
                detail_type: None,
                ..entry("{}")
            }),
            "InvalidArgument"
        );
        assert_eq!(
            code(Entry {
                detail: None,
                ..entry("{}")
            }),
            "InvalidArgument"
        );
        assert_eq!(
            code(Entry {
                source: Some("aws.ec2".into()),
                ..entry("{}")
            }),
            "NotAuthorizedForSourceException"
        );
        assert_eq!(
            entry("{}").size(),
            "shop.orders".len() + "OrderPlaced".len() + 2 + 9
        );
    }
}
