//! The message actions: SendMessage, SendMessageBatch, ReceiveMessage, DeleteMessage,
//! DeleteMessageBatch, ChangeMessageVisibility and ChangeMessageVisibilityBatch, with
//! SQS's rules for message bodies and batches.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Call;
use super::error::SqsError;
use crate::queues::{Attribute, Outgoing, Received, md5_hex, md5_of_attributes};

/// The most entries a batch request may have.
const BATCH_MAX: usize = 10;
/// The longest visibility timeout, in seconds (12 hours).
const VISIBILITY_MAX_S: i64 = 43_200;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(in crate::api) struct AttributeInput {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
}

pub(in crate::api) fn attributes(
    input: Option<HashMap<String, AttributeInput>>,
) -> BTreeMap<String, Attribute> {
    input
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                Attribute {
                    data_type: v.data_type,
                    string_value: v.string_value,
                    binary_value: v.binary_value,
                },
            )
        })
        .collect()
}

pub(super) async fn send_message(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        message_body: String,
        delay_seconds: Option<u64>,
        message_attributes: Option<HashMap<String, AttributeInput>>,
        message_group_id: Option<String>,
        message_deduplication_id: Option<String>,
    }
    let input: Input = call.input()?;
    check_body(&input.message_body)?;
    let name = call.queue_key(&input.queue_url)?;
    let attrs = attributes(input.message_attributes);
    let md5_attrs = md5_of_attributes(&attrs);
    let md5_body = md5_hex(input.message_body.as_bytes());
    call.state
        .disk
        .check(input.message_body.len() as u64, "a queue message")?;
    let message = Outgoing {
        body: input.message_body,
        attributes: attrs,
        delay_s: input.delay_seconds,
        group_id: input.message_group_id,
        dedup_id: input.message_deduplication_id,
    };
    let sent = call.queues(move |q| q.send(&name, &[message])).await?;
    let mut out = json!({ "MessageId": sent[0].message_id, "MD5OfMessageBody": md5_body });
    if let Some(md5) = md5_attrs {
        out["MD5OfMessageAttributes"] = json!(md5);
    }
    if let Some(sequence) = &sent[0].sequence_number {
        out["SequenceNumber"] = json!(sequence);
    }
    Ok(out)
}

pub(super) async fn send_message_batch(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        id: String,
        message_body: String,
        delay_seconds: Option<u64>,
        message_attributes: Option<HashMap<String, AttributeInput>>,
        message_group_id: Option<String>,
        message_deduplication_id: Option<String>,
    }
    let (name, entries) = batch_input(call, |e: &Entry| &e.id)?;
    let total: usize = entries.iter().map(|e| e.message_body.len()).sum();
    if total > crate::queues::MAX_MESSAGE_BYTES {
        return Err(SqsError::sender(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {} bytes. You have sent {total} bytes.",
                crate::queues::MAX_MESSAGE_BYTES
            ),
        ));
    }
    // An entry SQS would refuse on its own is listed in `Failed`; the others are sent.
    let mut results = Vec::new();
    let mut failed = Vec::new();
    let mut messages = Vec::new();
    for entry in entries {
        let message = Outgoing {
            body: entry.message_body,
            attributes: attributes(entry.message_attributes),
            delay_s: entry.delay_seconds,
            group_id: entry.message_group_id,
            dedup_id: entry.message_deduplication_id,
        };
        let check = check_body(&message.body).and_then(|()| {
            call.state
                .queues
                .check_outgoing(&name, &message)
                .map_err(SqsError::from)
        });
        if let Err(e) = check {
            if e.code == "AWS.SimpleQueueService.NonExistentQueue" {
                return Err(e);
            }
            failed.push(json!({
                "Id": entry.id,
                "SenderFault": true,
                "Code": e.code,
                "Message": e.message,
            }));
            continue;
        }
        let mut result = json!({
            "Id": entry.id,
            "MD5OfMessageBody": md5_hex(message.body.as_bytes()),
        });
        if let Some(md5) = md5_of_attributes(&message.attributes) {
            result["MD5OfMessageAttributes"] = json!(md5);
        }
        results.push(result);
        messages.push(message);
    }
    if !messages.is_empty() {
        let bytes = messages.iter().map(|m| m.body.len() as u64).sum();
        call.state.disk.check(bytes, "a batch of queue messages")?;
        let sent = call.queues(move |q| q.send(&name, &messages)).await?;
        for (result, sent) in results.iter_mut().zip(sent) {
            result["MessageId"] = json!(sent.message_id);
            if let Some(sequence) = sent.sequence_number {
                result["SequenceNumber"] = json!(sequence);
            }
        }
    }
    Ok(json!({ "Successful": results, "Failed": failed }))
}

pub(super) async fn receive_message(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        max_number_of_messages: Option<i64>,
        visibility_timeout: Option<i64>,
        wait_time_seconds: Option<i64>,
        attribute_names: Option<Vec<String>>,
        message_system_attribute_names: Option<Vec<String>>,
        message_attribute_names: Option<Vec<String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let max = input.max_number_of_messages.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(SqsError::invalid(format!(
            "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        )));
    }
    let wait = match input.wait_time_seconds {
        Some(w) if !(0..=20).contains(&w) => {
            return Err(SqsError::invalid(format!(
                "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        Some(w) => w as u64,
        None => {
            let queue = name.clone();
            call.queues(move |q| q.info(&queue))
                .await?
                .attributes
                .get("ReceiveMessageWaitTimeSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
    };
    if input
        .visibility_timeout
        .is_some_and(|v| !(0..=VISIBILITY_MAX_S).contains(&v))
    {
        return Err(visibility_out_of_range());
    }
    let messages = call
        .state
        .queues
        .receive(
            &name,
            max as usize,
            input.visibility_timeout.map(|v| v as u64),
            Duration::from_secs(wait),
        )
        .await?;
    let selection = Selection {
        system: input
            .attribute_names
            .unwrap_or_default()
            .into_iter()
            .chain(input.message_system_attribute_names.unwrap_or_default())
            .collect(),
        attributes: input.message_attribute_names.unwrap_or_default(),
        sender_id: &call.state.arns.account_id,
    };
    let rendered: Vec<Value> = messages.into_iter().map(|m| selection.render(m)).collect();
    // SQS leaves `Messages` out of an empty answer.
    if rendered.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Messages": rendered }))
}

/// What of a received message a ReceiveMessage asked for.
struct Selection<'a> {
    /// System attribute names (or `All`).
    system: Vec<String>,
    /// Message attribute names (`All`, `.*`, a name, or `prefix.*`).
    attributes: Vec<String>,
    sender_id: &'a str,
}

impl Selection<'_> {
    /// A received message as ReceiveMessage answers it, with the attributes asked for.
    fn render(&self, m: Received) -> Value {
        let mut out = json!({
            "MessageId": m.message_id,
            "ReceiptHandle": m.receipt_handle,
            "MD5OfBody": m.md5_of_body,
            "Body": m.body,
        });
        let all_system = [
            ("SentTimestamp", m.sent_ms.to_string()),
            ("ApproximateReceiveCount", m.receive_count.to_string()),
            (
                "ApproximateFirstReceiveTimestamp",
                m.first_receive_ms.to_string(),
            ),
            ("SenderId", self.sender_id.to_string()),
        ];
        let fifo_system = [
            ("MessageGroupId", m.group_id.clone()),
            ("MessageDeduplicationId", m.dedup_id.clone()),
            ("SequenceNumber", m.sequence_number.clone()),
        ];
        let chosen: serde_json::Map<String, Value> = all_system
            .into_iter()
            .chain(
                fifo_system
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v))),
            )
            .filter(|(k, _)| self.system.iter().any(|s| s == "All" || s == k))
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        if !chosen.is_empty() {
            out["Attributes"] = Value::Object(chosen);
        }
        let attrs: BTreeMap<String, Attribute> = m
            .attributes
            .into_iter()
            .filter(|(k, _)| {
                self.attributes.iter().any(|w| {
                    w == "All"
                        || w == ".*"
                        || w == k
                        || w.strip_suffix(".*").is_some_and(|p| k.starts_with(p))
                })
            })
            .collect();
        if let Some(md5) = md5_of_attributes(&attrs) {
            out["MD5OfMessageAttributes"] = json!(md5);
            out["MessageAttributes"] = attrs
                .iter()
                .map(|(k, a)| {
                    let mut v = json!({ "DataType": a.data_type });
                    if let Some(s) = &a.string_value {
                        v["StringValue"] = json!(s);
                    }
                    if let Some(b) = &a.binary_value {
                        v["BinaryValue"] = json!(b);
                    }
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        out
    }
}

/// The input of the actions on one received message.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiptInput {
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: Option<i64>,
}

pub(super) async fn delete_message(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: ReceiptInput = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let handle = input.receipt_handle;
    call.queues(move |q| q.delete_message(&name, &handle))
        .await?;
    Ok(json!({}))
}

pub(super) async fn change_message_visibility(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: ReceiptInput = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let handle = input.receipt_handle;
    let visibility = input
        .visibility_timeout
        .filter(|v| (0..=VISIBILITY_MAX_S).contains(v))
        .ok_or_else(visibility_out_of_range)?;
    call.queues(move |q| q.change_visibility(&name, &handle, visibility as u64))
        .await?;
    Ok(json!({}))
}

pub(super) async fn delete_message_batch(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        id: String,
        receipt_handle: String,
    }
    let (name, entries) = batch_input(call, |e: &Entry| &e.id)?;
    // One transaction for the batch; each entry's result apart.
    let handles: Vec<String> = entries.iter().map(|e| e.receipt_handle.clone()).collect();
    let results = call
        .queues(move |q| {
            let handles: Vec<&str> = handles.iter().map(String::as_str).collect();
            q.delete_each(&name, &handles)
        })
        .await?;
    let mut results = results.into_iter();
    each_entry(
        entries,
        |e| &e.id,
        |_| {
            let result = results.next().unwrap_or(Ok(())).map_err(SqsError::from);
            async move { result }
        },
    )
    .await
}

pub(super) async fn change_message_visibility_batch(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        id: String,
        receipt_handle: String,
        visibility_timeout: Option<i64>,
    }
    let (name, entries) = batch_input(call, |e: &Entry| &e.id)?;
    each_entry(
        entries,
        |e| &e.id,
        |entry| {
            let queue = name.clone();
            let handle = entry.receipt_handle.clone();
            let visibility = entry.visibility_timeout;
            async move {
                let visibility = visibility
                    .filter(|v| (0..=VISIBILITY_MAX_S).contains(v))
                    .ok_or_else(visibility_out_of_range)?;
                call.queues(move |q| q.change_visibility(&queue, &handle, visibility as u64))
                    .await
            }
        },
    )
    .await
}

/// Runs `apply` for each entry of a batch: `Successful` lists the ids it did, `Failed` the
/// others with their error (a queue that does not exist fails the whole batch).
async fn each_entry<E, F, Fut>(
    entries: Vec<E>,
    id: impl Fn(&E) -> &String,
    mut apply: F,
) -> Result<Value, SqsError>
where
    F: FnMut(&E) -> Fut,
    Fut: std::future::Future<Output = Result<(), SqsError>>,
{
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        match apply(&entry).await {
            Ok(()) => successful.push(json!({ "Id": id(&entry) })),
            Err(e) if e.code == "AWS.SimpleQueueService.NonExistentQueue" => return Err(e),
            Err(e) => failed.push(json!({
                "Id": id(&entry),
                "SenderFault": true,
                "Code": e.code,
                "Message": e.message,
            })),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

/// A batch action's input: a queue and its entries.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchInput<E> {
    queue_url: String,
    entries: Vec<E>,
}

/// The queue a batch action names and its entries, whose ids (`id` of an entry) are
/// checked as SQS checks a batch's.
fn batch_input<E: DeserializeOwned>(
    call: &Call<'_>,
    id: impl Fn(&E) -> &str,
) -> Result<(String, Vec<E>), SqsError> {
    let input: BatchInput<E> = call.input()?;
    check_batch(input.entries.iter().map(id).collect())?;
    let name = call.queue_key(&input.queue_url)?;
    Ok((name, input.entries))
}

fn visibility_out_of_range() -> SqsError {
    SqsError::invalid(format!(
        "VisibilityTimeout must be between 0 and {VISIBILITY_MAX_S} seconds"
    ))
}

/// SQS's rules for a message body: present, at most the size limit, and only the
/// characters SQS allows (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`).
pub(in crate::api) fn check_body(body: &str) -> Result<(), SqsError> {
    if body.is_empty() {
        return Err(SqsError::missing("MessageBody"));
    }
    if body.len() > crate::queues::MAX_MESSAGE_BYTES {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            crate::queues::MAX_MESSAGE_BYTES
        )));
    }
    let allowed = |c: char| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    if let Some(bad) = body.chars().find(|c| !allowed(*c)) {
        return Err(SqsError::sender(
            "InvalidMessageContents",
            "InvalidMessageContents",
            format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of \
                 allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | \
                 #x10000 to #x10FFFF",
                u32::from(bad)
            ),
        ));
    }
    Ok(())
}

/// SQS's rules for a batch's entry ids: one to ten, all different.
fn check_batch(ids: Vec<&str>) -> Result<(), SqsError> {
    if ids.is_empty() {
        return Err(SqsError::sender(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if ids.len() > BATCH_MAX {
        return Err(SqsError::sender(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {BATCH_MAX}. You have sent {}.",
                ids.len()
            ),
        ));
    }
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        return Err(SqsError::sender(
            "BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies_follow_sqs_character_rules() {
        assert!(check_body("plain text\t\r\n ok \u{E000} \u{1F600}").is_ok());
        assert_eq!(check_body("").unwrap_err().code, "MissingParameter");
        for bad in ["a\u{0}b", "\u{8}", "\u{B}", "\u{1F}", "\u{FFFE}"] {
            let e = check_body(bad).unwrap_err();
            assert_eq!(e.code, "InvalidMessageContents", "{bad:?}");
        }
        assert!(check_body("\u{0}").unwrap_err().message.contains("#x0"));
    }

    #[test]
    fn batches_have_one_to_ten_distinct_ids() {
        assert!(check_batch(vec!["a"]).is_ok());
        let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert!(check_batch(ten.iter().map(String::as_str).collect()).is_ok());
        assert_eq!(
            check_batch(vec![]).unwrap_err().code,
            "AWS.SimpleQueueService.EmptyBatchRequest"
        );
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(
            check_batch(eleven.iter().map(String::as_str).collect())
                .unwrap_err()
                .code,
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
        );
        assert_eq!(
            check_batch(vec!["a", "b", "a"]).unwrap_err().code,
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
        );
    }

    #[test]
    fn received_messages_carry_the_attributes_asked_for() {
        let message = || Received {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: "b".into(),
            md5_of_body: md5_hex(b"b"),
            attributes: [("app.kind", "k"), ("app.size", "s"), ("other", "o")]
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Attribute {
                            data_type: "String".into(),
                            string_value: Some(v.into()),
                            binary_value: None,
                        },
                    )
                })
                .collect(),
            sent_ms: 1,
            receive_count: 2,
            first_receive_ms: 3,
            group_id: None,
            dedup_id: None,
            sequence_number: None,
        };
        let select = |system: &[&str], attributes: &[&str]| Selection {
            system: system.iter().map(|s| s.to_string()).collect(),
            attributes: attributes.iter().map(|s| s.to_string()).collect(),
            sender_id: "000000000000",
        };
        let bare = select(&[], &[]).render(message());
        assert!(bare.get("Attributes").is_none() && bare.get("MessageAttributes").is_none());
        let some = select(&["ApproximateReceiveCount"], &["app.*"]).render(message());
        assert_eq!(
            some["Attributes"],
            json!({ "ApproximateReceiveCount": "2" })
        );
        let names: Vec<&String> = some["MessageAttributes"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(names, ["app.kind", "app.size"]);
        let all = select(&["All"], &["All"]).render(message());
        assert_eq!(all["Attributes"]["SenderId"], "000000000000");
        assert_eq!(all["MessageAttributes"].as_object().unwrap().len(), 3);
    }
}
