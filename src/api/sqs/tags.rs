//! The tag actions: TagQueue, UntagQueue and ListQueueTags.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::SqsError;
use super::{Call, QueueUrlInput};

pub(super) async fn tag_queue(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        tags: Option<BTreeMap<String, String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let tags = input
        .tags
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SqsError::invalid("The request must contain at least one tag."))?;
    call.queues(move |q| q.tag(&name, tags)).await?;
    Ok(json!({}))
}

pub(super) async fn untag_queue(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        tag_keys: Option<Vec<String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let keys = input
        .tag_keys
        .filter(|k| !k.is_empty())
        .ok_or_else(|| SqsError::invalid("The request must contain at least one tag key."))?;
    call.queues(move |q| q.untag(&name, &keys)).await?;
    Ok(json!({}))
}

pub(super) async fn list_queue_tags(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: QueueUrlInput = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let tags = call.queues(move |q| q.tags(&name)).await?;
    Ok(if tags.is_empty() {
        json!({})
    } else {
        json!({ "Tags": tags })
    })
}
