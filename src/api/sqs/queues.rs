//! The queue actions: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue, PurgeQueue,
//! GetQueueAttributes, SetQueueAttributes, ListDeadLetterSourceQueues, AddPermission and
//! RemovePermission.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::SqsError;
use super::{Call, QueueUrlInput};

/// The input of the actions that name a queue by name.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueNameInput {
    queue_name: String,
}

pub(super) async fn create_queue(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_name: String,
        attributes: Option<HashMap<String, String>>,
        #[serde(rename = "tags")]
        tags: Option<BTreeMap<String, String>>,
    }
    let input: Input = call.input()?;
    let attrs = crate::queues::validate_attributes(&input.attributes.unwrap_or_default())?;
    crate::queues::validate_name(&input.queue_name)?;
    let name = call.scope.key(&input.queue_name).into_owned();
    let tags = input.tags.unwrap_or_default();
    call.queues(move |q| q.create(&name, attrs, tags)).await?;
    Ok(json!({ "QueueUrl": call.url(&input.queue_name) }))
}

pub(super) async fn get_queue_url(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: QueueNameInput = call.input()?;
    crate::queues::validate_name(&input.queue_name)?;
    let name = call.scope.key(&input.queue_name).into_owned();
    call.queues(move |q| q.info(&name)).await?;
    Ok(json!({ "QueueUrl": call.url(&input.queue_name) }))
}

pub(super) async fn list_queues(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_name_prefix: Option<String>,
    }
    let input: Input = call.input()?;
    let prefix = input.queue_name_prefix.unwrap_or_default();
    let region = call.scope.0.clone();
    let names = call.queues(move |q| q.list(&region, &prefix)).await?;
    Ok(json!({ "QueueUrls": names.iter().map(|n| call.url(n)).collect::<Vec<_>>() }))
}

/// ListDeadLetterSourceQueues: the queues of the request's region whose redrive policy
/// names this queue (pages of `MaxResults`, 1 to 1000, with `NextToken`).
pub(super) async fn list_dead_letter_source_queues(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        max_results: Option<i64>,
        next_token: Option<String>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let max = match input.max_results {
        None => usize::MAX,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(SqsError::invalid(format!(
                "Value {n} for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000."
            )));
        }
    };
    let region = call.scope.0.clone();
    let sources = call.queues(move |q| q.dead_letter_sources(&name)).await?;
    let mut names = sources
        .iter()
        .filter_map(|key| region.name_in_region(key))
        .filter(|n| input.next_token.as_deref().is_none_or(|after| *n > after));
    let page: Vec<&str> = names.by_ref().take(max).collect();
    let mut out = json!({ "queueUrls": page.iter().map(|n| call.url(n)).collect::<Vec<_>>() });
    if names.next().is_some()
        && let Some(last) = page.last()
    {
        out["NextToken"] = json!(last);
    }
    Ok(out)
}

pub(super) async fn delete_queue(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: QueueUrlInput = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    call.queues(move |q| q.delete(&name)).await?;
    Ok(json!({}))
}

pub(super) async fn purge_queue(call: &Call<'_>) -> Result<Value, SqsError> {
    let input: QueueUrlInput = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    call.queues(move |q| q.purge(&name)).await?;
    Ok(json!({}))
}

pub(super) async fn get_queue_attributes(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        attribute_names: Option<Vec<String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_name(&input.queue_url)?;
    let queue = call.scope.key(&name).into_owned();
    let (info, counts) = call
        .queues(move |q| Ok((q.info(&queue)?, q.counts(&queue)?)))
        .await?;
    let arns = &call.scope;
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    all.insert("VisibilityTimeout".into(), info.visibility_s().to_string());
    all.insert(
        "MessageRetentionPeriod".into(),
        info.retention_s().to_string(),
    );
    all.insert("DelaySeconds".into(), info.delay_s().to_string());
    all.insert(
        "MaximumMessageSize".into(),
        crate::queues::MAX_MESSAGE_BYTES.to_string(),
    );
    all.insert("ReceiveMessageWaitTimeSeconds".into(), "0".into());
    all.extend(info.attributes.clone());
    all.insert("ApproximateNumberOfMessages".into(), counts.0.to_string());
    all.insert(
        "ApproximateNumberOfMessagesNotVisible".into(),
        counts.1.to_string(),
    );
    all.insert(
        "ApproximateNumberOfMessagesDelayed".into(),
        counts.2.to_string(),
    );
    all.insert(
        "CreatedTimestamp".into(),
        (info.created_ms / 1000).to_string(),
    );
    all.insert(
        "LastModifiedTimestamp".into(),
        (info.created_ms / 1000).to_string(),
    );
    all.insert("QueueArn".into(), arns.queue_arn(&name));
    let names = input.attribute_names.unwrap_or_default();
    let chosen: BTreeMap<String, String> = all
        .into_iter()
        .filter(|(k, _)| names.iter().any(|n| n == "All" || n == k))
        .collect();
    Ok(json!({ "Attributes": chosen }))
}

/// SetQueueAttributes: the attributes CreateQueue accepts, checked the same way; a
/// redrive policy must name an existing queue.
pub(super) async fn set_queue_attributes(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        attributes: Option<HashMap<String, String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let attributes = input
        .attributes
        .ok_or_else(|| SqsError::missing("Attributes"))?;
    let attrs = crate::queues::validate_attributes(&attributes)?;
    call.queues(move |q| q.set_attributes(&name, attrs)).await?;
    Ok(json!({}))
}

/// AddPermission: a statement in the queue's policy (kept, not enforced).
pub(super) async fn add_permission(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        label: Option<String>,
        #[serde(rename = "AWSAccountIds")]
        aws_account_ids: Option<Vec<String>>,
        actions: Option<Vec<String>>,
    }
    let input: Input = call.input()?;
    let name = call.queue_name(&input.queue_url)?;
    let key = call.scope.key(&name).into_owned();
    let arn = call.scope.queue_arn(&name);
    let label = input.label.ok_or_else(|| SqsError::missing("Label"))?;
    let accounts = input.aws_account_ids.unwrap_or_default();
    let actions = input.actions.unwrap_or_default();
    call.queues(move |q| {
        q.edit_policy(&key, |policy| {
            crate::queues::policy::add(policy, &arn, &label, &accounts, &actions).map(Some)
        })
    })
    .await?;
    Ok(json!({}))
}

/// RemovePermission: the statement of a label leaves the queue's policy.
pub(super) async fn remove_permission(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        queue_url: String,
        label: Option<String>,
    }
    let input: Input = call.input()?;
    let name = call.queue_key(&input.queue_url)?;
    let label = input.label.ok_or_else(|| SqsError::missing("Label"))?;
    call.queues(move |q| {
        q.edit_policy(&name, |policy| {
            crate::queues::policy::remove(policy, &label)
        })
    })
    .await?;
    Ok(json!({}))
}
