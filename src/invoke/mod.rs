//! The invoke door: every invocation, from every producer, goes through [`InvokeDoor`].
//!
//! A producer (the HTTP API, the async dispatcher, a destination, and later event-source
//! pollers, function URLs, workflows and the event bus) describes what it wants as one
//! [`Invocation`]: the function and qualifier, the payload, the [`Mode`] (sync with an
//! optional log tail, async, dry run), its [`Origin`], trace and client context and
//! request id. The door resolves the function once and then, by mode, runs it
//! ([`runner::Runner`]), queues it durably (the async queue, whose consumer is the
//! dispatcher), or only validates it. It is a trait so that tests (and a future cluster
//! router) can stand in for the local implementation, [`local::LocalInvoker`].
//!
//! Its errors ([`InvokeError`]) are typed; they are turned into the wire format in one
//! place, `api/error.rs`.

pub mod local;
pub mod runner;

/// A new request id (a random UUID v4) for an invocation or an API request: drawn from a
/// fast user-space generator, since ids name requests and are no secret (credentials and
/// revision ids keep the system's random source).
pub fn new_request_id() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    bytes[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub use local::LocalInvoker;
pub use runner::{InvokeResponse, Runner};

use crate::scheduler::Throttle;

/// A boxed future, as the doors' trait methods return (object-safe async).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the caller wants the invocation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run it now and answer with its result (`RequestResponse`), with the last 4 KB of
    /// its log when `log_tail` is set.
    Sync { log_tail: bool },
    /// Queue it durably and answer at once (`Event`).
    Async,
    /// Only check that it could run (`DryRun`).
    DryRun,
}

/// Who asked for an invocation: carried into its tracing span and its log. (Function
/// URLs, event-source mappings, workflows and the bus are the producers that come with
/// their services.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Origin {
    /// The Invoke operation of the API.
    Api,
    /// The async queue running an event it accepted earlier.
    AsyncQueue,
    /// An asynchronous invocation's destination (the execution record of another one).
    Destination,
    /// A function URL or HTTP API route.
    FunctionUrl,
    /// An event source mapping or subscription, by its ARN or id.
    EventSource(String),
    /// A workflow task, by its execution ARN.
    Workflow(String),
    /// An event-bus rule or schedule, by its ARN.
    Bus(String),
}

impl Origin {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::AsyncQueue => "async",
            Self::Destination => "destination",
            Self::FunctionUrl => "url",
            Self::EventSource(_) => "event-source",
            Self::Workflow(_) => "workflow",
            Self::Bus(_) => "bus",
        }
    }
}

/// One invocation, as every producer describes it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The function's key (see `crate::region`): its name in the home region,
    /// `region/name` in another.
    pub function: String,
    /// A version number, `$LATEST` or an alias; `None` is `$LATEST`.
    pub qualifier: Option<String>,
    pub payload: Bytes,
    pub mode: Mode,
    pub origin: Origin,
    /// `X-Amzn-Trace-Id`, followed through every hop; a new one is made when absent.
    pub trace_id: Option<String>,
    /// The client context (JSON), as the runtime receives it.
    pub client_context: Option<String>,
    /// The request id to use (an async event keeps the one its 202 announced).
    pub request_id: Option<String>,
    /// How long a throttled invocation waits for capacity before it is refused: none for
    /// a caller that gets its 429 (as on Lambda), a while for a consumer of a backlog.
    pub admission_wait: std::time::Duration,
    /// A synchronous caller that reads the response as the function streams it (see
    /// `crate::environment::response_stream`).
    pub stream: Option<crate::environment::response_stream::StreamSink>,
}

impl Invocation {
    pub fn new(function: impl Into<String>, payload: Bytes, mode: Mode, origin: Origin) -> Self {
        Self {
            function: function.into(),
            qualifier: None,
            payload,
            mode,
            origin,
            trace_id: None,
            client_context: None,
            request_id: None,
            admission_wait: std::time::Duration::ZERO,
            stream: None,
        }
    }

    pub fn qualifier(mut self, qualifier: Option<String>) -> Self {
        self.qualifier = qualifier.filter(|q| !q.is_empty());
        self
    }

    pub fn trace_id(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }

    pub fn client_context(mut self, client_context: Option<String>) -> Self {
        self.client_context = client_context;
        self
    }

    /// Streams a synchronous invocation's response to `sink` as the function writes it.
    pub fn stream(mut self, sink: crate::environment::response_stream::StreamSink) -> Self {
        self.stream = Some(sink);
        self
    }

    pub fn request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn admission_wait(mut self, wait: std::time::Duration) -> Self {
        self.admission_wait = wait;
        self
    }
}

/// What the door did with an invocation.
#[derive(Debug)]
pub enum InvokeOutcome {
    /// It ran (sync): its result, a function error included.
    Completed(InvokeResponse),
    /// It is durably queued (async) under this request id.
    Queued { request_id: String },
    /// It would run (dry run).
    Validated,
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No such function, or no such version or alias of it (its ARN).
    #[error("Function not found: {0}")]
    NotFound(String),
    /// The payload is not JSON (the parser's reason).
    #[error("Could not parse request body into json: Could not parse payload into json: {0}")]
    InvalidPayload(String),
    #[error("{}", .0.message())]
    Throttled(Throttle),
    /// An environment could not be started for a reason of the server's.
    #[error("the execution environment could not be started: {0}")]
    Start(#[from] crate::environment::StartError),
    /// The task running the invocation failed (a bug).
    #[error("the invocation task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The data disk has no room for what the invocation needs (an async event, a cold
    /// start's `/tmp`).
    #[error("{0}")]
    DiskFull(String),
    /// The async queue did not take the event.
    #[error(transparent)]
    Queue(#[from] crate::dispatcher::AcceptError),
    /// The server is shutting down and starts no invocation.
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl From<crate::disk::DiskFull> for InvokeError {
    fn from(e: crate::disk::DiskFull) -> Self {
        Self::DiskFull(e.to_string())
    }
}

/// Runs one synchronous invocation of a resolved version: the [`Runner`], or a fake in
/// tests of the door.
pub trait Run: Send + Sync {
    fn run(
        &self,
        function: std::sync::Arc<crate::function::FunctionRecord>,
        invoked_arn: String,
        invocation: Invocation,
        log_tail: bool,
    ) -> BoxFuture<'_, Result<InvokeResponse, InvokeError>>;
}

/// The one interface every producer of invocations calls.
pub trait InvokeDoor: Send + Sync {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'_, Result<InvokeOutcome, InvokeError>>;
}
