//! The Invoke operation (`POST /2015-03-31/functions/{name}/invocations`): headers and
//! payload checked here, the invocation itself (sync, async or dry run) handed to the
//! invoke door.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::Scope;
use super::eventstream;
use super::{ApiError, SharedState, read_body};
use crate::invoke::{Invocation, InvokeOutcome, Mode, Origin};

/// Lambda's quota for a synchronous request payload.
pub const PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// Lambda's quota for `X-Amz-Client-Context` (decoded).
const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;

#[derive(Deserialize)]
pub struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The mode `X-Amz-Invocation-Type` and `X-Amz-Log-Type` ask for.
fn mode(headers: &HeaderMap) -> Result<Mode, ApiError> {
    let log_tail = wants_tail(headers)?;
    match header(headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Ok(Mode::Sync { log_tail }),
        Some("Event") => Ok(Mode::Async),
        Some("DryRun") => Ok(Mode::DryRun),
        Some(other) => Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: \
             Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ))),
    }
}

fn wants_tail(headers: &HeaderMap) -> Result<bool, ApiError> {
    match header(headers, "x-amz-log-type") {
        None | Some("None") => Ok(false),
        Some("Tail") => Ok(true),
        Some(other) => Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: \
             Member must satisfy enum value set: [None, Tail]"
        ))),
    }
}

fn client_context(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(encoded) = header(headers, "x-amz-client-context") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".into(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid())?;
    if decoded.len() > CLIENT_CONTEXT_MAX_BYTES {
        return Err(ApiError::InvalidRequestContent(format!(
            "Client context must be smaller than {CLIENT_CONTEXT_MAX_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| invalid())?;
    if !value.is_object() {
        return Err(invalid());
    }
    // Re-serialised compactly: a valid header value with no line breaks.
    Ok(Some(value.to_string()))
}

/// The function an invoke names and the qualifier (the query's, else the name's).
fn target(
    scope: &Scope,
    raw: &str,
    query: InvokeQuery,
) -> Result<(String, Option<String>), ApiError> {
    let reference = super::function_ref(scope, raw)?;
    let qualifier = query
        .qualifier
        .filter(|q| !q.is_empty())
        .or(reference.qualifier);
    if let Some(q) = qualifier.as_deref() {
        crate::function::validate_qualifier(q)?;
    }
    Ok((reference.name, qualifier))
}

pub async fn invoke(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let mode = mode(&headers)?;
    let client_context = client_context(&headers)?;
    let (limit, operation) = match mode {
        Mode::Async => (state.async_payload_max, "InvokeAsync"),
        _ => (PAYLOAD_MAX_BYTES, "InvokeFunction"),
    };
    let payload = read_body(body, limit, || {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the {operation} operation"
        ))
    })
    .await?;
    let invocation = Invocation::new(scope.owned_key(name), payload, mode, Origin::Api)
        .qualifier(qualifier)
        .trace_id(header(&headers, "x-amzn-trace-id").map(str::to_string))
        .client_context(client_context);
    let response = match state.invoke.invoke(invocation).await? {
        InvokeOutcome::Completed(response) => response,
        InvokeOutcome::Queued { request_id } => {
            let mut accepted = StatusCode::ACCEPTED.into_response();
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                accepted.headers_mut().insert("x-amzn-requestid", id);
            }
            return Ok(accepted);
        }
        InvokeOutcome::Validated => return Ok(StatusCode::NO_CONTENT.into_response()),
    };
    let mut http = (StatusCode::OK, response.payload).into_response();
    let out = http.headers_mut();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(version) = HeaderValue::from_str(&response.executed_version) {
        out.insert("x-amz-executed-version", version);
    }
    if let Ok(id) = HeaderValue::from_str(&response.request_id) {
        out.insert("x-amzn-requestid", id);
    }
    if let Some(kind) = response.function_error {
        out.insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    if let Some(tail) = response.log_tail {
        let encoded = base64::engine::general_purpose::STANDARD.encode(tail);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            out.insert("x-amz-log-result", value);
        }
    }
    Ok(http)
}

/// InvokeWithResponseStream (`POST /2021-11-15/functions/{name}/response-streaming-invocations`):
/// the response as an event stream of `PayloadChunk`s as the function writes them, then
/// one `InvokeComplete` (with the error, if the function failed, and the log tail when
/// asked for). Errors before anything was streamed (no such function, a throttle) are
/// answered as Invoke answers them.
pub async fn invoke_stream(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let log_tail = wants_tail(&headers)?;
    let mode = match header(&headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Mode::Sync { log_tail },
        Some("DryRun") => Mode::DryRun,
        Some(other) => {
            return Err(ApiError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: \
                 Member must satisfy enum value set: [RequestResponse, DryRun]"
            )));
        }
    };
    let client_context = client_context(&headers)?;
    let payload = read_body(body, PAYLOAD_MAX_BYTES, || {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {PAYLOAD_MAX_BYTES} bytes for the InvokeWithResponseStream operation"
        ))
    })
    .await?;
    let invocation = Invocation::new(scope.owned_key(name.clone()), payload, mode, Origin::Api)
        .qualifier(qualifier.clone())
        .trace_id(header(&headers, "x-amzn-trace-id").map(str::to_string))
        .client_context(client_context);
    if mode == Mode::DryRun {
        state.invoke.invoke(invocation).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (content_type, version) =
        match super::streamed::begin(state.invoke.clone(), invocation).await {
            super::streamed::Began::Finished(outcome) => {
                // Nothing was streamed: the whole answer (or the error) at once.
                let InvokeOutcome::Completed(response) = outcome? else {
                    return Err(ApiError::Service("the invocation did not complete".into()));
                };
                let version = response.executed_version.clone();
                if response.function_error.is_none() && !response.payload.is_empty() {
                    let _ = tx
                        .send(eventstream::event(
                            "PayloadChunk",
                            "application/octet-stream",
                            &response.payload,
                        ))
                        .await;
                }
                let _ = tx
                    .send(complete(Ok(InvokeOutcome::Completed(response))))
                    .await;
                drop(tx);
                (None, version)
            }
            super::streamed::Began::Streaming {
                content_type,
                mut tail,
            } => {
                tokio::spawn(async move {
                    loop {
                        match tail.next().await {
                            super::streamed::Next::Chunk(chunk) => {
                                let event = eventstream::event(
                                    "PayloadChunk",
                                    "application/octet-stream",
                                    &chunk,
                                );
                                if tx.send(event).await.is_err() {
                                    // The client left; the invocation runs to its end.
                                    return;
                                }
                            }
                            super::streamed::Next::End(outcome) => {
                                let _ = tx.send(complete(outcome)).await;
                                return;
                            }
                        }
                    }
                });
                let document = state.registry.get(&scope.key(&name));
                let version = document
                    .and_then(|d| {
                        d.primary_version(qualifier.as_deref().unwrap_or(crate::function::LATEST))
                    })
                    .unwrap_or_else(|| crate::function::LATEST.to_string());
                (content_type, version)
            }
        };
    let mut http = Response::new(Body::new(eventstream::ChannelBody(rx)));
    let out = http.headers_mut();
    out.insert(
        "content-type",
        HeaderValue::from_str(
            content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(version) = HeaderValue::from_str(&version) {
        out.insert("x-amz-executed-version", version);
    }
    Ok(http)
}

/// The `InvokeComplete` event of an outcome: the function's error type and message when
/// it failed, the log tail when asked for.
fn complete(outcome: super::streamed::Outcome) -> bytes::Bytes {
    let mut body = serde_json::json!({});
    match outcome {
        Ok(InvokeOutcome::Completed(response)) => {
            if response.function_error.is_some() {
                let error: serde_json::Value =
                    serde_json::from_slice(&response.payload).unwrap_or_default();
                body["ErrorCode"] = error
                    .get("errorType")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!("Unhandled"));
                body["ErrorDetails"] = error.get("errorMessage").cloned().unwrap_or_else(|| {
                    serde_json::json!(String::from_utf8_lossy(&response.payload))
                });
            }
            if let Some(tail) = response.log_tail {
                body["LogResult"] =
                    serde_json::json!(base64::engine::general_purpose::STANDARD.encode(tail));
            }
        }
        Ok(_) => {}
        Err(e) => {
            let error = ApiError::from(e);
            body["ErrorCode"] = serde_json::json!(error.code());
            body["ErrorDetails"] = serde_json::json!(error.to_string());
        }
    }
    eventstream::event(
        "InvokeComplete",
        "application/json",
        body.to_string().as_bytes(),
    )
}
