//! FIFO queues: what sets them apart from standard queues.
//!
//! - A FIFO queue's name ends in `.fifo`, and it is created with `FifoQueue` `true`; its
//!   own attributes are `ContentBasedDeduplication`, `DeduplicationScope` and
//!   `FifoThroughputLimit` (the last two kept, throughput being this server's).
//! - Every message has a `MessageGroupId`, and a `MessageDeduplicationId` (given, or the
//!   SHA-256 of its body with content-based deduplication). A send whose deduplication id
//!   was seen in the last five minutes is acknowledged with the first message's id and
//!   sequence number, and nothing is enqueued (`queue_dedup`, by group with the
//!   `messageGroup` scope).
//! - Messages of a group are received in order, and a group whose earlier message is in
//!   flight (received, not yet deleted, its visibility timeout not over) gives no message:
//!   the receive query passes over every message that has an earlier invisible one in its
//!   group. Per-message delays are refused (the queue's delay applies).
//! - Sequence numbers are the messages' row numbers, printed as 20 digits.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use super::{QueueError, backend};

/// How long a deduplication id is remembered.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The attributes only FIFO queues take, and their values.
const FIFO_ONLY: &[(&str, &[&str])] = &[
    ("FifoQueue", &["true"]),
    ("ContentBasedDeduplication", &["true", "false"]),
    ("DeduplicationScope", &["messageGroup", "queue"]),
    ("FifoThroughputLimit", &["perQueue", "perMessageGroupId"]),
];

pub fn is_fifo_name(name: &str) -> bool {
    name.ends_with(".fifo")
}

/// Whether `name` is one of the FIFO attributes.
pub fn is_fifo_attribute(name: &str) -> bool {
    FIFO_ONLY.iter().any(|(n, _)| *n == name)
}

/// Checks a create's attributes against the queue's kind: a `.fifo` name needs
/// `FifoQueue=true`, and only FIFO queues take FIFO attributes.
pub fn check_create(
    name: &str,
    attributes: &mut BTreeMap<String, String>,
) -> Result<(), QueueError> {
    let fifo = is_fifo_name(name);
    let declared = attributes.get("FifoQueue").map(String::as_str);
    match (fifo, declared) {
        (true, Some("true")) => {}
        (true, _) => {
            return Err(QueueError::InvalidParameter(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length, and it must be created with the FifoQueue attribute set to true.".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(QueueError::InvalidParameter(
                "The name of a FIFO queue must end with the .fifo suffix.".into(),
            ));
        }
        (false, None) => {}
    }
    check_values(fifo, attributes)
}

/// Checks SetQueueAttributes' attributes: `FifoQueue` cannot change, and only FIFO queues
/// take FIFO attributes.
pub fn check_set(fifo: bool, attributes: &BTreeMap<String, String>) -> Result<(), QueueError> {
    if attributes.contains_key("FifoQueue") {
        return Err(QueueError::InvalidAttributeName("FifoQueue".into()));
    }
    check_values(fifo, attributes)
}

fn check_values(fifo: bool, attributes: &BTreeMap<String, String>) -> Result<(), QueueError> {
    for (name, allowed) in FIFO_ONLY {
        let Some(value) = attributes.get(*name) else {
            continue;
        };
        if !fifo {
            return Err(QueueError::InvalidAttributeName((*name).to_string()));
        }
        if !allowed.contains(&value.as_str()) {
            return Err(QueueError::InvalidParameter(format!(
                "Invalid value for the parameter {name}."
            )));
        }
    }
    Ok(())
}

/// What a FIFO send carries besides the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordering {
    pub group_id: String,
    pub dedup_id: String,
}

/// The group and deduplication ids of a message sent to a queue of kind `fifo` with
/// `attributes`: required for FIFO queues (the deduplication id may come from the body),
/// refused for standard ones (a group id is accepted there and kept, as SQS's fair queues
/// take one).
pub fn ordering_of(
    fifo: bool,
    attributes: &BTreeMap<String, String>,
    body: &str,
    group_id: Option<&str>,
    dedup_id: Option<&str>,
    delay_s: Option<u64>,
) -> Result<Option<Ordering>, QueueError> {
    if !fifo {
        if dedup_id.is_some() {
            return Err(QueueError::InvalidMessage(
                "The request include parameter MessageDeduplicationId that is not valid for this queue type".into(),
            ));
        }
        return Ok(None);
    }
    if let Some(delay) = delay_s {
        return Err(QueueError::InvalidMessage(format!(
            "Value {delay} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
        )));
    }
    let group_id = group_id.ok_or_else(|| {
        QueueError::MissingParameter(
            "The request must contain the parameter MessageGroupId.".into(),
        )
    })?;
    check_id("MessageGroupId", group_id)?;
    let dedup_id = match dedup_id {
        Some(id) => {
            check_id("MessageDeduplicationId", id)?;
            id.to_string()
        }
        None if attributes
            .get("ContentBasedDeduplication")
            .map(String::as_str)
            == Some("true") =>
        {
            hex(&Sha256::digest(body.as_bytes()))
        }
        None => {
            return Err(QueueError::InvalidMessage(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
            ));
        }
    };
    Ok(Some(Ordering {
        group_id: group_id.to_string(),
        dedup_id,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Group and deduplication ids: 1 to 128 characters, alphanumeric or punctuation.
fn check_id(parameter: &str, id: &str) -> Result<(), QueueError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidMessage(format!(
            "Value {id} for parameter {parameter} is invalid. Reason: {parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length."
        )))
    }
}

/// The key a deduplication id is remembered by: per group with the `messageGroup` scope.
fn dedup_key(attributes: &BTreeMap<String, String>, ordering: &Ordering) -> String {
    if attributes.get("DeduplicationScope").map(String::as_str) == Some("messageGroup") {
        format!("{}\u{0}{}", ordering.group_id, ordering.dedup_id)
    } else {
        ordering.dedup_id.clone()
    }
}

/// The message id and sequence number of an earlier message with the same deduplication
/// id within the window, if any; else remembers this one's (`message_id`, `seq`).
pub fn deduplicate(
    tx: &Transaction<'_>,
    queue: &str,
    attributes: &BTreeMap<String, String>,
    ordering: &Ordering,
    now_ms: u64,
) -> Result<Option<(String, i64)>, QueueError> {
    let key = dedup_key(attributes, ordering);
    tx.execute(
        "DELETE FROM queue_dedup WHERE queue = ?1 AND sent_ms < ?2",
        params![queue, now_ms.saturating_sub(DEDUP_WINDOW_MS) as i64],
    )
    .map_err(backend)?;
    tx.query_row(
        "SELECT message_id, seq FROM queue_dedup WHERE queue = ?1 AND dedup_key = ?2",
        params![queue, key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map_err(backend)
}

/// Remembers a sent message's deduplication id.
pub fn remember(
    tx: &Transaction<'_>,
    queue: &str,
    attributes: &BTreeMap<String, String>,
    ordering: &Ordering,
    message_id: &str,
    seq: i64,
    now_ms: u64,
) -> Result<(), QueueError> {
    tx.execute(
        "INSERT OR REPLACE INTO queue_dedup (queue, dedup_key, message_id, seq, sent_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            queue,
            dedup_key(attributes, ordering),
            message_id,
            seq,
            now_ms as i64
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// A sequence number as SQS prints them.
pub fn sequence_number(seq: i64) -> String {
    format!("{seq:020}")
}

/// The visible messages a FIFO receive may take, in order: none of a group whose earlier
/// message is still invisible (in flight or delayed).
pub const RECEIVE_SQL: &str =
    "SELECT seq, message_id, body, attributes, sent_ms, receive_count, first_receive_ms, group_id, dedup_id
     FROM queue_messages m
     WHERE m.queue = ?1 AND m.visible_at_ms <= ?2 AND m.sent_ms >= ?4
       AND NOT EXISTS (SELECT 1 FROM queue_messages e
                       WHERE e.queue = ?1 AND e.group_id = m.group_id AND e.seq < m.seq
                         AND e.visible_at_ms > ?2)
     ORDER BY seq LIMIT ?3";

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_attributes_match_the_kind() {
        assert!(check_create("q.fifo", &mut attrs(&[("FifoQueue", "true")])).is_ok());
        assert!(check_create("q.fifo", &mut attrs(&[])).is_err());
        assert!(check_create("q", &mut attrs(&[("FifoQueue", "true")])).is_err());
        assert!(check_create("q", &mut attrs(&[("ContentBasedDeduplication", "true")])).is_err());
        assert!(
            check_create(
                "q.fifo",
                &mut attrs(&[("FifoQueue", "true"), ("DeduplicationScope", "everywhere")])
            )
            .is_err()
        );
        assert!(check_set(true, &attrs(&[("FifoQueue", "true")])).is_err());
        assert!(check_set(true, &attrs(&[("ContentBasedDeduplication", "true")])).is_ok());
    }

    #[test]
    fn fifo_sends_need_a_group_and_a_deduplication_id() {
        let plain = attrs(&[("FifoQueue", "true")]);
        let content = attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]);
        assert!(matches!(
            ordering_of(true, &plain, "b", None, Some("d"), None),
            Err(QueueError::MissingParameter(_))
        ));
        assert!(ordering_of(true, &plain, "b", Some("g"), None, None).is_err());
        let by_content = ordering_of(true, &content, "b", Some("g"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(by_content.dedup_id.len(), 64);
        assert!(ordering_of(true, &plain, "b", Some("g"), Some("d"), Some(5)).is_err());
        assert!(ordering_of(true, &plain, "b", Some("has space"), Some("d"), None).is_err());
        assert_eq!(
            ordering_of(false, &plain, "b", Some("g"), None, Some(5)).unwrap(),
            None
        );
        assert!(ordering_of(false, &plain, "b", None, Some("d"), None).is_err());
        assert_eq!(sequence_number(42), "00000000000000000042");
    }
}
