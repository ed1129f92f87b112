//! Deliveries to functions: an asynchronous invocation through the invoke door, once the
//! function's resource policy allows the delivering service, when one is named.

use std::sync::Arc;

use super::{Delivered, Delivery, DeliveryError, Target};
use crate::arn::Arn;
use crate::function::ArnContext;
use crate::invoke::{Invocation, InvokeDoor, InvokeError, Mode, Origin};
use crate::registry::Registry;

pub struct FunctionTarget {
    door: Arc<dyn InvokeDoor>,
    registry: Arc<Registry>,
    /// The account in its home region: makes the keys functions are found by.
    arns: ArnContext,
}

impl FunctionTarget {
    pub fn new(door: Arc<dyn InvokeDoor>, registry: Arc<Registry>, arns: ArnContext) -> Self {
        Self {
            door,
            registry,
            arns,
        }
    }
}

impl Target for FunctionTarget {
    fn service(&self) -> &'static str {
        "lambda"
    }

    fn check(&self, arn: &Arn) -> Result<(), DeliveryError> {
        let (name, _) = arn.function_parts()?;
        match self.registry.get(&self.arns.key_of_arn(&arn.region, name)) {
            Some(_) => Ok(()),
            None => Err(DeliveryError::NotFound(arn.to_string())),
        }
    }

    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
        Box::pin(async move {
            let (name, qualifier) = arn.function_parts()?;
            let key = self.arns.key_of_arn(&arn.region, name).into_owned();
            if let Some(principal) = &delivery.principal {
                let Some(document) = self.registry.get(&key) else {
                    return Err(DeliveryError::NotFound(arn.to_string()));
                };
                if !crate::policy::allows_service(
                    document.statements(qualifier),
                    principal.service,
                    &principal.source_arn,
                    &self.arns.account_id,
                ) {
                    return Err(DeliveryError::Denied {
                        arn: arn.to_string(),
                        service: principal.service,
                    });
                }
            }
            let origin = delivery.origin.unwrap_or(Origin::Destination);
            let invocation = Invocation::new(key, delivery.body, Mode::Async, origin)
                .qualifier(qualifier.map(str::to_string))
                .trace_id(delivery.trace_id);
            self.door
                .invoke(invocation)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    InvokeError::NotFound(_) => DeliveryError::NotFound(arn.to_string()),
                    e => DeliveryError::Failed {
                        arn: arn.to_string(),
                        reason: e.to_string(),
                    },
                })
        })
    }
}
