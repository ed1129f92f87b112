//! The runner: one synchronous invocation of a resolved function version, from
//! admission to its result.
//!
//! It asks the scheduler for an environment, runs the init phase on a cold start, hands
//! the event over, and turns every ending (response, function error, timeout, crash,
//! init failure) into Lambda's result shape, with START/END/REPORT lines in the
//! function's log. An invocation runs to its end in its own task even if the caller
//! goes away. Producers never call it directly: they go through the invoke door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::environment::runtime_api::{RESPONSE_MAX_BYTES, RuntimeOutcome};
use crate::environment::sandbox::SandboxError;
use crate::environment::{EventSpec, InitFailure, InvokeFailure, StartError};
use crate::function::FunctionRecord;
use crate::logs::lines;
use crate::metrics::{Metrics, names};
use crate::scheduler::{AcquireError, Scheduler};
use crate::shutdown::ShutdownSignal;

use super::{Invocation, InvokeError};

#[derive(Debug)]
pub struct InvokeResponse {
    pub request_id: String,
    pub payload: Bytes,
    /// `Unhandled` when the function failed, as `X-Amz-Function-Error`.
    pub function_error: Option<&'static str>,
    /// The last 4 KB of the invocation's log, when asked for.
    pub log_tail: Option<String>,
    pub executed_version: String,
    /// The server's shutdown ended the invocation before the function did (the payload
    /// is the shutdown error): an async event goes back to the queue.
    pub stopped_by_shutdown: bool,
}

pub struct Runner {
    scheduler: Arc<Scheduler>,
    init_timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: ShutdownSignal,
}

/// How one invocation ended, before it is turned into a response.
struct Ending {
    payload: Bytes,
    function_error: bool,
    /// `Status:` of the REPORT line, when not a success.
    status: Option<&'static str>,
    /// Whether the environment may be reused.
    healthy: bool,
    /// Ended by the server's shutdown.
    stopped_by_shutdown: bool,
}

fn error_payload(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

/// Why an invocation ended by the server's shutdown did not finish.
const SHUTTING_DOWN: &str = "the server is shutting down";

/// The ending of an invocation that the server's shutdown stopped after `ran`: a
/// function error of type `Sandbox.Timedout` (the platform's deadline, here the end of
/// the shutdown drain, cut it short), whose message says so.
fn stopped_ending(request_id: &str, ran: Duration) -> Ending {
    Ending {
        payload: error_payload(
            "Sandbox.Timedout",
            format!(
                "RequestId: {request_id} Error: Task stopped after {:.2} seconds: {SHUTTING_DOWN}",
                ran.as_secs_f64()
            ),
        ),
        function_error: true,
        status: Some("error"),
        healthy: false,
        stopped_by_shutdown: true,
    }
}

/// A new trace header (`X-Amzn-Trace-Id`'s format) for an invocation that came without
/// one: sampled when the function's tracing is `Active`.
pub fn new_trace_id(sampled: bool) -> String {
    let id = super::new_request_id().simple().to_string();
    let epoch = crate::timefmt::now_ms() / 1000;
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled={}",
        &id[..24],
        &id[16..32],
        u8::from(sampled)
    )
}

impl Runner {
    pub fn new(
        scheduler: Arc<Scheduler>,
        init_timeout: Duration,
        metrics: Arc<Metrics>,
        shutdown: ShutdownSignal,
    ) -> Self {
        Self {
            scheduler,
            init_timeout,
            metrics,
            shutdown,
        }
    }

    /// Runs `invocation` in `function` (the version it resolved to; `invoked_arn` is the
    /// ARN it was called by) in a task of its own, and waits for its result.
    pub async fn run(
        self: &Arc<Self>,
        function: Arc<FunctionRecord>,
        invoked_arn: String,
        invocation: Invocation,
        log_tail: bool,
    ) -> Result<InvokeResponse, InvokeError> {
        if self.shutdown.is_ended() {
            return Err(InvokeError::ShuttingDown);
        }
        let request_id = invocation
            .request_id
            .clone()
            .unwrap_or_else(|| super::new_request_id().to_string());
        let this = self.clone();
        let span = tracing::info_span!(
            "invoke",
            function = %function.spec.name,
            version = %function.version,
            request_id = %request_id,
            origin = invocation.origin.kind(),
        );
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                this.run_to_end(function, invoked_arn, request_id, invocation, log_tail)
                    .await
            },
            span,
        ));
        task.await?
    }

    async fn run_to_end(
        &self,
        function: Arc<FunctionRecord>,
        invoked_arn: String,
        request_id: String,
        request: Invocation,
        log_tail: bool,
    ) -> Result<InvokeResponse, InvokeError> {
        // Metrics name a function by its key (`region/name` outside the home region).
        let key = function.spec.key();
        let name = key.as_ref();
        let version = function.version.clone();
        let mut lease = match self
            .scheduler
            .acquire_waiting(&function, request.admission_wait)
            .await
        {
            Ok(lease) => lease,
            Err(AcquireError::Throttled(throttle)) => return Err(InvokeError::Throttled(throttle)),
            Err(AcquireError::Start(StartError::Sandbox(SandboxError::InvalidEntrypoint {
                program,
                reason,
            }))) => {
                self.metrics.inc(names::INVOCATIONS, &[("function", name)]);
                self.metrics.inc(names::ERRORS, &[("function", name)]);
                return Ok(InvokeResponse {
                    payload: error_payload(
                        "Runtime.InvalidEntrypoint",
                        format!("RequestId: {request_id} Error: fork/exec {program}: {reason}"),
                    ),
                    request_id,
                    function_error: Some("Unhandled"),
                    log_tail: None,
                    executed_version: version,
                    stopped_by_shutdown: false,
                });
            }
            Err(AcquireError::Start(StartError::Sandbox(SandboxError::DiskFull(message)))) => {
                return Err(InvokeError::DiskFull(message));
            }
            Err(AcquireError::Start(e)) => return Err(InvokeError::Start(e)),
        };
        if self.shutdown.is_ended() {
            // Started while the server was ending: never handed an event.
            lease.release(false);
            return Err(InvokeError::ShuttingDown);
        }
        self.metrics.inc(names::INVOCATIONS, &[("function", name)]);
        let env = lease.env().clone();
        if log_tail {
            env.begin_tail();
        }

        let mut init_duration = None;
        let mut ending = None;
        if lease.cold {
            let ready = tokio::select! {
                biased;
                ready = env.wait_ready(self.init_timeout) => Some(ready),
                () = self.shutdown.ended() => None,
            };
            match ready {
                Some(Ok(d)) => {
                    init_duration = Some(d);
                    lease.ready();
                }
                Some(Err(failure)) => {
                    init_duration = Some(env.age());
                    ending = Some(self.init_ending(&request_id, failure));
                }
                None => {
                    init_duration = Some(env.age());
                    ending = Some(stopped_ending(&request_id, env.age()));
                }
            }
        }

        let platform = lines::PlatformFormat::of(&function.spec.settings.logging);
        if let Some(line) = platform.start(&request_id, &version) {
            env.log(line).await;
        }
        let started = Instant::now();
        let ending = match ending {
            Some(ending) => ending,
            None => {
                let event = EventSpec {
                    request_id: request_id.clone(),
                    payload: request.payload,
                    trace_id: request
                        .trace_id
                        .unwrap_or_else(|| new_trace_id(function.spec.settings.tracing_active)),
                    client_context: request.client_context,
                    invoked_arn,
                    timeout: Duration::from_secs(u64::from(function.spec.timeout_s)),
                    stream: request.stream,
                };
                tokio::select! {
                    biased;
                    outcome = env.invoke(event) => self.invoke_ending(
                        &request_id,
                        function.spec.timeout_s,
                        outcome,
                        env.oom_killed(),
                    ),
                    () = self.shutdown.ended() => {
                        // The tree goes first, so that its output ends and is drained.
                        env.kill();
                        stopped_ending(&request_id, started.elapsed())
                    }
                }
            }
        };
        let duration = started.elapsed();
        if ending.function_error {
            self.metrics.inc(names::ERRORS, &[("function", name)]);
        }
        env.sync_output().await;
        if ending.stopped_by_shutdown {
            env.log(format!(
                "{} {request_id} Task stopped after {:.2} seconds: {SHUTTING_DOWN}",
                crate::timefmt::iso_timestamp(crate::timefmt::now_ms()),
                duration.as_secs_f64()
            ))
            .await;
        } else if ending.status == Some("timeout") {
            env.log(format!(
                "{} {request_id} Task timed out after {}.00 seconds",
                crate::timefmt::iso_timestamp(crate::timefmt::now_ms()),
                function.spec.timeout_s
            ))
            .await;
        }
        if let Some(line) = platform.end(&request_id) {
            env.log(line).await;
        }
        let report = lines::Report {
            request_id: &request_id,
            duration_ms: duration.as_secs_f64() * 1000.0,
            memory_mb: function.spec.memory_mb,
            max_memory_used_mb: env.peak_memory_mb(),
            init_duration_ms: init_duration.map(|d| d.as_secs_f64() * 1000.0),
            status: ending.status,
        };
        if let Some(line) = platform.report(&report) {
            env.log(line).await;
        }
        let log_tail = if log_tail {
            env.take_tail().map(|t| t.text())
        } else {
            None
        };
        lease.release(ending.healthy);
        Ok(InvokeResponse {
            request_id,
            payload: ending.payload,
            function_error: ending.function_error.then_some("Unhandled"),
            log_tail,
            executed_version: version,
            stopped_by_shutdown: ending.stopped_by_shutdown,
        })
    }

    fn init_ending(&self, request_id: &str, failure: InitFailure) -> Ending {
        let payload = match failure {
            InitFailure::Reported { error_type, body } => {
                if body.is_empty() {
                    error_payload(
                        error_type.as_deref().unwrap_or("Runtime.Unknown"),
                        format!("RequestId: {request_id} Error: the runtime failed to initialise"),
                    )
                } else {
                    body
                }
            }
            InitFailure::Exited(reason) => error_payload(
                "Runtime.ExitError",
                format!(
                    "RequestId: {request_id} Error: Runtime exited with error: {}",
                    reason.0
                ),
            ),
            InitFailure::TimedOut(limit) => error_payload(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {request_id} Error: Init phase timed out after {:.2} seconds",
                    limit.as_secs_f64()
                ),
            ),
        };
        Ending {
            payload,
            function_error: true,
            status: Some("error"),
            healthy: false,
            stopped_by_shutdown: false,
        }
    }

    fn invoke_ending(
        &self,
        request_id: &str,
        timeout_s: u32,
        outcome: Result<RuntimeOutcome, InvokeFailure>,
        oom_killed: bool,
    ) -> Ending {
        match outcome {
            Ok(RuntimeOutcome::Response(payload))
            | Ok(RuntimeOutcome::Streamed {
                payload,
                error: None,
            }) => Ending {
                payload,
                function_error: false,
                status: None,
                healthy: true,
                stopped_by_shutdown: false,
            },
            Ok(RuntimeOutcome::Streamed {
                error: Some((error_type, body)),
                ..
            })
            | Ok(RuntimeOutcome::Error { error_type, body }) => {
                let payload = if body.is_empty() {
                    error_payload(error_type.as_deref().unwrap_or("Unhandled"), String::new())
                } else {
                    body
                };
                Ending {
                    payload,
                    function_error: true,
                    status: None,
                    healthy: true,
                    stopped_by_shutdown: false,
                }
            }
            Ok(RuntimeOutcome::ResponseTooLarge) => Ending {
                payload: error_payload(
                    "Function.ResponseSizeTooLarge",
                    format!(
                        "Response payload size exceeded maximum allowed payload size ({RESPONSE_MAX_BYTES} bytes)."
                    ),
                ),
                function_error: true,
                status: Some("error"),
                healthy: true,
                stopped_by_shutdown: false,
            },
            Err(InvokeFailure::TimedOut) => Ending {
                payload: error_payload(
                    "Sandbox.Timedout",
                    format!(
                        "RequestId: {request_id} Error: Task timed out after {timeout_s}.00 seconds"
                    ),
                ),
                function_error: true,
                status: Some("timeout"),
                healthy: false,
                stopped_by_shutdown: false,
            },
            Err(InvokeFailure::Exited(reason)) => Ending {
                payload: error_payload(
                    if oom_killed {
                        "Runtime.OutOfMemory"
                    } else {
                        "Runtime.ExitError"
                    },
                    format!(
                        "RequestId: {request_id} Error: Runtime exited with error: {}",
                        reason.0
                    ),
                ),
                function_error: true,
                status: Some("error"),
                healthy: false,
                stopped_by_shutdown: false,
            },
        }
    }
}

impl super::Run for Arc<Runner> {
    fn run(
        &self,
        function: Arc<FunctionRecord>,
        invoked_arn: String,
        invocation: Invocation,
        log_tail: bool,
    ) -> super::BoxFuture<'_, Result<InvokeResponse, InvokeError>> {
        Box::pin(Runner::run(
            self,
            function,
            invoked_arn,
            invocation,
            log_tail,
        ))
    }
}
