//! Topics: the SNS-compatible push source. Owns topics, their subscriptions and tags,
//! publishing (validation, filter policies, FIFO deduplication and sequence numbers) and
//! the durable outbox of deliveries that [`fanout::Fanout`] works through.
//!
//! - `attributes.rs`: the attributes topics and subscriptions take, and their answers;
//! - `message.rs`: a published message and its delivered shapes (envelope, Lambda event);
//! - `retry.rs`: delivery policies (when a failed delivery is tried again);
//! - `store.rs`: the tables; `fanout.rs`: the event source that delivers; `http.rs`: the
//!   POST to an HTTP endpoint.
//!
//! Topics and subscriptions are kept in memory (filter policies compiled) and written
//! through to the store; a publish reads them without touching the database, then
//! commits the message and one delivery per matching subscription in one transaction
//! before it is acknowledged. Deliveries of standard topics are handed to the deliverer
//! at once; those of FIFO topics are claimed in order, one at a time per subscription
//! and message group.

pub mod attributes;
pub mod fanout;
mod http;
pub mod message;
pub mod retry;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::arn::Arn;
use crate::function::ArnContext;
use crate::pattern::AttributeValue;
use crate::queues::Attribute;
use crate::timefmt::now_ms;
use attributes::Compiled;
use message::{Kind, Published, Urls};
pub use store::Job;
use store::{NewDelivery, TopicStore};

/// The largest message, attributes and subject included: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// The FIFO deduplication window.
const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// A page of `ListTopics` and `ListSubscriptions`.
const PAGE: usize = 100;
/// The most tags a topic has.
const MAX_TAGS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// No such topic or subscription (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// A tagged resource that does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// A message attribute's value is not valid for its type.
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    TagLimitExceeded(String),
    #[error("The batch request contains entries with the same Id.")]
    BatchEntryIdsNotDistinct,
    #[error("The batch request doesn't contain any entries.")]
    EmptyBatchRequest,
    #[error("The batch request contains more entries than permissible.")]
    TooManyEntriesInBatchRequest,
    #[error("The Id of a batch entry in a batch request doesn't abide by the specification.")]
    InvalidBatchEntryId,
    #[error("The length of all the messages put together is more than the limit.")]
    BatchRequestTooLong,
    #[error("topic store failure: {0}")]
    Backend(String),
}

fn invalid(text: impl Into<String>) -> TopicError {
    TopicError::InvalidParameter(text.into())
}

/// A subscription protocol this server delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Lambda,
    Sqs,
    Http,
    Https,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Lambda => "lambda",
            Self::Sqs => "sqs",
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }

    /// The protocol a `Subscribe` names; SNS's other protocols (email, sms, application,
    /// firehose) are refused with a reason.
    fn parse(name: &str) -> Result<Self, TopicError> {
        Ok(match name {
            "lambda" => Self::Lambda,
            "sqs" => Self::Sqs,
            "http" => Self::Http,
            "https" => Self::Https,
            "email" | "email-json" | "sms" | "application" | "firehose" => {
                return Err(invalid(format!(
                    "Invalid parameter: Protocol Reason: the {name} protocol is not supported by this server (lambda, sqs, http and https are)"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "Invalid parameter: Amazon SNS does not support this protocol string: {other}"
                )));
            }
        })
    }
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub arn: String,
    pub name: String,
    pub region: String,
    pub fifo: bool,
    /// The attributes that were set (`FifoTopic` is [`Self::fifo`]).
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: u64,
}

impl Topic {
    fn flag(&self, name: &str) -> bool {
        self.attributes
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub arn: String,
    pub topic_arn: String,
    pub protocol: Protocol,
    pub endpoint: String,
    pub attributes: BTreeMap<String, String>,
    pub confirmed: bool,
    /// The token an HTTP endpoint confirms with.
    pub token: Option<String>,
    pub created_ms: u64,
}

/// A subscription with its attributes compiled.
#[derive(Debug, Clone)]
pub struct Live {
    pub record: Subscription,
    pub compiled: Compiled,
}

impl Live {
    fn new(record: Subscription) -> Arc<Self> {
        let compiled = attributes::compile(&record.attributes);
        Arc::new(Self { record, compiled })
    }
}

/// One row of `ListSubscriptions`.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The subscription's ARN, or `PendingConfirmation`.
    pub arn: String,
    pub protocol: Protocol,
    pub endpoint: String,
    pub topic_arn: String,
}

/// A message to publish, as `Publish` or one `PublishBatch` entry gives it.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    pub message: Option<String>,
    pub subject: Option<String>,
    pub structure: Option<String>,
    pub attributes: BTreeMap<String, Attribute>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub trace_id: Option<String>,
}

/// A published message's id, and its sequence number in a FIFO topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub sequence_number: Option<String>,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Topic>,
    /// By ARN (`<topic arn>:<id>`, so a topic's subscriptions are one range).
    subscriptions: BTreeMap<String, Arc<Live>>,
}

impl State {
    fn topic_subscriptions<'a>(&'a self, topic_arn: &str) -> impl Iterator<Item = &'a Arc<Live>> {
        let from = format!("{topic_arn}:");
        self.subscriptions
            .range(from.clone()..)
            .take_while(move |(arn, _)| arn.starts_with(&from))
            .map(|(_, live)| live)
    }

    fn topic(&self, arn: &str) -> Result<&Topic, TopicError> {
        self.topics
            .get(arn)
            .ok_or_else(|| TopicError::NotFound("Topic does not exist".into()))
    }
}

pub struct TopicService {
    store: TopicStore,
    metrics: Arc<crate::metrics::Metrics>,
    state: RwLock<State>,
    account: String,
    /// The server's public URL, for the links in messages (set once it listens).
    urls: OnceLock<Urls>,
    /// Jobs for the deliverer (an empty batch asks it to claim).
    handoff: mpsc::UnboundedSender<Vec<Job>>,
    handoff_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Job>>>>,
    /// The last FIFO sequence number given.
    sequence: AtomicU64,
    /// When FIFO deduplication keys were last expired.
    dedup_swept: AtomicU64,
}

impl TopicService {
    pub fn open(
        path: &Path,
        account: &str,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Self>, TopicError> {
        let store = TopicStore::open(path)?;
        let mut state = State::default();
        for topic in store.topics()? {
            state.topics.insert(topic.arn.clone(), topic);
        }
        for subscription in store.subscriptions()? {
            state
                .subscriptions
                .insert(subscription.arn.clone(), Live::new(subscription));
        }
        let (handoff, rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            store,
            metrics,
            state: RwLock::new(state),
            account: account.to_string(),
            urls: OnceLock::new(),
            handoff,
            handoff_rx: Mutex::new(Some(rx)),
            sequence: AtomicU64::new(now_ms() * 1_000_000),
            dedup_swept: AtomicU64::new(0),
        }))
    }

    /// Where links in messages point (`http://host:port`).
    pub fn set_public_url(&self, base: String) {
        let _ = self.urls.set(Urls { base });
    }

    pub(crate) fn urls(&self) -> Urls {
        self.urls.get().cloned().unwrap_or(Urls {
            base: "http://127.0.0.1:9600".into(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The topic ARN a request names: SNS's, in this account.
    fn topic_arn(&self, raw: &str) -> Result<String, TopicError> {
        let arn = Arn::parse(raw).map_err(|_| invalid("Invalid parameter: TopicArn"))?;
        if arn.service != "sns"
            || arn.resource.contains(':')
            || crate::region::validate_region(&arn.region).is_err()
        {
            return Err(invalid("Invalid parameter: TopicArn"));
        }
        if arn.account != self.account {
            return Err(TopicError::NotFound("Topic does not exist".into()));
        }
        Ok(raw.to_string())
    }

    // ---- topics ----

    /// Creates a topic in `region` (an existing one with the same attributes and tags is
    /// returned as it is).
    pub fn create_topic(
        &self,
        region: &ArnContext,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<String, TopicError> {
        let fifo = validate_topic_name(name)?;
        let fifo_flag = attributes
            .get("FifoTopic")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if fifo != fifo_flag {
            return Err(invalid(
                "Invalid parameter: Fifo Topic names must end with .fifo and they must have FifoTopic attribute set to true",
            ));
        }
        for (key, value) in &attributes {
            attributes::check_topic_attribute(key, value, fifo, true)?;
        }
        validate_tags(&tags)?;
        let arn = format!("arn:aws:sns:{}:{}:{name}", region.region, self.account);
        let mut state = self.write();
        if let Some(existing) = state.topics.get(&arn) {
            let differs = attributes
                .iter()
                .filter(|(k, _)| k.as_str() != "FifoTopic")
                .any(|(k, v)| existing.attributes.get(k) != Some(v));
            if differs {
                return Err(invalid(
                    "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
                ));
            }
            if !tags.is_empty() && tags != existing.tags {
                return Err(invalid(
                    "Invalid parameter: Tags Reason: Topic already exists with different tags",
                ));
            }
            return Ok(arn);
        }
        let topic = Topic {
            arn: arn.clone(),
            name: name.to_string(),
            region: region.region.clone(),
            fifo,
            attributes: attributes
                .into_iter()
                .filter(|(k, _)| k != "FifoTopic")
                .collect(),
            tags,
            created_ms: now_ms(),
        };
        self.store.put_topic(&topic)?;
        state.topics.insert(arn.clone(), topic);
        Ok(arn)
    }

    /// Deletes a topic and its subscriptions (deleting one that is gone is not an error,
    /// as on SNS).
    pub fn delete_topic(&self, raw: &str) -> Result<(), TopicError> {
        let arn = self.topic_arn(raw)?;
        let mut state = self.write();
        if !state.topics.contains_key(&arn) {
            return Ok(());
        }
        self.store.delete_topic(&arn)?;
        state.topics.remove(&arn);
        let subscriptions: Vec<String> = state
            .topic_subscriptions(&arn)
            .map(|l| l.record.arn.clone())
            .collect();
        for subscription in subscriptions {
            state.subscriptions.remove(&subscription);
        }
        Ok(())
    }

    /// A page of the region's topic ARNs, and the token of the next.
    pub fn list_topics(
        &self,
        region: &str,
        next_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), TopicError> {
        let state = self.read();
        let topics = state
            .topics
            .values()
            .filter(|t| t.region == region)
            .map(|t| t.arn.clone());
        page(topics, next_token)
    }

    pub fn topic_attributes(&self, raw: &str) -> Result<BTreeMap<String, String>, TopicError> {
        let arn = self.topic_arn(raw)?;
        let state = self.read();
        let topic = state.topic(&arn)?;
        let (confirmed, pending) = state.topic_subscriptions(&arn).fold((0, 0), |(c, p), l| {
            if l.record.confirmed {
                (c + 1, p)
            } else {
                (c, p + 1)
            }
        });
        Ok(attributes::topic_attributes(
            topic,
            &self.account,
            confirmed,
            pending,
        ))
    }

    pub fn set_topic_attribute(
        &self,
        raw: &str,
        name: &str,
        value: &str,
    ) -> Result<(), TopicError> {
        let arn = self.topic_arn(raw)?;
        let mut state = self.write();
        let topic = state.topic(&arn)?;
        attributes::check_topic_attribute(name, value, topic.fifo, false)?;
        let mut topic = topic.clone();
        topic.attributes.insert(name.to_string(), value.to_string());
        self.store.put_topic(&topic)?;
        state.topics.insert(arn, topic);
        Ok(())
    }

    // ---- tags ----

    fn tagged_topic(&self, raw: &str) -> Result<String, TopicError> {
        let missing = || TopicError::ResourceNotFound("Resource does not exist".into());
        let arn = self.topic_arn(raw).map_err(|e| match e {
            TopicError::NotFound(_) => missing(),
            other => other,
        })?;
        if self.read().topics.contains_key(&arn) {
            Ok(arn)
        } else {
            Err(missing())
        }
    }

    pub fn tags(&self, raw: &str) -> Result<BTreeMap<String, String>, TopicError> {
        let arn = self.tagged_topic(raw)?;
        Ok(self.read().topics[&arn].tags.clone())
    }

    pub fn tag(&self, raw: &str, tags: BTreeMap<String, String>) -> Result<(), TopicError> {
        validate_tags(&tags)?;
        let arn = self.tagged_topic(raw)?;
        let mut state = self.write();
        let mut topic = state.topic(&arn)?.clone();
        topic.tags.extend(tags);
        if topic.tags.len() > MAX_TAGS {
            return Err(TopicError::TagLimitExceeded(
                "Could not complete request: tag quota of per resource exceeded".into(),
            ));
        }
        self.store.put_topic(&topic)?;
        state.topics.insert(arn, topic);
        Ok(())
    }

    pub fn untag(&self, raw: &str, keys: &[String]) -> Result<(), TopicError> {
        let arn = self.tagged_topic(raw)?;
        let mut state = self.write();
        let mut topic = state.topic(&arn)?.clone();
        for key in keys {
            topic.tags.remove(key);
        }
        self.store.put_topic(&topic)?;
        state.topics.insert(arn, topic);
        Ok(())
    }

    // ---- subscriptions ----

    /// Subscribes an endpoint: functions and queues are confirmed at once, HTTP endpoints
    /// are sent a confirmation request. Answers the subscription's ARN, or `pending
    /// confirmation` (unless `return_arn`) while it waits for one.
    pub fn subscribe(
        &self,
        topic_raw: &str,
        protocol: &str,
        endpoint: Option<&str>,
        attributes: BTreeMap<String, String>,
        return_arn: bool,
    ) -> Result<String, TopicError> {
        let topic_arn = self.topic_arn(topic_raw)?;
        let protocol = Protocol::parse(protocol)?;
        let endpoint =
            endpoint.ok_or_else(|| invalid("Invalid parameter: Endpoint Reason: missing"))?;
        let topic_fifo = self.read().topic(&topic_arn)?.fifo;
        self.check_endpoint(protocol, endpoint, topic_fifo)?;
        for (name, value) in &attributes {
            attributes::check_subscription_attribute(
                name,
                value,
                protocol,
                topic_fifo,
                &attributes,
            )?;
        }
        let mut state = self.write();
        state.topic(&topic_arn)?;
        if let Some(existing) = state
            .topic_subscriptions(&topic_arn)
            .find(|l| l.record.protocol == protocol && l.record.endpoint == endpoint)
        {
            let same = attributes
                .iter()
                .all(|(k, v)| existing.record.attributes.get(k) == Some(v));
            if !same {
                return Err(invalid(
                    "Invalid parameter: Attributes Reason: Subscription already exists with different attributes",
                ));
            }
            return Ok(shown_arn(&existing.record, return_arn));
        }
        let http = protocol.is_http();
        let subscription = Subscription {
            arn: format!("{topic_arn}:{}", uuid::Uuid::new_v4()),
            topic_arn: topic_arn.clone(),
            protocol,
            endpoint: endpoint.to_string(),
            attributes,
            confirmed: !http,
            token: http.then(new_token),
            created_ms: now_ms(),
        };
        self.store.put_subscription(&subscription)?;
        let shown = shown_arn(&subscription, return_arn);
        let token = subscription.token.clone();
        let arn = subscription.arn.clone();
        state
            .subscriptions
            .insert(arn.clone(), Live::new(subscription));
        drop(state);
        if let Some(token) = token {
            self.request_confirmation(&topic_arn, &arn, token)?;
        }
        Ok(shown)
    }

    /// Sends an HTTP endpoint the request to confirm its subscription.
    fn request_confirmation(
        &self,
        topic_arn: &str,
        subscription: &str,
        token: String,
    ) -> Result<(), TopicError> {
        let published = Published {
            kind: Kind::SubscriptionConfirmation { token },
            message_id: uuid::Uuid::new_v4().to_string(),
            topic_arn: topic_arn.to_string(),
            subject: None,
            message: message::confirmation_text(topic_arn),
            per_protocol: BTreeMap::new(),
            attributes: BTreeMap::new(),
            timestamp_ms: now_ms(),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            trace_id: None,
        };
        let delivery = NewDelivery {
            subscription: subscription.to_string(),
            lane: None,
            claimed: true,
        };
        let jobs = self
            .store
            .publish(vec![(published, vec![delivery], None)], now_ms())?;
        let _ = self.handoff.send(jobs);
        Ok(())
    }

    fn check_endpoint(
        &self,
        protocol: Protocol,
        endpoint: &str,
        topic_fifo: bool,
    ) -> Result<(), TopicError> {
        let bad = |reason: &str| invalid(format!("Invalid parameter: Endpoint Reason: {reason}"));
        if topic_fifo && protocol != Protocol::Sqs {
            return Err(invalid(format!(
                "Invalid parameter: Invalid protocol type: {}",
                protocol.name()
            )));
        }
        match protocol {
            Protocol::Lambda => {
                let arn = Arn::parse(endpoint).map_err(|_| bad("not a function ARN"))?;
                arn.function_parts()
                    .map_err(|_| bad("not a function ARN"))?;
                if arn.account != self.account {
                    return Err(bad("the function is in another account"));
                }
            }
            Protocol::Sqs => {
                let arn = Arn::parse(endpoint).map_err(|_| bad("not an SQS queue ARN"))?;
                let name = arn.queue_name().map_err(|_| bad("not an SQS queue ARN"))?;
                if arn.account != self.account {
                    return Err(bad("the queue is in another account"));
                }
                if !topic_fifo && crate::queues::is_fifo_name(name) {
                    return Err(bad(
                        "FIFO SQS Queues can not be subscribed to standard SNS topics",
                    ));
                }
            }
            Protocol::Http | Protocol::Https => {
                http::parse_endpoint(endpoint, protocol.name()).map_err(|e| bad(&e))?;
            }
        }
        Ok(())
    }

    /// Confirms a pending subscription by its token; answers its ARN.
    pub fn confirm(&self, topic_raw: &str, token: &str) -> Result<String, TopicError> {
        let topic_arn = self.topic_arn(topic_raw)?;
        let mut state = self.write();
        state.topic(&topic_arn)?;
        let live = state
            .topic_subscriptions(&topic_arn)
            .find(|l| l.record.token.as_deref() == Some(token))
            .cloned()
            .ok_or_else(|| invalid("Invalid token"))?;
        if !live.record.confirmed {
            let mut record = live.record.clone();
            record.confirmed = true;
            self.store.put_subscription(&record)?;
            state
                .subscriptions
                .insert(record.arn.clone(), Live::new(record));
        }
        Ok(live.record.arn.clone())
    }

    fn subscription_arn(&self, raw: &str) -> Result<String, TopicError> {
        let arn = Arn::parse(raw).map_err(|_| invalid("Invalid parameter: SubscriptionArn"))?;
        if arn.service != "sns" || arn.resource.split(':').count() != 2 {
            return Err(invalid("Invalid parameter: SubscriptionArn"));
        }
        Ok(raw.to_string())
    }

    pub fn unsubscribe(&self, raw: &str) -> Result<(), TopicError> {
        let arn = self.subscription_arn(raw)?;
        let mut state = self.write();
        if !state.subscriptions.contains_key(&arn) {
            return Err(TopicError::NotFound("Subscription does not exist".into()));
        }
        self.store.delete_subscription(&arn)?;
        state.subscriptions.remove(&arn);
        Ok(())
    }

    /// A page of subscriptions: of one topic, or all of the region's.
    pub fn list_subscriptions(
        &self,
        topic_raw: Option<&str>,
        region: &str,
        next_token: Option<&str>,
    ) -> Result<(Vec<Listed>, Option<String>), TopicError> {
        let state = self.read();
        let listed = |l: &Arc<Live>| Listed {
            arn: if l.record.confirmed {
                l.record.arn.clone()
            } else {
                "PendingConfirmation".into()
            },
            protocol: l.record.protocol,
            endpoint: l.record.endpoint.clone(),
            topic_arn: l.record.topic_arn.clone(),
        };
        let rows: Vec<(String, Listed)> = match topic_raw {
            Some(raw) => {
                let topic_arn = self.topic_arn(raw)?;
                state.topic(&topic_arn)?;
                state
                    .topic_subscriptions(&topic_arn)
                    .map(|l| (l.record.arn.clone(), listed(l)))
                    .collect()
            }
            None => state
                .subscriptions
                .values()
                .filter(|l| Arn::parse(&l.record.arn).is_ok_and(|a| a.region == region))
                .map(|l| (l.record.arn.clone(), listed(l)))
                .collect(),
        };
        let start = match next_token {
            None => 0,
            Some(token) => rows
                .iter()
                .position(|(arn, _)| arn.as_str() > token)
                .unwrap_or(rows.len()),
        };
        let end = (start + PAGE).min(rows.len());
        let next = (end < rows.len()).then(|| rows[end - 1].0.clone());
        Ok((
            rows.into_iter()
                .skip(start)
                .take(end - start)
                .map(|(_, l)| l)
                .collect(),
            next,
        ))
    }

    pub fn subscription_attributes(
        &self,
        raw: &str,
    ) -> Result<BTreeMap<String, String>, TopicError> {
        let arn = self.subscription_arn(raw)?;
        let state = self.read();
        let live = state
            .subscriptions
            .get(&arn)
            .ok_or_else(|| TopicError::NotFound("Subscription does not exist".into()))?;
        Ok(attributes::subscription_attributes(
            &live.record,
            state.topics.get(&live.record.topic_arn),
            &self.account,
        ))
    }

    pub fn set_subscription_attribute(
        &self,
        raw: &str,
        name: &str,
        value: &str,
    ) -> Result<(), TopicError> {
        let arn = self.subscription_arn(raw)?;
        let mut state = self.write();
        let live = state
            .subscriptions
            .get(&arn)
            .ok_or_else(|| TopicError::NotFound("Subscription does not exist".into()))?;
        let topic_fifo = state
            .topics
            .get(&live.record.topic_arn)
            .is_some_and(|t| t.fifo);
        let mut record = live.record.clone();
        attributes::check_subscription_attribute(
            name,
            value,
            record.protocol,
            topic_fifo,
            &record.attributes,
        )?;
        record
            .attributes
            .insert(name.to_string(), value.to_string());
        self.store.put_subscription(&record)?;
        state.subscriptions.insert(arn, Live::new(record));
        Ok(())
    }

    /// The subscription a delivery is for, if it still exists.
    pub(crate) fn live(&self, arn: &str) -> Option<Arc<Live>> {
        self.read().subscriptions.get(arn).cloned()
    }

    /// The HTTP delivery policy of a subscription: its own over its topic's.
    pub(crate) fn http_policy(&self, live: &Live) -> retry::HttpPolicy {
        let base = self
            .read()
            .topics
            .get(&live.record.topic_arn)
            .map(attributes::topic_http_policy)
            .unwrap_or_default();
        live.compiled
            .delivery_policy
            .as_deref()
            .and_then(|p| retry::HttpPolicy::subscription(p, &base).ok())
            .unwrap_or(base)
    }

    // ---- publishing ----

    /// Publishes messages to a topic: each is checked on its own (its error in its
    /// place), the good ones committed together with their deliveries.
    pub fn publish(
        &self,
        topic_raw: &str,
        publications: Vec<Publication>,
    ) -> Result<Vec<Result<Receipt, TopicError>>, TopicError> {
        let topic_arn = self.topic_arn(topic_raw)?;
        let now = now_ms();
        let topic = self.read().topic(&topic_arn)?.clone();
        let mut results = Vec::with_capacity(publications.len());
        let mut batch = Vec::new();
        let mut seen: HashMap<String, Receipt> = HashMap::new();
        for publication in publications {
            let published = match self.prepare(&topic, publication, now) {
                Ok(p) => p,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let receipt = Receipt {
                message_id: published.message_id.clone(),
                sequence_number: published.sequence_number.clone(),
            };
            let dedup = match dedup_key(&topic, &published) {
                Some(key) => {
                    if let Some(earlier) = seen.get(&key) {
                        results.push(Ok(earlier.clone()));
                        continue;
                    }
                    if let Some((message_id, sequence)) = self.store.duplicate_of(
                        &topic.arn,
                        &key,
                        now.saturating_sub(DEDUP_WINDOW_MS),
                    )? {
                        results.push(Ok(Receipt {
                            message_id,
                            sequence_number: Some(sequence),
                        }));
                        continue;
                    }
                    seen.insert(key.clone(), receipt.clone());
                    Some((topic.arn.clone(), key))
                }
                None => None,
            };
            let deliveries = self.matching(&topic, &published);
            self.metrics.inc(
                crate::metrics::names::TOPIC_PUBLISHED,
                &[("topic", &topic.name)],
            );
            results.push(Ok(receipt));
            batch.push((published, deliveries, dedup));
        }
        let deliveries: usize = batch.iter().map(|(_, d, _)| d.len()).sum();
        if !batch.is_empty() {
            let jobs = self.store.publish(batch, now)?;
            // FIFO deliveries are claimed in order (an empty hand-over asks for a claim);
            // the others are delivered at once.
            if !jobs.is_empty() || (topic.fifo && deliveries > 0) {
                let _ = self.handoff.send(jobs);
            }
        }
        if topic.fifo {
            self.expire_dedup(now);
        }
        Ok(results)
    }

    /// Forgets FIFO deduplication keys past the window, at most once a minute.
    fn expire_dedup(&self, now: u64) {
        let last = self.dedup_swept.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 60_000
            || self
                .dedup_swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.store.expire_dedup(now.saturating_sub(DEDUP_WINDOW_MS)) {
            tracing::warn!(error = %e, "expiring topic deduplication keys failed");
        }
    }

    /// The deliveries of a message: one per confirmed subscription whose filter policy
    /// matches it.
    fn matching(&self, topic: &Topic, published: &Published) -> Vec<NewDelivery> {
        let state = self.read();
        state
            .topic_subscriptions(&topic.arn)
            .filter(|l| l.record.confirmed)
            .filter(|l| match &l.compiled.filter {
                None => true,
                Some(filter) => filter.matches_message(
                    published.message_for(l.record.protocol),
                    published.attributes.iter().map(|(name, a)| {
                        (
                            name.as_str(),
                            AttributeValue {
                                data_type: &a.data_type,
                                value: a.string_value.as_deref().unwrap_or_default(),
                            },
                        )
                    }),
                ),
            })
            .map(|l| {
                let lane = published
                    .group_id
                    .as_ref()
                    .filter(|_| topic.fifo)
                    .map(|g| format!("{}\n{g}", l.record.arn));
                NewDelivery {
                    subscription: l.record.arn.clone(),
                    claimed: lane.is_none(),
                    lane,
                }
            })
            .collect()
    }

    /// Checks a publication against the topic and makes the message to keep.
    fn prepare(
        &self,
        topic: &Topic,
        publication: Publication,
        now: u64,
    ) -> Result<Published, TopicError> {
        let message = publication
            .message
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("Invalid parameter: Empty message"))?;
        let (message, per_protocol) = match publication.structure.as_deref() {
            None => (message, BTreeMap::new()),
            Some("json") => split_structure(&message)?,
            Some(_) => return Err(invalid("Invalid parameter: MessageStructure")),
        };
        if publication.subject.as_ref().is_some_and(|subject| {
            subject.is_empty()
                || subject.chars().count() >= 100
                || subject.chars().any(char::is_control)
        }) {
            return Err(invalid("Invalid parameter: Subject"));
        }
        for (name, attribute) in &publication.attributes {
            check_message_attribute(name, attribute)?;
        }
        for (what, id) in [
            ("MessageGroupId", &publication.group_id),
            ("MessageDeduplicationId", &publication.dedup_id),
        ] {
            let valid = |id: &String| {
                !id.is_empty()
                    && id.len() <= 128
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
            };
            if id.as_ref().is_some_and(|id| !valid(id)) {
                return Err(invalid(format!(
                    "Invalid parameter: {what} Reason: {what} can only include alphanumeric and punctuation characters. 1 to 128 in length."
                )));
            }
        }
        let mut dedup_id = publication.dedup_id;
        let mut sequence_number = None;
        if topic.fifo {
            if publication.group_id.is_none() {
                return Err(invalid(
                    "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
                ));
            }
            if dedup_id.is_none() {
                if !topic.flag("ContentBasedDeduplication") {
                    return Err(invalid(
                        "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
                dedup_id = Some(hex(&Sha256::digest(message.as_bytes())));
            }
            sequence_number = Some(self.next_sequence(now));
        } else if dedup_id.is_some() {
            return Err(invalid(
                "Invalid parameter: MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type",
            ));
        }
        let published = Published {
            kind: Kind::Notification,
            message_id: uuid::Uuid::new_v4().to_string(),
            topic_arn: topic.arn.clone(),
            subject: publication.subject,
            message,
            per_protocol,
            attributes: publication.attributes,
            timestamp_ms: now,
            group_id: publication.group_id,
            dedup_id,
            sequence_number,
            trace_id: publication.trace_id,
        };
        if published.size() > MAX_MESSAGE_BYTES {
            return Err(invalid("Invalid parameter: Message too long"));
        }
        Ok(published)
    }

    /// A FIFO sequence number: increasing, 20 digits.
    fn next_sequence(&self, now: u64) -> String {
        let floor = now * 1_000_000;
        let mut last = self.sequence.load(Ordering::Relaxed);
        loop {
            let next = (last + 1).max(floor);
            match self
                .sequence
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return format!("{next:020}"),
                Err(seen) => last = seen,
            }
        }
    }

    // ---- for the deliverer ----

    pub(crate) fn take_handoff(&self) -> Option<mpsc::UnboundedReceiver<Vec<Job>>> {
        self.handoff_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub(crate) fn claim(&self, limit: usize) -> Result<Vec<Job>, TopicError> {
        self.store.claim(now_ms(), limit)
    }

    pub(crate) fn next_due(&self) -> Result<Option<u64>, TopicError> {
        self.store.next_due()
    }

    pub(crate) fn settle(&self, settlements: &[store::Settlement]) -> Result<(), TopicError> {
        self.store.settle(settlements)
    }

    /// Deliveries not yet ended.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pending(&self) -> Result<u64, TopicError> {
        self.store.pending()
    }

    /// Counts how a delivery attempt to a `protocol` subscription ended.
    pub(crate) fn count_delivery(&self, protocol: Protocol, outcome: &str) {
        self.metrics.inc(
            crate::metrics::names::TOPIC_DELIVERIES,
            &[("protocol", protocol.name()), ("outcome", outcome)],
        );
    }

    /// Whether a topic exists (the delivery door's check).
    pub fn exists(&self, arn: &str) -> bool {
        self.read().topics.contains_key(arn)
    }
}

pub use store::Settlement;

/// What a subscription's ARN is shown as: `pending confirmation` until confirmed (unless
/// the caller asked for the ARN).
fn shown_arn(subscription: &Subscription, return_arn: bool) -> String {
    if subscription.confirmed || return_arn {
        subscription.arn.clone()
    } else {
        "pending confirmation".into()
    }
}

fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The deduplication key of a FIFO message (scoped to its group when the topic says
/// so); `None` for standard topics.
fn dedup_key(topic: &Topic, published: &Published) -> Option<String> {
    let id = published.dedup_id.as_ref()?;
    if !topic.fifo {
        return None;
    }
    match topic
        .attributes
        .get("FifoThroughputScope")
        .map(String::as_str)
    {
        Some("MessageGroup") => Some(format!(
            "{}\n{id}",
            published.group_id.as_deref().unwrap_or_default()
        )),
        _ => Some(id.clone()),
    }
}

/// Splits a `MessageStructure: json` message into its default and per-protocol messages.
fn split_structure(text: &str) -> Result<(String, BTreeMap<String, String>), TopicError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        invalid("Invalid parameter: Message Structure - JSON message body failed to parse")
    })?;
    let object = doc.as_object().ok_or_else(|| {
        invalid("Invalid parameter: Message Structure - JSON message body failed to parse")
    })?;
    let default = object
        .get("default")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            invalid("Invalid parameter: Message Structure - No default entry in JSON message body")
        })?
        .to_string();
    let per_protocol = object
        .iter()
        .filter(|(k, _)| ["lambda", "sqs", "http", "https"].contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Ok((default, per_protocol))
}

/// SNS's rules for a message attribute.
fn check_message_attribute(name: &str, attribute: &Attribute) -> Result<(), TopicError> {
    let bad_value = |reason: String| TopicError::InvalidParameterValue(reason);
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
        || lower.starts_with("aws.")
        || lower.starts_with("amazon.")
    {
        return Err(bad_value(format!(
            "The message attribute name '{name}' is invalid. Names can contain alphanumeric characters, '_', '-' and '.', must not start or end with '.' or hold '..', and must not start with 'AWS.' or 'Amazon.'"
        )));
    }
    let data_type = attribute.data_type.as_str();
    let base = data_type.split('.').next().unwrap_or_default();
    let array = data_type == "String.Array";
    if data_type.len() > 256 || !matches!(base, "String" | "Number" | "Binary") {
        return Err(bad_value(format!(
            "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
        )));
    }
    if base == "Binary" {
        let value = attribute.binary_value.as_deref().unwrap_or_default();
        if value.is_empty() {
            return Err(bad_value(format!(
                "The message attribute '{name}' must contain non-empty message attribute value for message attribute type 'Binary'."
            )));
        }
        return Ok(());
    }
    let value = attribute.string_value.as_deref().unwrap_or_default();
    if value.is_empty() {
        return Err(bad_value(format!(
            "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{base}'."
        )));
    }
    if base == "Number" && !array {
        let ok = value
            .parse::<f64>()
            .is_ok_and(|n| n.is_finite() && n.abs() <= 1e9);
        if !ok {
            return Err(bad_value(format!(
                "The message attribute '{name}' with type 'Number' must be a valid number between -10^9 and 10^9."
            )));
        }
    }
    if array && !matches!(serde_json::from_str(value), Ok(serde_json::Value::Array(_))) {
        return Err(bad_value(format!(
            "The message attribute '{name}' with type 'String.Array' must be a JSON array."
        )));
    }
    Ok(())
}

/// Whether a topic name is valid; `true` for a FIFO name (`.fifo`).
fn validate_topic_name(name: &str) -> Result<bool, TopicError> {
    let (base, fifo) = match name.strip_suffix(".fifo") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let ok = !base.is_empty()
        && name.len() <= 256
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(fifo)
    } else {
        Err(invalid(
            "Invalid parameter: Topic Name. Topic names must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long.",
        ))
    }
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), TopicError> {
    if tags.len() > MAX_TAGS {
        return Err(TopicError::TagLimitExceeded(
            "Could not complete request: tag quota of per resource exceeded".into(),
        ));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            return Err(invalid(
                "Invalid parameter: Tag key must be 1 to 128 characters",
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "Invalid parameter: Tag keys must not start with the reserved prefix aws:",
            ));
        }
        if value.chars().count() > 256 {
            return Err(invalid(
                "Invalid parameter: Tag value must be at most 256 characters",
            ));
        }
    }
    Ok(())
}

/// A page of items after `next_token` (the last item of the page before).
fn page(
    items: impl Iterator<Item = String>,
    next_token: Option<&str>,
) -> Result<(Vec<String>, Option<String>), TopicError> {
    let items: Vec<String> = items
        .filter(|item| next_token.is_none_or(|token| item.as_str() > token))
        .collect();
    let next = (items.len() > PAGE).then(|| items[PAGE - 1].clone());
    Ok((items.into_iter().take(PAGE).collect(), next))
}

#[cfg(test)]
mod tests;
