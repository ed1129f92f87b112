//! The delivery door: "deliver this payload to an ARN".
//!
//! Async destinations, dead-letter queues and topic subscriptions use it; event-bus
//! targets and workflow tasks will too. Each service that can receive deliveries
//! registers one [`Target`] under its ARN service name (`lambda`: an async invocation
//! through the invoke door; `sqs`: a message in a built-in queue; `sns`: a message
//! published to a topic). [`Targets`] parses the
//! ARN once, refuses another account's or region's, and hands the delivery to the target
//! of its service.

pub mod bus;
pub mod lambda;
pub mod queue;
pub mod topic;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::arn::{Arn, ArnError};
use crate::function::ArnContext;
use crate::invoke::{BoxFuture, Origin};
use crate::queues::Attribute;
use crate::region::validate_region;

/// What is delivered.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The payload: a function's event, a message's body (as text).
    pub body: Bytes,
    /// Message attributes, for targets that carry them (queues).
    pub attributes: BTreeMap<String, Attribute>,
    /// The trace the delivery belongs to, followed into the target.
    pub trace_id: Option<String>,
    /// Who delivers it (a function invoked by it is told), when not a destination.
    pub origin: Option<Origin>,
    /// A FIFO queue's message group and deduplication id.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// The service delivering on behalf of one of its resources, for targets whose
    /// resource policy must allow it (a function invoked by an event bus rule).
    pub principal: Option<Principal>,
}

/// A service principal and the ARN of its resource that delivers (`events.amazonaws.com`
/// and a rule's ARN).
#[derive(Debug, Clone)]
pub struct Principal {
    pub service: &'static str,
    pub source_arn: String,
}

impl Delivery {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn with_attributes(mut self, attributes: BTreeMap<String, Attribute>) -> Self {
        self.attributes = attributes;
        self
    }

    pub fn with_trace(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("The destination ARN {0}")]
    Arn(#[from] ArnError),
    #[error(
        "The destination ARN {0} is invalid: use a function (arn:aws:lambda:...:function:NAME), a queue (arn:aws:sqs:...:NAME) or a topic (arn:aws:sns:...:NAME)"
    )]
    Unsupported(String),
    #[error("The destination ARN {0} is invalid: it is in another account")]
    Foreign(String),
    #[error("The destination ARN {0} is invalid: it does not exist")]
    NotFound(String),
    /// The target's resource policy does not allow the delivering principal.
    #[error(
        "{service} is not allowed to deliver to {arn}: its resource policy has no statement allowing it"
    )]
    Denied { arn: String, service: &'static str },
    /// The target took the delivery and failed (its reason in words).
    #[error("delivering to {arn} failed: {reason}")]
    Failed { arn: String, reason: String },
}

/// A delivery under way.
pub type Delivered<'a> = BoxFuture<'a, Result<(), DeliveryError>>;

/// Something that can receive deliveries: all the resources of one ARN service.
pub trait Target: Send + Sync {
    /// The ARN service this target takes (`lambda`, `sqs`, ...).
    fn service(&self) -> &'static str;
    /// Whether `arn` names a resource that can take deliveries now (checked when a
    /// destination is configured).
    fn check(&self, arn: &Arn) -> Result<(), DeliveryError>;
    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a>;
}

/// Every registered target, by ARN service.
pub struct Targets {
    by_service: HashMap<&'static str, Arc<dyn Target>>,
    arns: ArnContext,
}

impl Targets {
    pub fn new(arns: ArnContext) -> Self {
        Self {
            by_service: HashMap::new(),
            arns,
        }
    }

    pub fn register(&mut self, target: Arc<dyn Target>) {
        self.by_service.insert(target.service(), target);
    }

    /// The parsed ARN and the target that takes it.
    fn route(&self, raw: &str) -> Result<(Arn, &Arc<dyn Target>), DeliveryError> {
        let arn = Arn::parse(raw)?;
        let target = self
            .by_service
            .get(arn.service.as_str())
            .ok_or_else(|| DeliveryError::Unsupported(raw.to_string()))?;
        // Any region of this account's: a resource is found in the region its ARN names.
        if arn.account != self.arns.account_id || validate_region(&arn.region).is_err() {
            return Err(DeliveryError::Foreign(raw.to_string()));
        }
        Ok((arn, target))
    }

    /// Checks that `raw` names a resource a delivery can go to.
    pub fn check(&self, raw: &str) -> Result<Arn, DeliveryError> {
        let (arn, target) = self.route(raw)?;
        target.check(&arn)?;
        Ok(arn)
    }

    /// Whether `raw` is an ARN of `service` (the kinds a setting accepts, e.g. a
    /// dead-letter target must be a queue).
    pub fn is_service(&self, raw: &str, service: &str) -> bool {
        Arn::parse(raw).is_ok_and(|arn| arn.service == service)
    }

    pub async fn deliver(&self, raw: &str, delivery: Delivery) -> Result<(), DeliveryError> {
        let (arn, target) = self.route(raw)?;
        target.deliver(&arn, delivery).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A target that records what it is given and knows one resource.
    struct Recorder {
        got: Mutex<Vec<(String, Bytes)>>,
    }

    impl Target for Recorder {
        fn service(&self) -> &'static str {
            "sqs"
        }
        fn check(&self, arn: &Arn) -> Result<(), DeliveryError> {
            if arn.resource == "known" {
                Ok(())
            } else {
                Err(DeliveryError::NotFound(arn.to_string()))
            }
        }
        fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
            Box::pin(async move {
                self.got
                    .lock()
                    .unwrap()
                    .push((arn.to_string(), delivery.body));
                Ok(())
            })
        }
    }

    fn targets() -> (Targets, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            got: Mutex::default(),
        });
        let mut targets = Targets::new(ArnContext::new("us-east-1", "000000000000"));
        targets.register(recorder.clone());
        (targets, recorder)
    }

    #[tokio::test]
    async fn a_delivery_goes_to_the_target_of_its_service() {
        let (targets, recorder) = targets();
        let arn = "arn:aws:sqs:us-east-1:000000000000:known";
        targets.deliver(arn, Delivery::new("hello")).await.unwrap();
        assert_eq!(
            *recorder.got.lock().unwrap(),
            vec![(arn.to_string(), Bytes::from("hello"))]
        );
        assert!(targets.check(arn).is_ok());
        assert!(matches!(
            targets.check("arn:aws:sqs:us-east-1:000000000000:unknown"),
            Err(DeliveryError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn unknown_services_foreign_and_malformed_arns_are_refused() {
        let (targets, recorder) = targets();
        for (raw, ok) in [
            ("arn:aws:events:us-east-1:000000000000:t", "unsupported"),
            ("arn:aws:sqs:EU_WEST:000000000000:known", "foreign"),
            ("arn:aws:sqs:us-east-1:999999999999:known", "foreign"),
            ("not-an-arn", "malformed"),
        ] {
            let e = targets.deliver(raw, Delivery::new("x")).await.unwrap_err();
            let kind = match e {
                DeliveryError::Unsupported(_) => "unsupported",
                DeliveryError::Foreign(_) => "foreign",
                DeliveryError::Arn(_) => "malformed",
                _ => "other",
            };
            assert_eq!(kind, ok, "{raw}");
        }
        assert!(recorder.got.lock().unwrap().is_empty());
        // Another region of this account's is the target's to find.
        targets
            .deliver(
                "arn:aws:sqs:eu-west-1:000000000000:known",
                Delivery::new("x"),
            )
            .await
            .unwrap();
        assert_eq!(recorder.got.lock().unwrap().len(), 1);
        assert!(targets.is_service("arn:aws:sqs:r:a:q", "sqs"));
        assert!(!targets.is_service("arn:aws:lambda:r:a:function:f", "sqs"));
    }
}
