//! `Publish` and `PublishBatch`.

use std::collections::{BTreeMap, HashSet};

use super::error::{SnsError, code_of};
use super::{Call, Xml};
use crate::api::query::Form;
use crate::queues::Attribute;
use crate::topics::{MAX_MESSAGE_BYTES, Publication, TopicError};

/// The most entries of a `PublishBatch`.
const MAX_BATCH: usize = 10;

/// `MessageAttributes.entry.N.Name` / `.Value.DataType|StringValue|BinaryValue`.
fn message_attributes(form: &Form) -> Result<BTreeMap<String, Attribute>, TopicError> {
    let mut attributes = BTreeMap::new();
    for (name, entry) in form.entries("MessageAttributes", "Name") {
        let name = name.ok_or_else(|| {
            TopicError::InvalidParameterValue("A message attribute has no name.".into())
        })?;
        let value = entry.nested("Value");
        let data_type = value.get("DataType").ok_or_else(|| {
            TopicError::InvalidParameterValue(format!(
                "The message attribute '{name}' must contain a message attribute type."
            ))
        })?;
        attributes.insert(
            name,
            Attribute {
                data_type: data_type.to_string(),
                string_value: value.get("StringValue").map(str::to_string),
                binary_value: value.get("BinaryValue").map(str::to_string),
            },
        );
    }
    Ok(attributes)
}

/// The publication a form (a request, or one batch entry) describes.
fn publication(form: &Form, trace_id: Option<String>) -> Result<Publication, TopicError> {
    Ok(Publication {
        message: form.get("Message").map(str::to_string),
        subject: form.get("Subject").map(str::to_string),
        structure: form.get("MessageStructure").map(str::to_string),
        attributes: message_attributes(form)?,
        group_id: form.get("MessageGroupId").map(str::to_string),
        dedup_id: form.get("MessageDeduplicationId").map(str::to_string),
        trace_id,
    })
}

fn trace_id(call: &Call<'_>) -> Option<String> {
    call.headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(super) async fn publish(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    if call.get("PhoneNumber").is_some() {
        return Err(SnsError::invalid(
            "Invalid parameter: PhoneNumber Reason: SMS is not supported by this server",
        ));
    }
    let topic = call
        .get("TopicArn")
        .or_else(|| call.get("TargetArn"))
        .ok_or_else(|| SnsError::missing("TopicArn or TargetArn"))?
        .to_string();
    if call.get("Message").is_none() {
        return Err(SnsError::missing("Message"));
    }
    let publication = publication(&call.form, trace_id(call))?;
    let mut results = call
        .topics(move |t| t.publish(&topic, vec![publication]))
        .await?;
    let receipt = results
        .pop()
        .ok_or_else(|| SnsError::from(TopicError::Backend("nothing was published".into())))??;
    let mut xml = Xml::default();
    xml.leaf("MessageId", &receipt.message_id);
    xml.leaf_opt("SequenceNumber", receipt.sequence_number.as_deref());
    Ok(Some(xml))
}

/// A batch entry id: 1 to 80 letters, digits, hyphens and underscores.
fn valid_entry_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) async fn publish_batch(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let topic = call.required("TopicArn")?.to_string();
    let entries = call.form.indexed("PublishBatchRequestEntries.member");
    if entries.is_empty() {
        return Err(TopicError::EmptyBatchRequest.into());
    }
    if entries.len() > MAX_BATCH {
        return Err(TopicError::TooManyEntriesInBatchRequest.into());
    }
    let mut ids = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    let mut total = 0;
    for (_, entry) in &entries {
        let id = entry.get("Id").unwrap_or_default();
        if !valid_entry_id(id) {
            return Err(TopicError::InvalidBatchEntryId.into());
        }
        if !seen.insert(id.to_string()) {
            return Err(TopicError::BatchEntryIdsNotDistinct.into());
        }
        total += entry.get("Message").map_or(0, str::len);
        ids.push(id.to_string());
    }
    if total > MAX_MESSAGE_BYTES {
        return Err(TopicError::BatchRequestTooLong.into());
    }
    // Entries that cannot even be read fail in their place; the rest are published.
    let trace = trace_id(call);
    let mut failed: Vec<(String, TopicError)> = Vec::new();
    let mut good_ids = Vec::new();
    let mut publications = Vec::new();
    for ((_, entry), id) in entries.iter().zip(&ids) {
        match publication(entry, trace.clone()) {
            Ok(p) => {
                good_ids.push(id.clone());
                publications.push(p);
            }
            Err(e) => failed.push((id.clone(), e)),
        }
    }
    let results = call
        .topics(move |t| t.publish(&topic, publications))
        .await?;
    let mut successful = Vec::new();
    for (id, result) in good_ids.into_iter().zip(results) {
        match result {
            Ok(receipt) => successful.push((id, receipt)),
            Err(e) => failed.push((id, e)),
        }
    }
    let mut xml = Xml::default();
    xml.element("Successful", |xml| {
        for (id, receipt) in &successful {
            xml.element("member", |xml| {
                xml.leaf("Id", id);
                xml.leaf("MessageId", &receipt.message_id);
                xml.leaf_opt("SequenceNumber", receipt.sequence_number.as_deref());
            });
        }
    });
    xml.element("Failed", |xml| {
        for (id, e) in &failed {
            let (status, code) = code_of(e);
            xml.element("member", |xml| {
                xml.leaf("Id", id);
                xml.leaf("Code", code);
                xml.leaf("Message", &e.to_string());
                xml.leaf(
                    "SenderFault",
                    if status.is_client_error() {
                        "true"
                    } else {
                        "false"
                    },
                );
            });
        }
    });
    Ok(Some(xml))
}
