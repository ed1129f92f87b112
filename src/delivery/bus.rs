//! Deliveries to event buses: the payload is an event (a rule of another bus matched it)
//! and is put on the target bus as it is, matched against that bus's rules and committed
//! with its deliveries, as EventBridge forwards events between buses.

use std::sync::Arc;

use super::{Delivered, Delivery, DeliveryError, Target};
use crate::arn::Arn;
use crate::bus::EventBusService;

pub struct BusTarget {
    bus: Arc<EventBusService>,
}

impl BusTarget {
    pub fn new(bus: Arc<EventBusService>) -> Self {
        Self { bus }
    }
}

/// The bus name of an event bus ARN's resource (`event-bus/<name>`).
fn bus_of(arn: &Arn) -> Option<&str> {
    arn.resource
        .strip_prefix("event-bus/")
        .filter(|name| crate::bus::is_bus_name(name))
}

impl Target for BusTarget {
    fn service(&self) -> &'static str {
        "events"
    }

    fn check(&self, arn: &Arn) -> Result<(), DeliveryError> {
        let name = bus_of(arn).ok_or_else(|| DeliveryError::Unsupported(arn.to_string()))?;
        self.bus
            .bus(&arn.region, name)
            .map(|_| ())
            .map_err(|_| DeliveryError::NotFound(arn.to_string()))
    }

    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
        Box::pin(async move {
            let raw = arn.to_string();
            let name = bus_of(arn).ok_or_else(|| DeliveryError::Unsupported(raw.clone()))?;
            let event: serde_json::Value =
                serde_json::from_slice(&delivery.body).map_err(|e| DeliveryError::Failed {
                    arn: raw.clone(),
                    reason: format!("the payload is not an event: {e}"),
                })?;
            self.bus
                .forward(&arn.region, name, event)
                .await
                .map_err(|e| match e {
                    crate::bus::BusError::NotFound(_) => DeliveryError::NotFound(raw.clone()),
                    e => DeliveryError::Failed {
                        arn: raw.clone(),
                        reason: e.to_string(),
                    },
                })
        })
    }
}
