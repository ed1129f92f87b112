//! The Lambda Runtime API of one environment (`/2018-06-01/runtime/...`).
//!
//! Each environment gets its own listener, so an environment can only ever see its own
//! events: the endpoint holds no reference to any other. The runtime long-polls
//! `invocation/next`, which hands over the next [`Dispatch`]; `response` and `error`
//! complete the invocation whose id they name; `init/error` fails the init phase.
//! Status codes and bodies follow AWS's Runtime API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot, watch};

/// Lambda's limit on a synchronous response (6 MB).
pub const RESPONSE_MAX_BYTES: usize = 6 * 1024 * 1024;
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
    inflight: Mutex<HashMap<String, oneshot::Sender<RuntimeOutcome>>>,
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
    fn claim(&self, request_id: &str) -> Option<oneshot::Sender<RuntimeOutcome>> {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id)
    }

    /// Puts back an invocation whose outcome could not be read.
    fn restore(&self, request_id: String, reply: oneshot::Sender<RuntimeOutcome>) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, reply);
    }
}

type ApiResponse = Response<Full<Bytes>>;

fn json(status: StatusCode, body: serde_json::Value) -> ApiResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, error_type: &str, message: &str) -> ApiResponse {
    json(
        status,
        serde_json::json!({ "errorType": error_type, "errorMessage": message }),
    )
}

/// `202 {"status":"OK"}`, the answer to every accepted post (built from static parts: it
/// is on the path of every invocation).
fn accepted() -> ApiResponse {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)))
        .expect("static response parts are valid")
}

/// Serves one request of the Runtime API.
pub async fn handle(
    state: Arc<RuntimeApiState>,
    req: Request<Incoming>,
) -> Result<ApiResponse, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API path",
        ));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    Ok(match (method, segments.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(&state).await,
        // Bodies are read only for an invocation in flight (claimed first, so that two
        // posts for one id never both buffer a body) and only under their limits.
        (Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            let Some(reply) = state.claim(&id) else {
                return Ok(unknown_request(&id));
            };
            match Limited::new(req.into_body(), RESPONSE_MAX_BYTES)
                .collect()
                .await
            {
                Ok(body) => {
                    // The invoker may have given up (timeout); the outcome then has no reader.
                    let _ = reply.send(RuntimeOutcome::Response(body.to_bytes()));
                    accepted()
                }
                Err(e) if e.is::<LengthLimitError>() => {
                    let _ = reply.send(RuntimeOutcome::ResponseTooLarge);
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!(
                            "Exceeded maximum allowed payload size ({RESPONSE_MAX_BYTES} bytes)."
                        ),
                    )
                }
                Err(_) => {
                    // The body was cut off (the connection broke): the runtime may post again.
                    state.restore(id, reply);
                    error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        "the response body could not be read",
                    )
                }
            }
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            let Some(reply) = state.claim(&id) else {
                return Ok(unknown_request(&id));
            };
            let (error_type, body) = read_error(req).await;
            let _ = reply.send(RuntimeOutcome::Error { error_type, body });
            accepted()
        }
        (Method::POST, ["init", "error"]) => {
            let initializing = || matches!(*state.init.borrow(), InitState::Initializing);
            if !initializing() {
                return Ok(init_error_too_late());
            }
            let (error_type, body) = read_error(req).await;
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
    })
}

fn init_error_too_late() -> ApiResponse {
    error(
        StatusCode::FORBIDDEN,
        "InvalidStateTransition",
        "init/error is only valid during the init phase",
    )
}

fn unknown_request(id: &str) -> ApiResponse {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("Invalid request ID: {id}"),
    )
}

async fn read_error(req: Request<Incoming>) -> (Option<String>, Bytes) {
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), ERROR_MAX_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    (error_type, body)
}

async fn next(state: &RuntimeApiState) -> ApiResponse {
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
    state
        .inflight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dispatch.request_id.clone(), dispatch.reply);
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &dispatch.request_id)
        .header(
            "lambda-runtime-deadline-ms",
            dispatch.deadline_ms.to_string(),
        )
        .header("lambda-runtime-invoked-function-arn", &dispatch.invoked_arn)
        .header("lambda-runtime-trace-id", &dispatch.trace_id);
    if let Some(context) = &dispatch.client_context {
        builder = builder.header("lambda-runtime-client-context", context);
    }
    builder
        .body(Full::new(dispatch.payload))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "invalid event headers",
            )
        })
}
