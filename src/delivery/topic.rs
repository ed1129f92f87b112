//! Deliveries to topics: the payload is published as a message (its attributes as the
//! message's), so a destination or a rule can fan out through a topic.

use std::sync::Arc;

use super::{Delivered, Delivery, DeliveryError, Target};
use crate::arn::Arn;
use crate::topics::{Publication, TopicError, TopicService};

pub struct TopicTarget {
    topics: Arc<TopicService>,
}

impl TopicTarget {
    pub fn new(topics: Arc<TopicService>) -> Self {
        Self { topics }
    }
}

impl Target for TopicTarget {
    fn service(&self) -> &'static str {
        "sns"
    }

    fn check(&self, arn: &Arn) -> Result<(), DeliveryError> {
        if self.topics.exists(&arn.to_string()) {
            Ok(())
        } else {
            Err(DeliveryError::NotFound(arn.to_string()))
        }
    }

    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
        Box::pin(async move {
            let raw = arn.to_string();
            let topics = self.topics.clone();
            let publication = Publication {
                message: Some(String::from_utf8_lossy(&delivery.body).into_owned()),
                attributes: delivery.attributes,
                group_id: delivery.group_id,
                dedup_id: delivery.dedup_id,
                trace_id: delivery.trace_id,
                ..Publication::default()
            };
            let topic = raw.clone();
            let published =
                tokio::task::spawn_blocking(move || topics.publish(&topic, vec![publication]))
                    .await
                    .map_err(|e| DeliveryError::Failed {
                        arn: raw.clone(),
                        reason: e.to_string(),
                    })?;
            let failed = |e: TopicError| match e {
                TopicError::NotFound(_) => DeliveryError::NotFound(raw.clone()),
                e => DeliveryError::Failed {
                    arn: raw.clone(),
                    reason: e.to_string(),
                },
            };
            match published.map_err(failed)?.pop() {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(failed(e)),
                None => Ok(()),
            }
        })
    }
}
