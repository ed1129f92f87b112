//! The deliverer of the event bus: an event source that works through the outbox, each
//! delivery through the delivery door with the input its target's settings make.
//!
//! Deliveries are attempted concurrently (a slow or failing target holds only its own
//! slots). A failed attempt is tried again with exponential backoff (1 s doubling, at most
//! 5 minutes between attempts, with jitter) while the target's `RetryPolicy` allows
//! (`MaximumRetryAttempts`, default 185; `MaximumEventAgeInSeconds`, default 24 h); a
//! target that does not exist is not retried. Then the event goes to the target's
//! dead-letter queue, with EventBridge's attributes (`RULE_ARN`, `TARGET_ARN`,
//! `ERROR_CODE`, `ERROR_MESSAGE`, `EXHAUSTED_RETRY_CONDITION`, `RETRY_ATTEMPTS`), or is
//! dropped with a log line. How attempts ended is written back in batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::outbox::Due;
use super::transform::InputSpec;
use super::{DEFAULT_MAX_AGE_S, DEFAULT_RETRIES, EventBusService};
use crate::delivery::{Delivery, DeliveryError, Principal, Targets};
use crate::invoke::{BoxFuture, Origin};
use crate::queues::Attribute;
use crate::sources::{EventSource, SourceContext};
use crate::timefmt::now_ms;

/// Deliveries attempted at once.
const MAX_IN_FLIGHT: usize = 256;
/// The longest the deliverer sleeps before it looks for due deliveries again.
const IDLE_CLAIM: Duration = Duration::from_secs(1);
/// How long shutdown waits for attempts under way.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
const BACKOFF_MAX_MS: u64 = 300_000;
/// When a dead-letter queue could not take an event, how long before it is tried again.
const DEAD_LETTER_RETRY_MS: u64 = 20_000;

pub struct Deliverer {
    bus: Arc<EventBusService>,
}

impl Deliverer {
    pub fn new(bus: Arc<EventBusService>) -> Arc<Self> {
        Arc::new(Self { bus })
    }
}

impl EventSource for Deliverer {
    fn name(&self) -> String {
        "event-bus".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(context).await })
    }
}

/// How an attempt ended: the delivery is done, or comes back at a time.
enum Ended {
    Done(i64),
    Retry(i64, u64),
}

impl Deliverer {
    async fn serve(self: Arc<Self>, context: SourceContext) {
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
        let mut attempts: JoinSet<()> = JoinSet::new();
        loop {
            let free = MAX_IN_FLIGHT.saturating_sub(attempts.len());
            if free > 0 {
                let outbox = self.bus.outbox();
                let claimed =
                    tokio::task::spawn_blocking(move || outbox.claim(now_ms(), free)).await;
                match claimed {
                    Ok(Ok(due)) => {
                        for d in due {
                            let (targets, tx) = (context.delivery.clone(), ended_tx.clone());
                            attempts.spawn(async move {
                                let _ = tx.send(attempt(&targets, d).await);
                            });
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "claiming bus deliveries failed"),
                    Err(e) => tracing::error!(error = %e, "the claim task failed"),
                }
            }
            tokio::select! {
                Some(ended) = ended_rx.recv() => {
                    let mut batch = vec![ended];
                    while let Ok(more) = ended_rx.try_recv() {
                        batch.push(more);
                    }
                    self.settle(batch).await;
                }
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                () = self.bus.committed.notified() => {}
                () = tokio::time::sleep(IDLE_CLAIM) => {}
                () = context.shutdown.started() => break,
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        attempts.abort_all();
        let mut batch = Vec::new();
        while let Ok(ended) = ended_rx.try_recv() {
            batch.push(ended);
        }
        self.settle(batch).await;
    }

    async fn settle(&self, batch: Vec<Ended>) {
        if batch.is_empty() {
            return;
        }
        let mut done = Vec::new();
        let mut retry = Vec::new();
        for ended in batch {
            match ended {
                Ended::Done(id) => done.push(id),
                Ended::Retry(id, due) => retry.push((id, due)),
            }
        }
        // Written back until it holds: a delivery left claimed would be attempted again
        // only after a restart.
        for attempt in 1.. {
            let (outbox, d, r) = (self.bus.outbox(), done.clone(), retry.clone());
            match tokio::task::spawn_blocking(move || outbox.settle(&d, &r)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) if attempt < 20 => {
                    tracing::warn!(error = %e, attempt, "settling bus deliveries failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "settling bus deliveries failed; they are attempted again after a restart");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the settle task failed");
                    return;
                }
            }
        }
    }
}

/// The retry policy of a target: attempts after the first, and the oldest an event may
/// be.
fn policy(target: &Value) -> (u32, u64) {
    let retry = target.get("RetryPolicy");
    let attempts = retry
        .and_then(|r| r.get("MaximumRetryAttempts"))
        .and_then(Value::as_u64)
        .map_or(DEFAULT_RETRIES, |n| n as u32);
    let age = retry
        .and_then(|r| r.get("MaximumEventAgeInSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_AGE_S);
    (attempts, age)
}

/// The wait before retry number `attempt` (1-based): 1 s doubling, capped, with jitter.
fn backoff_ms(attempt: u32) -> u64 {
    let base = 1000u64.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let capped = base.min(BACKOFF_MAX_MS);
    capped / 2 + fastrand::u64(..=capped / 2)
}

/// One attempt of one delivery.
async fn attempt(targets: &Targets, due: Due) -> Ended {
    let arn = due
        .target
        .get("Arn")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let rule_name = due.rule_arn.rsplit('/').next().unwrap_or("").to_string();
    let spec = InputSpec::of_target(&due.target).unwrap_or(InputSpec::Event);
    let ingestion = super::event::iso_seconds(due.accepted_ms);
    let input = spec.apply(&due.event, &due.rule_arn, &rule_name, &ingestion);
    let mut delivery = Delivery::new(input).with_origin(Origin::Bus(due.rule_arn.clone()));
    // A rule invokes a function as `events.amazonaws.com`, which the function's resource
    // policy must allow (a Scheduler schedule acts through its role instead).
    if due.rule_arn.starts_with("arn:aws:events:") {
        delivery.principal = Some(Principal {
            service: "events.amazonaws.com",
            source_arn: due.rule_arn.clone(),
        });
    }
    if let Some(group) = due
        .target
        .get("SqsParameters")
        .and_then(|p| p.get("MessageGroupId"))
        .and_then(Value::as_str)
    {
        delivery.group_id = Some(group.to_string());
        delivery.dedup_id = due
            .event
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let result = targets.deliver(&arn, delivery).await;
    let (code, message, retryable) = match result {
        Ok(()) => return Ended::Done(due.id),
        Err(DeliveryError::Failed { reason, .. }) => ("SDK_CLIENT_ERROR", reason, true),
        Err(e @ DeliveryError::NotFound(_)) => ("RESOURCE_NOT_FOUND", e.to_string(), false),
        Err(e @ DeliveryError::Denied { .. }) => ("NO_PERMISSIONS", e.to_string(), false),
        Err(e) => ("INVALID_PARAMETER", e.to_string(), false),
    };
    let (max_retries, max_age_s) = policy(&due.target);
    let now = now_ms();
    let age_exceeded = now.saturating_sub(due.accepted_ms) >= max_age_s * 1000;
    let retries_spent = due.attempts >= max_retries;
    if retryable && !age_exceeded && !retries_spent {
        tracing::debug!(%arn, attempt = due.attempts + 1, error = %message, "a bus delivery failed; retrying");
        return Ended::Retry(due.id, now + backoff_ms(due.attempts + 1));
    }
    let condition = if !retryable {
        "NonRetryableError"
    } else if age_exceeded {
        "MaximumEventAgeExhausted"
    } else {
        "MaximumRetryAttemptsExhausted"
    };
    let Some(dlq) = due
        .target
        .get("DeadLetterConfig")
        .and_then(|d| d.get("Arn"))
        .and_then(Value::as_str)
    else {
        tracing::warn!(%arn, rule = %due.rule_arn, error = %message, condition, "a bus event could not be delivered and the target has no dead-letter queue; dropped");
        return Ended::Done(due.id);
    };
    let text = |v: String| Attribute {
        data_type: "String".into(),
        string_value: Some(v),
        binary_value: None,
    };
    let attributes = BTreeMap::from([
        ("RULE_ARN".to_string(), text(due.rule_arn.clone())),
        ("TARGET_ARN".to_string(), text(arn.clone())),
        ("ERROR_CODE".to_string(), text(code.to_string())),
        (
            "ERROR_MESSAGE".to_string(),
            text(message.chars().take(256).collect()),
        ),
        (
            "EXHAUSTED_RETRY_CONDITION".to_string(),
            text(condition.to_string()),
        ),
        ("RETRY_ATTEMPTS".to_string(), text(due.attempts.to_string())),
    ]);
    // An event is sent as its JSON; a firing of the Scheduler (whose event is its input
    // text) as that text.
    let body = match &due.event {
        Value::String(text) => text.clone(),
        event => event.to_string(),
    };
    let dead = Delivery::new(body).with_attributes(attributes);
    match targets.deliver(dlq, dead).await {
        Ok(()) => {
            tracing::info!(%arn, %dlq, condition, "a bus event went to its target's dead-letter queue");
            Ended::Done(due.id)
        }
        Err(e) => {
            tracing::warn!(%dlq, error = %e, "a bus event's dead-letter queue did not take it; trying again later");
            Ended::Retry(due.id, now + DEAD_LETTER_RETRY_MS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_policies_and_backoff() {
        assert_eq!(policy(&json!({})), (185, 86_400));
        assert_eq!(
            policy(
                &json!({"RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}})
            ),
            (2, 60)
        );
        for attempt in 1..40 {
            let wait = backoff_ms(attempt);
            assert!(wait <= BACKOFF_MAX_MS, "{attempt}: {wait}");
        }
        assert!((500..=1000).contains(&backoff_ms(1)));
        assert!((1000..=2000).contains(&backoff_ms(2)));
    }
}
