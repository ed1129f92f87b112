//! The message move task actions: StartMessageMoveTask, ListMessageMoveTasks and
//! CancelMessageMoveTask (see `crate::queues::moves`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use super::error::SqsError;
use crate::arn::Arn;
use crate::queues::QueueError;

/// The key of the queue an ARN names, with the ARN (of this account, any region).
fn queue_of_arn(call: &Call<'_>, parameter: &str, raw: &str) -> Result<(String, String), SqsError> {
    let invalid = || {
        SqsError::invalid(format!(
            "Value {raw} for parameter {parameter} is invalid. Reason: it is not an SQS queue ARN."
        ))
    };
    let arn = Arn::parse(raw).map_err(|_| invalid())?;
    let name = arn.queue_name().map_err(|_| invalid())?;
    if arn.account != call.state.arns.account_id {
        return Err(
            QueueError::ResourceNotFound(format!("The resource {raw} does not exist.")).into(),
        );
    }
    let key = call.state.arns.key_of_arn(&arn.region, name).into_owned();
    Ok((key, raw.to_string()))
}

pub(super) async fn start_message_move_task(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        source_arn: String,
        destination_arn: Option<String>,
        max_number_of_messages_per_second: Option<i64>,
    }
    let input: Input = call.input()?;
    let source = queue_of_arn(call, "SourceArn", &input.source_arn)?;
    let destination = input
        .destination_arn
        .as_deref()
        .map(|raw| queue_of_arn(call, "DestinationArn", raw))
        .transpose()?;
    let rate = match input.max_number_of_messages_per_second {
        None => None,
        Some(n) if (1..=i64::from(crate::queues::moves::MAX_RATE)).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(SqsError::invalid(format!(
                "Value {n} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: it must be between 1 and {}.",
                crate::queues::moves::MAX_RATE
            )));
        }
    };
    let queues = call.state.queues.clone();
    // The task then runs in the background, on this runtime.
    let task = tokio::task::spawn_blocking(move || queues.start_move(source, destination, rate))
        .await
        .map_err(|e| SqsError::from(QueueError::Backend(e.to_string())))??;
    Ok(json!({ "TaskHandle": task.handle }))
}

pub(super) async fn list_message_move_tasks(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        source_arn: String,
        max_results: Option<i64>,
    }
    let input: Input = call.input()?;
    let (source, source_arn) = queue_of_arn(call, "SourceArn", &input.source_arn)?;
    let max = match input.max_results {
        None => 1,
        Some(n) if (1..=10).contains(&n) => n as usize,
        Some(n) => {
            return Err(SqsError::invalid(format!(
                "Value {n} for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 10."
            )));
        }
    };
    let name = source.clone();
    call.queues(move |q| q.info(&name).map(|_| ()))
        .await
        .map_err(|_| {
            SqsError::from(QueueError::ResourceNotFound(format!(
                "The resource {source_arn} does not exist."
            )))
        })?;
    let results: Vec<Value> = call
        .state
        .queues
        .list_moves(&source, max)
        .iter()
        .map(|task| {
            let (status, reason) = task.status();
            let mut entry = json!({
                "Status": status.as_str(),
                "SourceArn": task.source_arn,
                "ApproximateNumberOfMessagesMoved": task.moved(),
                "ApproximateNumberOfMessagesToMove": task.to_move,
                "StartedTimestamp": task.started_ms,
            });
            if status == crate::queues::moves::MoveStatus::Running {
                entry["TaskHandle"] = json!(task.handle);
            }
            if let Some((_, arn)) = &task.destination {
                entry["DestinationArn"] = json!(arn);
            }
            if let Some(rate) = task.rate {
                entry["MaxNumberOfMessagesPerSecond"] = json!(rate);
            }
            if let Some(reason) = reason {
                entry["FailureReason"] = json!(reason);
            }
            entry
        })
        .collect();
    Ok(json!({ "Results": results }))
}

pub(super) async fn cancel_message_move_task(call: &Call<'_>) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        task_handle: String,
    }
    let input: Input = call.input()?;
    let moved = call.state.queues.cancel_move(&input.task_handle)?;
    Ok(json!({ "ApproximateNumberOfMessagesMoved": moved }))
}
