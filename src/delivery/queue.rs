//! Deliveries to the built-in queues: one message, with its attributes.

use std::sync::Arc;

use super::{Delivered, Delivery, DeliveryError, Target};
use crate::arn::Arn;
use crate::function::ArnContext;
use crate::queues::{QueueError, QueueService};

pub struct QueueTarget {
    queues: Arc<QueueService>,
    /// The account in its home region: makes the keys queues are found by.
    arns: ArnContext,
}

impl QueueTarget {
    pub fn new(queues: Arc<QueueService>, arns: ArnContext) -> Self {
        Self { queues, arns }
    }
}

impl Target for QueueTarget {
    fn service(&self) -> &'static str {
        "sqs"
    }

    fn check(&self, arn: &Arn) -> Result<(), DeliveryError> {
        let name = arn.queue_name()?;
        self.queues
            .info(&self.arns.key_of_arn(&arn.region, name))
            .map(|_| ())
            .map_err(|_| DeliveryError::NotFound(arn.to_string()))
    }

    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
        Box::pin(async move {
            let name = self
                .arns
                .key_of_arn(&arn.region, arn.queue_name()?)
                .into_owned();
            let queues = self.queues.clone();
            let body = String::from_utf8_lossy(&delivery.body).into_owned();
            let mut message = crate::queues::Outgoing::new(body, delivery.attributes);
            message.group_id = delivery.group_id;
            message.dedup_id = delivery.dedup_id;
            let failed = |reason: String| DeliveryError::Failed {
                arn: arn.to_string(),
                reason,
            };
            tokio::task::spawn_blocking(move || queues.send(&name, &[message]))
                .await
                .map_err(|e| failed(e.to_string()))?
                .map(|_| ())
                .map_err(|e| match e {
                    QueueError::NoSuchQueue => DeliveryError::NotFound(arn.to_string()),
                    e => failed(e.to_string()),
                })
        })
    }
}
