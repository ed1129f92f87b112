//! The invoke door of one server: resolves the function once, then runs the invocation
//! here, queues it in the durable async queue, or only validates it.

use std::sync::Arc;

use super::{BoxFuture, Invocation, InvokeDoor, InvokeError, InvokeOutcome, Mode, Runner};
use crate::disk::DiskBudget;
use crate::dispatcher::EventQueue;
use crate::document::FunctionDocument;
use crate::function::{ArnContext, FunctionRecord, LATEST};
use crate::registry::Registry;
use crate::store::events::NewEvent;

pub struct LocalInvoker {
    registry: Arc<Registry>,
    runner: Arc<Runner>,
    queue: Arc<EventQueue>,
    disk: Arc<DiskBudget>,
    arns: ArnContext,
}

impl LocalInvoker {
    pub fn new(
        registry: Arc<Registry>,
        runner: Arc<Runner>,
        queue: Arc<EventQueue>,
        disk: Arc<DiskBudget>,
        arns: ArnContext,
    ) -> Self {
        Self {
            registry,
            runner,
            queue,
            disk,
            arns,
        }
    }

    /// The version `qualifier` names (an alias picks one of its versions by weight), or
    /// the ARN that names nothing.
    fn resolve(
        &self,
        document: &FunctionDocument,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionRecord>, InvokeError> {
        document
            .resolve(qualifier, fastrand::f64())
            .cloned()
            .ok_or_else(|| {
                InvokeError::NotFound(
                    self.arns
                        .qualified_arn(document.name(), qualifier.unwrap_or(LATEST)),
                )
            })
    }

    async fn invoke_here(&self, invocation: Invocation) -> Result<InvokeOutcome, InvokeError> {
        let name = invocation.function.clone();
        let name = name.as_str();
        let document = self
            .registry
            .get(name)
            .ok_or_else(|| InvokeError::NotFound(self.arns.function_arn(name)))?;
        let qualifier = invocation.qualifier.clone().filter(|q| q != LATEST);
        let qualifier = qualifier.as_deref();
        let function = self.resolve(&document, qualifier)?;
        let mut invocation = invocation;
        invocation.payload = json_payload(std::mem::take(&mut invocation.payload))?;
        match invocation.mode {
            Mode::DryRun => Ok(InvokeOutcome::Validated),
            Mode::Async => {
                // A full disk answers a clear error rather than SQLite's failure to write.
                self.disk
                    .check(invocation.payload.len() as u64, "an async event")?;
                let request_id = invocation
                    .request_id
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                self.queue
                    .accept(NewEvent {
                        request_id: request_id.clone(),
                        function: invocation.function,
                        qualifier: qualifier.map(str::to_string),
                        payload: invocation.payload.to_vec(),
                        trace_id: invocation.trace_id,
                        received_ms: crate::timefmt::now_ms(),
                    })
                    .await?;
                Ok(InvokeOutcome::Queued { request_id })
            }
            Mode::Sync { log_tail } => {
                let invoked_arn = match qualifier {
                    Some(q) => self.arns.qualified_arn(name, q),
                    None => self.arns.function_arn(name),
                };
                self.runner
                    .run(function, invoked_arn, invocation, log_tail)
                    .await
                    .map(InvokeOutcome::Completed)
            }
        }
    }
}

/// The payload as functions receive it: JSON, and `{}` for an empty one.
fn json_payload(payload: bytes::Bytes) -> Result<bytes::Bytes, InvokeError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(bytes::Bytes::from_static(b"{}"));
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        Ok(_) => Ok(payload),
        Err(e) => Err(InvokeError::InvalidPayload(e.to_string())),
    }
}

impl InvokeDoor for LocalInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'_, Result<InvokeOutcome, InvokeError>> {
        Box::pin(self.invoke_here(invocation))
    }
}
