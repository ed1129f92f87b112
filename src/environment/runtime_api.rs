//! The Lambda Runtime API of one environment (`/2018-06-01/runtime/...`).
//!
//! Each environment gets its own listener, so an environment can only ever see its own
//! events: the endpoint holds no reference to any other. The runtime long-polls
//! `invocation/next`, which hands over the next [`Dispatch`]; `response` and `error`
//! complete the invocation whose id they name; `init/error` fails the init phase.
//! Status codes and bodies follow AWS's Runtime API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::sync::{mpsc, oneshot, watch};

use super::response_stream::{STREAM_MAX_BYTES, StreamPart, StreamSink};
use super::runtime_http::{Answer, BodyError, Connection, Head};

/// Lambda's limit on a synchronous response: 6 MB and 100 bytes (6,291,556, the figure
/// its error names).
pub const RESPONSE_MAX_BYTES: usize = 6 * 1024 * 1024 + 100;
/// Error bodies are small; a larger one is cut off.
const ERROR_MAX_BYTES: usize = 1024 * 1024;

/// One invocation handed to the runtime.
pub struct Dispatch {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: u64,
    pub trace_id: String,
    pub client_context: Option<String>,
    /// The ARN the caller invoked (qualified when a version or alias was named).
    pub invoked_arn: String,
    pub reply: oneshot::Sender<RuntimeOutcome>,
    /// Where a streamed response goes as it comes (the caller asked for a stream).
    pub stream: Option<StreamSink>,
}

/// An invocation handed to the runtime and not answered yet.
struct Pending {
    reply: oneshot::Sender<RuntimeOutcome>,
    stream: Option<StreamSink>,
}

/// What the runtime reported for an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeOutcome {
    Response(Bytes),
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
    /// The response exceeded [`RESPONSE_MAX_BYTES`].
    ResponseTooLarge,
    /// A streamed response ended: the payload (whole when no one read the stream, else
    /// empty: its pieces went to the stream), and the error its trailers reported, if any.
    Streamed {
        payload: Bytes,
        error: Option<(Option<String>, Bytes)>,
    },
}

/// The init phase, as the runtime reports it.
#[derive(Debug, Clone)]
pub enum InitState {
    Initializing,
    /// The runtime asked for its first event at this instant.
    Ready(Instant),
    Failed {
        error_type: Option<String>,
        body: Bytes,
    },
}

pub struct RuntimeApiState {
    inbox: tokio::sync::Mutex<mpsc::Receiver<Dispatch>>,
    inflight: Mutex<HashMap<String, Pending>>,
    pub init: watch::Sender<InitState>,
}

impl RuntimeApiState {
    pub fn new(inbox: mpsc::Receiver<Dispatch>) -> Self {
        Self {
            inbox: tokio::sync::Mutex::new(inbox),
            inflight: Mutex::new(HashMap::new()),
            init: watch::Sender::new(InitState::Initializing),
        }
    }

    /// Takes the invocation `request_id` out of the in-flight set: the caller completes it.
    fn claim(&self, request_id: &str) -> Option<Pending> {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id)
    }

    /// Puts back an invocation whose outcome could not be read.
    fn restore(&self, request_id: String, pending: Pending) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, pending);
    }
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Answer {
    Answer::json(
        status,
        serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string(),
    )
}

/// `202 {"status":"OK"}`, the answer to every accepted post (built from static parts: it
/// is on the path of every invocation).
fn accepted() -> Answer {
    Answer::json(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"status":"OK"}"#),
    )
}

/// Serves one Runtime API connection until it closes.
pub async fn serve_connection(state: Arc<RuntimeApiState>, mut conn: Connection) {
    while let Some(head) = conn.next_head().await {
        let answer = handle(&state, head, &mut conn).await;
        if !conn.answer(answer).await {
            break;
        }
    }
}

/// Answers one request of the Runtime API.
async fn handle(state: &RuntimeApiState, head: Head, conn: &mut Connection) -> Answer {
    let Some(rest) = head.path.strip_prefix("/2018-06-01/runtime/") else {
        return error(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API path",
        );
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (&head.method, segments.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(state).await,
        // Bodies are read only for an invocation in flight (claimed first, so that two
        // posts for one id never both buffer a body) and only under their limits.
        (&Method::POST, ["invocation", id, "response"]) if head.streaming => {
            let id = id.to_string();
            let Some(pending) = state.claim(&id) else {
                return unknown_request(&id);
            };
            stream_response(&head, conn, pending).await
        }
        (&Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            let Some(pending) = state.claim(&id) else {
                return unknown_request(&id);
            };
            let reply = pending.reply;
            match conn.read_body(RESPONSE_MAX_BYTES).await {
                Ok(body) => {
                    // The invoker may have given up (timeout); the outcome then has no reader.
                    let _ = reply.send(RuntimeOutcome::Response(body));
                    accepted()
                }
                Err(BodyError::TooLarge) => {
                    let _ = reply.send(RuntimeOutcome::ResponseTooLarge);
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!(
                            "Exceeded maximum allowed payload size ({RESPONSE_MAX_BYTES} bytes)."
                        ),
                    )
                }
                Err(BodyError::Broken) => {
                    // The body was cut off (the connection broke): the runtime may post again.
                    state.restore(
                        id,
                        Pending {
                            reply,
                            stream: pending.stream,
                        },
                    );
                    error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        "the response body could not be read",
                    )
                }
            }
        }
        (&Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            let Some(pending) = state.claim(&id) else {
                return unknown_request(&id);
            };
            let (error_type, body) = read_error(&head, conn).await;
            let _ = pending
                .reply
                .send(RuntimeOutcome::Error { error_type, body });
            accepted()
        }
        (&Method::POST, ["init", "error"]) => {
            let initializing = || matches!(*state.init.borrow(), InitState::Initializing);
            if !initializing() {
                return init_error_too_late();
            }
            let (error_type, body) = read_error(&head, conn).await;
            let failed = state.init.send_if_modified(|s| {
                if matches!(s, InitState::Initializing) {
                    *s = InitState::Failed {
                        error_type: error_type.clone(),
                        body: body.clone(),
                    };
                    true
                } else {
                    false
                }
            });
            if failed {
                accepted()
            } else {
                init_error_too_late()
            }
        }
        (_, ["invocation", "next"]) | (_, ["invocation", _, _]) | (_, ["init", "error"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "method not allowed",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API path",
        ),
    }
}

/// Reads a streamed response (`Lambda-Runtime-Function-Response-Mode: streaming`) as it
/// comes: each piece goes to the invocation's stream when it has one (else it is gathered
/// into the payload), up to [`STREAM_MAX_BYTES`]; the body's trailers
/// `Lambda-Runtime-Function-Error-Type` and `-Error-Body` (base64) report an error that
/// happened mid-stream.
async fn stream_response(head: &Head, conn: &mut Connection, pending: Pending) -> Answer {
    let Pending { reply, mut stream } = pending;
    if let Some(sink) = &stream
        && sink
            .send(StreamPart::Start {
                content_type: head.content_type.clone(),
            })
            .await
            .is_err()
    {
        // The reader is gone (its client left): the rest is read and dropped.
        stream = None;
    }
    let mut gathered = bytes::BytesMut::new();
    let mut total = 0usize;
    let mut overflowed = false;
    let too_large = || {
        (
            Some("Function.ResponseSizeTooLarge".to_string()),
            Bytes::from(
                serde_json::json!({
                    "errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": format!(
                        "Response payload size exceeded maximum allowed payload streaming size ({STREAM_MAX_BYTES} bytes)."
                    ),
                })
                .to_string(),
            ),
        )
    };
    let error = loop {
        match conn.read_piece(STREAM_MAX_BYTES - total).await {
            Ok(Some(piece)) if piece.is_empty() => {}
            Ok(Some(piece)) => {
                total += piece.len();
                match &stream {
                    Some(sink) => {
                        if sink.send(StreamPart::Chunk(piece)).await.is_err() {
                            stream = None;
                        }
                    }
                    None if total <= RESPONSE_MAX_BYTES => gathered.extend_from_slice(&piece),
                    // A buffered caller gets at most a buffered response's worth.
                    None => overflowed = true,
                }
            }
            Ok(None) => {
                break conn
                    .trailer("lambda-runtime-function-error-type")
                    .map(|error_type| {
                        let body = conn
                            .trailer("lambda-runtime-function-error-body")
                            .and_then(|b| {
                                base64::Engine::decode(
                                    &base64::engine::general_purpose::STANDARD,
                                    b,
                                )
                                .ok()
                            })
                            .unwrap_or_default();
                        (Some(error_type.to_string()), Bytes::from(body))
                    });
            }
            Err(BodyError::TooLarge) => break Some(too_large()),
            Err(BodyError::Broken) => {
                break Some((
                    Some("Runtime.StreamError".to_string()),
                    Bytes::from_static(
                        br#"{"errorType":"Runtime.StreamError","errorMessage":"the streamed response was cut off"}"#,
                    ),
                ));
            }
        }
    };
    let outcome = if overflowed && error.is_none() {
        RuntimeOutcome::ResponseTooLarge
    } else {
        RuntimeOutcome::Streamed {
            payload: gathered.freeze(),
            error,
        }
    };
    let _ = reply.send(outcome);
    accepted()
}

fn init_error_too_late() -> Answer {
    error(
        StatusCode::FORBIDDEN,
        "InvalidStateTransition",
        "init/error is only valid during the init phase",
    )
}

fn unknown_request(id: &str) -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("Invalid request ID: {id}"),
    )
}

async fn read_error(head: &Head, conn: &mut Connection) -> (Option<String>, Bytes) {
    let error_type = head.function_error_type.clone();
    let body = conn.read_body(ERROR_MAX_BYTES).await.unwrap_or_default();
    (error_type, body)
}

async fn next(state: &RuntimeApiState) -> Answer {
    state.init.send_if_modified(|s| {
        if matches!(s, InitState::Initializing) {
            *s = InitState::Ready(Instant::now());
            true
        } else {
            false
        }
    });
    let dispatch = {
        let mut inbox = state.inbox.lock().await;
        inbox.recv().await
    };
    let Some(dispatch) = dispatch else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the environment is shutting down",
        );
    };
    let request_id = dispatch.request_id.clone();
    state
        .inflight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            dispatch.request_id,
            Pending {
                reply: dispatch.reply,
                stream: dispatch.stream,
            },
        );
    let answer = Answer::json(StatusCode::OK, dispatch.payload)
        .header("lambda-runtime-aws-request-id", request_id)
        .and_then(|a| {
            a.header(
                "lambda-runtime-deadline-ms",
                dispatch.deadline_ms.to_string(),
            )
        })
        .and_then(|a| a.header("lambda-runtime-invoked-function-arn", dispatch.invoked_arn))
        .and_then(|a| a.header("lambda-runtime-trace-id", dispatch.trace_id));
    let answer = match (answer, dispatch.client_context) {
        (Some(answer), Some(context)) => answer.header("lambda-runtime-client-context", context),
        (answer, None) => answer,
        (None, Some(_)) => None,
    };
    answer.unwrap_or_else(|| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "invalid event headers",
        )
    })
}
