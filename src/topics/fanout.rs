//! The deliverer of topics: an event source that works through the outbox of
//! deliveries (one per subscription a published message goes to), through the delivery
//! door for functions and queues and by HTTP POST for HTTP endpoints.
//!
//! Deliveries of standard topics are handed over as they are committed; the rest (FIFO
//! deliveries, retries, and what a crash left) are claimed from the store when due. A
//! failed attempt is tried again as the subscription's delivery policy says; once the
//! retries are spent, or at once for an endpoint that does not exist, the message goes
//! to the subscription's dead-letter queue (its `RedrivePolicy`), else it is dropped
//! with a log line, as on SNS. How each attempt ended is written back in batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::http::{HttpFailure, HttpSender};
use super::message::Kind;
use super::retry::RetryPolicy;
use super::{Job, Live, Protocol, Settlement, TopicService};
use crate::delivery::{Delivery, DeliveryError, Targets};
use crate::invoke::{BoxFuture, Origin};
use crate::sources::{EventSource, SourceContext};
use crate::timefmt::now_ms;

/// Deliveries attempted at once.
const MAX_IN_FLIGHT: usize = 256;
/// The longest the deliverer sleeps before it looks for due deliveries again.
const IDLE_CLAIM: Duration = Duration::from_secs(1);
/// How long shutdown waits for attempts under way.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// When a dead-letter queue could not take a message, how long before it is tried again.
const DEAD_LETTER_RETRY_MS: u64 = 20_000;

pub struct Fanout {
    topics: Arc<TopicService>,
    http: HttpSender,
}

impl Fanout {
    pub fn new(topics: Arc<TopicService>) -> Arc<Self> {
        Arc::new(Self {
            topics,
            http: HttpSender::new(),
        })
    }
}

impl EventSource for Fanout {
    fn name(&self) -> String {
        "topics".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(context).await })
    }
}

/// How an attempt ended.
struct Ended {
    settlement: Settlement,
    /// A FIFO delivery: its lane's next may now be claimed.
    laned: bool,
}

impl Fanout {
    async fn serve(self: Arc<Self>, context: SourceContext) {
        let Some(mut handoff) = self.topics.take_handoff() else {
            tracing::error!("the topic deliverer was started twice");
            return;
        };
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
        let mut attempts = JoinSet::new();
        let mut claim_now = true;
        let mut next_claim = tokio::time::Instant::now();
        loop {
            if claim_now || tokio::time::Instant::now() >= next_claim {
                claim_now = false;
                next_claim = self
                    .claim_and_start(&context, &permits, &ended_tx, &mut attempts)
                    .await;
            }
            tokio::select! {
                jobs = handoff.recv() => match jobs {
                    Some(jobs) if jobs.is_empty() => claim_now = true,
                    Some(jobs) => {
                        for job in jobs {
                            self.start(job, &context, &permits, &ended_tx, &mut attempts);
                        }
                    }
                    None => break,
                },
                Some(ended) = ended_rx.recv() => {
                    let mut batch = vec![ended];
                    while let Ok(more) = ended_rx.try_recv() {
                        batch.push(more);
                    }
                    // A lane freed or a retry scheduled: look for what is due now.
                    claim_now |= self.settle(batch).await;
                }
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                () = tokio::time::sleep_until(next_claim) => {}
                () = context.shutdown.started() => break,
            }
        }
        // Let attempts under way end (their deliveries are claimed again at the next
        // start if they do not), and write back how they ended.
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        attempts.abort_all();
        let mut batch = Vec::new();
        while let Ok(ended) = ended_rx.try_recv() {
            batch.push(ended);
        }
        if !batch.is_empty() {
            self.settle(batch).await;
        }
    }

    /// Claims due deliveries (as many as there are free slots) and starts them; answers
    /// when to look again.
    async fn claim_and_start(
        &self,
        context: &SourceContext,
        permits: &Arc<Semaphore>,
        ended: &mpsc::UnboundedSender<Ended>,
        attempts: &mut JoinSet<()>,
    ) -> tokio::time::Instant {
        let idle = tokio::time::Instant::now() + IDLE_CLAIM;
        let free = permits.available_permits();
        if free == 0 {
            return idle;
        }
        let topics = self.topics.clone();
        let claimed = tokio::task::spawn_blocking(move || {
            let jobs = topics.claim(free)?;
            let next = topics.next_due()?;
            Ok::<_, super::TopicError>((jobs, next))
        })
        .await;
        match claimed {
            Ok(Ok((jobs, next))) => {
                let full = jobs.len() == free;
                for job in jobs {
                    self.start(job, context, permits, ended, attempts);
                }
                if full {
                    return tokio::time::Instant::now() + Duration::from_millis(10);
                }
                match next {
                    Some(due) => {
                        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                        (tokio::time::Instant::now() + wait).min(idle)
                    }
                    None => idle,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "claiming topic deliveries failed; trying again");
                idle
            }
            Err(e) => {
                tracing::error!(error = %e, "the topic claim task failed");
                idle
            }
        }
    }

    /// Starts one attempt (it waits for a free slot).
    fn start(
        &self,
        job: Job,
        context: &SourceContext,
        permits: &Arc<Semaphore>,
        ended: &mpsc::UnboundedSender<Ended>,
        attempts: &mut JoinSet<()>,
    ) {
        let permits = permits.clone();
        let ended = ended.clone();
        let topics = self.topics.clone();
        let http = self.http.clone();
        let targets = context.delivery.clone();
        let span = tracing::info_span!(
            "topic_delivery",
            subscription = %job.subscription,
            message_id = %job.message.message_id,
            attempt = job.attempts + 1,
        );
        attempts.spawn(tracing::Instrument::instrument(
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let laned = job.lane.is_some();
                let settlement = attempt(&topics, &http, &targets, job).await;
                let _ = ended.send(Ended { settlement, laned });
            },
            span,
        ));
    }

    /// Writes back a batch of endings; answers whether something may be claimable now.
    async fn settle(&self, batch: Vec<Ended>) -> bool {
        let reclaim = batch
            .iter()
            .any(|e| e.laned || matches!(e.settlement, Settlement::Retry { .. }));
        let settlements: Vec<Settlement> = batch.into_iter().map(|e| e.settlement).collect();
        let topics = self.topics.clone();
        let mut delay = Duration::from_millis(50);
        loop {
            let batch = settlements.clone();
            let topics = topics.clone();
            match tokio::task::spawn_blocking(move || topics.settle(&batch)).await {
                Ok(Ok(())) => return reclaim,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "writing back topic deliveries failed; trying again")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the topic settle task failed");
                    return reclaim;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// Why an attempt failed.
struct Failure {
    /// The endpoint does not exist or refused the message for good: no retry.
    permanent: bool,
    reason: String,
}

fn from_delivery(e: DeliveryError) -> Failure {
    let permanent = !matches!(e, DeliveryError::Failed { .. });
    Failure {
        permanent,
        reason: e.to_string(),
    }
}

/// One attempt at one delivery, and what becomes of it.
async fn attempt(
    topics: &TopicService,
    http: &HttpSender,
    targets: &Targets,
    job: Job,
) -> Settlement {
    let Some(live) = topics.live(&job.subscription) else {
        // Unsubscribed (or its topic deleted) since: nothing to deliver to.
        return Settlement::Done { id: job.id };
    };
    let urls = topics.urls();
    let message = &job.message;
    let record = &live.record;
    let result = match record.protocol {
        Protocol::Lambda => {
            let body = message.lambda_event(&record.arn, &urls);
            let delivery = Delivery::new(body)
                .with_trace(message.trace_id.clone())
                .with_origin(Origin::EventSource(record.arn.clone()));
            targets
                .deliver(&record.endpoint, delivery)
                .await
                .map_err(from_delivery)
        }
        Protocol::Sqs => targets
            .deliver(
                &record.endpoint,
                queue_delivery(&live, &job, &urls, &record.endpoint),
            )
            .await
            .map_err(from_delivery),
        Protocol::Http | Protocol::Https => {
            let policy = topics.http_policy(&live);
            let (headers, body) = http_request(&live, &job, &urls, &policy.content_type);
            http.post(&record.endpoint, &headers, body)
                .await
                .map_err(|failure| Failure {
                    permanent: matches!(failure, HttpFailure::Status(s) if (400..500).contains(&s) && s != 429),
                    reason: failure.to_string(),
                })
        }
    };
    let failure = match result {
        Ok(()) => {
            topics.count_delivery(record.protocol, "delivered");
            return Settlement::Done { id: job.id };
        }
        Err(failure) => failure,
    };
    let tried = job.attempts + 1;
    let policy = if record.protocol.is_http() {
        topics.http_policy(&live).retry
    } else {
        RetryPolicy::MANAGED
    };
    if let Some(delay) = policy.delay_ms(tried).filter(|_| !failure.permanent) {
        tracing::debug!(reason = %failure.reason, retry_in_ms = delay, "delivery failed; it will be tried again");
        topics.count_delivery(record.protocol, "retried");
        return Settlement::Retry {
            id: job.id,
            attempts: tried,
            due_ms: now_ms() + delay,
        };
    }
    if matches!(message.kind, Kind::SubscriptionConfirmation { .. }) {
        tracing::warn!(reason = %failure.reason, "the subscription confirmation request could not be delivered");
        topics.count_delivery(record.protocol, "dropped");
        return Settlement::Done { id: job.id };
    }
    let (settlement, outcome) = dead_letter(targets, &live, &job, &urls, &failure).await;
    topics.count_delivery(record.protocol, outcome);
    settlement
}

/// Sends an undeliverable message to the subscription's dead-letter queue, if it has
/// one; without one it is dropped (as on SNS). Answers the outcome's metric label too.
async fn dead_letter(
    targets: &Targets,
    live: &Live,
    job: &Job,
    urls: &super::message::Urls,
    failure: &Failure,
) -> (Settlement, &'static str) {
    let Some(queue) = &live.compiled.dead_letter else {
        tracing::warn!(reason = %failure.reason, attempts = job.attempts + 1, "a topic message could not be delivered and the subscription has no dead-letter queue: it is dropped");
        return (Settlement::Done { id: job.id }, "dropped");
    };
    match targets
        .deliver(queue, queue_delivery(live, job, urls, queue))
        .await
    {
        Ok(()) => {
            tracing::info!(reason = %failure.reason, dead_letter_queue = %queue, "an undeliverable topic message went to the dead-letter queue");
            (Settlement::Done { id: job.id }, "dead_lettered")
        }
        Err(e @ DeliveryError::Failed { .. }) => {
            tracing::warn!(error = %e, "the dead-letter queue did not take the message; trying again");
            (
                Settlement::Retry {
                    id: job.id,
                    attempts: job.attempts,
                    due_ms: now_ms() + DEAD_LETTER_RETRY_MS,
                },
                "retried",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, reason = %failure.reason, "an undeliverable topic message could not go to its dead-letter queue: it is dropped");
            (Settlement::Done { id: job.id }, "dropped")
        }
    }
}

/// The message `queue` gets: SNS's envelope, or with raw delivery the message itself
/// with its attributes as the queue message's.
fn queue_delivery(live: &Live, job: &Job, urls: &super::message::Urls, queue: &str) -> Delivery {
    let message = &job.message;
    let record = &live.record;
    let (body, attributes) = if live.compiled.raw {
        (
            message.message_for(Protocol::Sqs).to_string(),
            message.attributes.clone(),
        )
    } else {
        (
            message.envelope(Protocol::Sqs, &record.arn, urls),
            BTreeMap::new(),
        )
    };
    let mut delivery = Delivery::new(body)
        .with_attributes(attributes)
        .with_trace(message.trace_id.clone());
    // A FIFO topic's message keeps its group and deduplication id in a FIFO queue.
    let fifo_queue = crate::arn::Arn::parse(queue)
        .ok()
        .and_then(|arn| arn.queue_name().ok().map(crate::queues::is_fifo_name))
        .unwrap_or(false);
    if message.sequence_number.is_some() && fifo_queue {
        delivery.group_id = message.group_id.clone();
        delivery.dedup_id = message.dedup_id.clone();
    }
    delivery
}

/// The headers and body of a POST to an HTTP endpoint.
fn http_request(
    live: &Live,
    job: &Job,
    urls: &super::message::Urls,
    content_type: &str,
) -> (Vec<(&'static str, String)>, String) {
    let message = &job.message;
    let record = &live.record;
    let confirmation = matches!(message.kind, Kind::SubscriptionConfirmation { .. });
    let mut headers = vec![
        (
            "x-amz-sns-message-type",
            if confirmation {
                "SubscriptionConfirmation".to_string()
            } else {
                "Notification".to_string()
            },
        ),
        ("x-amz-sns-message-id", message.message_id.clone()),
        ("x-amz-sns-topic-arn", message.topic_arn.clone()),
        (
            "user-agent",
            "Amazon Simple Notification Service Agent".into(),
        ),
    ];
    if confirmation {
        headers.push(("content-type", "text/plain; charset=UTF-8".into()));
        return (
            headers,
            message.envelope(record.protocol, &record.arn, urls),
        );
    }
    headers.push(("x-amz-sns-subscription-arn", record.arn.clone()));
    headers.push(("content-type", content_type.to_string()));
    if live.compiled.raw {
        headers.push(("x-amz-sns-rawdelivery", "true".into()));
        (headers, message.message_for(record.protocol).to_string())
    } else {
        (
            headers,
            message.envelope(record.protocol, &record.arn, urls),
        )
    }
}
