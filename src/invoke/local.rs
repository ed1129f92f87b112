//! The invoke door of one server: resolves the function once, then runs the invocation
//! here, queues it in the durable async queue, or only validates it.

use std::sync::Arc;

use super::{BoxFuture, Invocation, InvokeDoor, InvokeError, InvokeOutcome, Mode, Origin, Run};
use crate::disk::DiskBudget;
use crate::dispatcher::EventQueue;
use crate::document::FunctionDocument;
use crate::function::{ArnContext, FunctionRecord, LATEST};
use crate::registry::Registry;
use crate::store::events::NewEvent;

pub struct LocalInvoker {
    registry: Arc<Registry>,
    runner: Arc<dyn Run>,
    queue: Arc<EventQueue>,
    disk: Arc<DiskBudget>,
    arns: ArnContext,
}

impl LocalInvoker {
    pub fn new(
        registry: Arc<Registry>,
        runner: Arc<dyn Run>,
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
                let key = document.key();
                let (arns, name) = self.arns.of_key(&key);
                InvokeError::NotFound(arns.qualified_arn(name, qualifier.unwrap_or(LATEST)))
            })
    }

    async fn invoke_here(&self, mut invocation: Invocation) -> Result<InvokeOutcome, InvokeError> {
        if invocation.qualifier.as_deref() == Some(LATEST) {
            invocation.qualifier = None;
        }
        let document = self.registry.get(&invocation.function).ok_or_else(|| {
            let (arns, name) = self.arns.of_key(&invocation.function);
            InvokeError::NotFound(arns.function_arn(name))
        })?;
        let function = self.resolve(&document, invocation.qualifier.as_deref())?;
        // An event of the async queue was checked when the queue took it.
        if invocation.origin != Origin::AsyncQueue {
            invocation.payload = json_payload(std::mem::take(&mut invocation.payload))?;
        }
        match invocation.mode {
            Mode::DryRun => Ok(InvokeOutcome::Validated),
            Mode::Async => {
                // A full disk answers a clear error rather than SQLite's failure to write.
                self.disk
                    .check(invocation.payload.len() as u64, "an async event")?;
                let request_id = invocation
                    .request_id
                    .unwrap_or_else(|| super::new_request_id().to_string());
                self.queue
                    .accept(NewEvent {
                        request_id: request_id.clone(),
                        function: invocation.function,
                        qualifier: invocation.qualifier,
                        payload: invocation.payload.to_vec(),
                        // Every attempt and destination of the event follows one trace.
                        trace_id: invocation.trace_id.or_else(|| {
                            Some(super::runner::new_trace_id(
                                function.spec.settings.tracing_active,
                            ))
                        }),
                        received_ms: crate::timefmt::now_ms(),
                    })
                    .await?;
                Ok(InvokeOutcome::Queued { request_id })
            }
            Mode::Sync { log_tail } => {
                let (arns, name) = self.arns.of_key(&invocation.function);
                let invoked_arn = match invocation.qualifier.as_deref() {
                    Some(q) => arns.qualified_arn(name, q),
                    None => arns.function_arn(name),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::document::Alias;
    use crate::invoke::InvokeResponse;
    use crate::store::events::{EventStore, SqliteEventStore};

    /// A runner that records what the door hands it and answers at once.
    #[derive(Default)]
    struct FakeRunner(Mutex<Vec<(String, String, Bytes, bool)>>);

    impl Run for FakeRunner {
        fn run(
            &self,
            function: Arc<FunctionRecord>,
            invoked_arn: String,
            invocation: Invocation,
            log_tail: bool,
        ) -> BoxFuture<'_, Result<InvokeResponse, InvokeError>> {
            self.0.lock().unwrap().push((
                function.version.clone(),
                invoked_arn,
                invocation.payload.clone(),
                log_tail,
            ));
            Box::pin(async move {
                Ok(InvokeResponse {
                    request_id: invocation.request_id.unwrap_or_default(),
                    payload: invocation.payload,
                    function_error: None,
                    log_tail: None,
                    executed_version: function.version.clone(),
                    stopped_by_shutdown: false,
                })
            })
        }
    }

    struct Door {
        _dir: tempfile::TempDir,
        door: LocalInvoker,
        runner: Arc<FakeRunner>,
        events: Arc<SqliteEventStore>,
    }

    /// Function `f` with `$LATEST`, version 1 and alias `live` -> 1.
    fn door() -> Door {
        let dir = tempfile::tempdir().unwrap();
        let mut document =
            FunctionDocument::new(crate::function::sample_record("f", LATEST, "c0de"));
        document
            .versions
            .push(Arc::new(crate::function::sample_record("f", "1", "c0de")));
        document.aliases.insert(
            "live".into(),
            Alias {
                name: "live".into(),
                function_version: "1".into(),
                description: String::new(),
                additional_weights: BTreeMap::new(),
                revision_id: "r".into(),
            },
        );
        let registry = crate::registry::test_registry(dir.path(), &[document]);
        let events = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
        let queue = EventQueue::start(events.clone(), Arc::new(crate::metrics::Metrics::default()));
        let disk = DiskBudget::new(dir.path(), crate::disk::Reserve::Bytes(0)).unwrap();
        let runner = Arc::new(FakeRunner::default());
        let arns = ArnContext::new("us-east-1", "000000000000");
        Door {
            door: LocalInvoker::new(registry, runner.clone(), queue, disk, arns),
            _dir: dir,
            runner,
            events,
        }
    }

    fn invocation(qualifier: Option<&str>, payload: &'static [u8], mode: Mode) -> Invocation {
        Invocation::new("f", Bytes::from_static(payload), mode, Origin::Api)
            .qualifier(qualifier.map(str::to_string))
    }

    const SYNC: Mode = Mode::Sync { log_tail: true };

    #[tokio::test]
    async fn sync_invocations_run_the_version_their_qualifier_resolves_to() {
        let d = door();
        for (qualifier, version, arn) in [
            (
                None,
                LATEST,
                "arn:aws:lambda:us-east-1:000000000000:function:f",
            ),
            (
                Some("$LATEST"),
                LATEST,
                "arn:aws:lambda:us-east-1:000000000000:function:f",
            ),
            (
                Some("1"),
                "1",
                "arn:aws:lambda:us-east-1:000000000000:function:f:1",
            ),
            (
                Some("live"),
                "1",
                "arn:aws:lambda:us-east-1:000000000000:function:f:live",
            ),
        ] {
            let outcome = d
                .door
                .invoke(invocation(qualifier, b"{\"a\":1}", SYNC))
                .await;
            let Ok(InvokeOutcome::Completed(response)) = outcome else {
                panic!("{qualifier:?}: {outcome:?}");
            };
            assert_eq!(response.executed_version, version);
            let runs = d.runner.0.lock().unwrap();
            let last = runs.last().unwrap();
            assert_eq!(
                (last.0.as_str(), last.1.as_str(), last.3),
                (version, arn, true)
            );
        }
        assert_eq!(d.runner.0.lock().unwrap().len(), 4, "each ran once");
    }

    #[tokio::test]
    async fn payloads_must_be_json_and_an_empty_one_is_an_empty_object() {
        let d = door();
        let blank = d
            .door
            .invoke(invocation(None, b"  \n", SYNC))
            .await
            .unwrap();
        let InvokeOutcome::Completed(response) = blank else {
            panic!("ran")
        };
        assert_eq!(response.payload, Bytes::from_static(b"{}"));
        for mode in [SYNC, Mode::Async, Mode::DryRun] {
            let bad = d.door.invoke(invocation(None, b"{not json", mode)).await;
            assert!(
                matches!(bad, Err(InvokeError::InvalidPayload(_))),
                "{mode:?}: {bad:?}"
            );
        }
        assert_eq!(d.runner.0.lock().unwrap().len(), 1);
        assert!(d.events.depth().unwrap().is_empty());
    }

    #[tokio::test]
    async fn what_does_not_exist_is_not_found_by_its_arn_in_every_mode() {
        let d = door();
        for mode in [SYNC, Mode::Async, Mode::DryRun] {
            let missing = Invocation::new("nope", Bytes::from_static(b"{}"), mode, Origin::Api);
            match d.door.invoke(missing).await {
                Err(InvokeError::NotFound(arn)) => {
                    assert_eq!(arn, "arn:aws:lambda:us-east-1:000000000000:function:nope")
                }
                other => panic!("{mode:?}: {other:?}"),
            }
            match d.door.invoke(invocation(Some("9"), b"{}", mode)).await {
                Err(InvokeError::NotFound(arn)) => {
                    assert_eq!(arn, "arn:aws:lambda:us-east-1:000000000000:function:f:9")
                }
                other => panic!("{mode:?}: {other:?}"),
            }
        }
        assert!(d.runner.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn async_invocations_are_durable_before_the_door_answers_and_dry_runs_do_nothing() {
        let d = door();
        let queued = d
            .door
            .invoke(invocation(Some("live"), b"{}", Mode::Async).request_id(Some("r-1".into())))
            .await
            .unwrap();
        assert!(matches!(queued, InvokeOutcome::Queued { ref request_id } if request_id == "r-1"));
        let claimed = d.events.claim(u64::MAX / 2, 1000, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].event.request_id, "r-1");
        assert_eq!(claimed[0].event.qualifier.as_deref(), Some("live"));
        let validated = d.door.invoke(invocation(None, b"{}", Mode::DryRun)).await;
        assert!(matches!(validated, Ok(InvokeOutcome::Validated)));
        assert!(d.runner.0.lock().unwrap().is_empty(), "neither ran here");
    }
}
