//! The public HTTP surface: Lambda's REST API (2015-03-31 and friends), Shoal's own
//! `/shoal/v1` endpoints (logs, code download) and `/health`.
//!
//! This layer only translates: it parses requests into typed values, calls the registry
//! or the invoke service, and renders results and [`ApiError`]s in Lambda's wire format.
//! Bodies are read with a hard limit before anything is buffered beyond it. Every request
//! runs in a `tracing` span carrying its request id, which is also returned as
//! `x-amzn-RequestId`.

mod aliases;
mod async_config;
mod concurrency;
pub mod error;
mod functions;
mod invoke;
mod logs;
mod sqs;
mod tags;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

pub use concurrency::sync_provisioned;
pub use error::ApiError;

use crate::function::ArnContext;
use crate::invoke::Invoker;
use crate::registry::{Registry, RegistryError};
use crate::scheduler::Scheduler;

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub scheduler: Arc<Scheduler>,
    pub invoker: Arc<Invoker>,
    pub logs: crate::logs::LogSink,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub dispatcher: Arc<crate::dispatcher::Dispatcher>,
    pub queues: Arc<crate::queues::QueueService>,
    /// The data disk's budget: checked before async events, queue messages and code
    /// packages are written.
    pub disk: Arc<crate::disk::DiskBudget>,
    /// Largest payload of an asynchronous invocation.
    pub async_payload_max: usize,
    pub arns: ArnContext,
    /// Access key id -> secret; `None` runs the API open (loopback only).
    pub keys: Option<std::collections::HashMap<String, String>>,
    /// Why environments cannot be given network egress here (`None`: they can).
    pub egress_unavailable: Option<String>,
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/2015-03-31/functions",
            post(functions::create).get(functions::list),
        )
        .route(
            "/2015-03-31/functions/",
            post(functions::create).get(functions::list),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(functions::get).delete(functions::delete),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(functions::get_configuration).put(functions::update_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            put(functions::update_code),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(functions::publish_version).get(functions::list_versions),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(aliases::create).get(aliases::list),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(aliases::get)
                .put(aliases::update)
                .delete(aliases::delete),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(concurrency::put_reserved).delete(concurrency::delete_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(concurrency::put_provisioned)
                .get(concurrency::get_provisioned)
                .delete(concurrency::delete_provisioned),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(async_config::put)
                .post(async_config::update)
                .get(async_config::get)
                .delete(async_config::delete),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(async_config::list),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            post(tags::tag).delete(tags::untag).get(tags::list),
        )
        .route("/metrics", get(metrics))
        .route("/", post(sqs::handle))
        .route(
            "/2016-08-19/account-settings",
            get(functions::account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(functions::account_settings),
        )
        .route("/shoal/v1/functions/{name}/logs", get(logs::read))
        .route(
            "/shoal/v1/functions/{name}/async-events",
            get(async_config::pending),
        )
        .route(
            "/shoal/v1/functions/{name}/code.zip",
            get(functions::download_code),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> impl axum::response::IntoResponse {
    let mut gauges = state.scheduler.gauges();
    for (function, depth, oldest_age_ms) in state.dispatcher.depth().await {
        let labels = vec![("function", function)];
        gauges.push(crate::metrics::Gauge {
            name: crate::metrics::names::ASYNC_DEPTH,
            labels: labels.clone(),
            value: depth,
        });
        gauges.push(crate::metrics::Gauge {
            name: crate::metrics::names::ASYNC_AGE,
            labels,
            value: oldest_age_ms,
        });
    }
    let text = state.metrics.render(gauges);
    ([("content-type", "text/plain; version=0.0.4")], text)
}

async fn unknown_operation(request: Request) -> ApiError {
    ApiError::UnknownOperation(format!(
        "No operation matches {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Gives each request a span and an `x-amzn-RequestId` (unless the handler set its own).
async fn request_context(request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    if let (false, Ok(value)) = (
        response.headers().contains_key("x-amzn-requestid"),
        HeaderValue::from_str(&request_id),
    ) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// The largest body any operation accepts (a base64 zip upload); authentication reads
/// bodies up to this to hash them, each operation then applies its own, smaller limit.
const ANY_BODY_MAX: usize = 70 * 1024 * 1024;
/// The service name requests are signed for.
const SIGNING_SERVICE: &str = "lambda";

/// Verifies the AWS SigV4 signature of every request except `/health` when keys are
/// configured; an open server (loopback only) lets every request through.
async fn authenticate(
    axum::extract::State(state): axum::extract::State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(keys) = &state.keys else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let mut signed = crate::sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        payload_sha256: String::new(),
    };
    let now = crate::timefmt::now_ms() / 1000;
    let refuse = |e: crate::sigv4::AuthError| {
        tracing::info!(error = %e, "request refused: authentication failed");
        axum::response::IntoResponse::into_response(ApiError::Forbidden {
            code: e.code(),
            message: e.to_string(),
        })
    };
    // Queue requests are signed for SQS, everything else for Lambda.
    let service = if signed.path == "/"
        && signed
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("x-amz-target") && v.starts_with("AmazonSQS."))
    {
        "sqs"
    } else {
        SIGNING_SERVICE
    };
    // Everything that needs no body is checked before any of it is read.
    if let Err(e) = crate::sigv4::check_headers(&signed, keys, now, service) {
        return refuse(e);
    }
    let bytes = match read_body(body, ANY_BODY_MAX, || {
        ApiError::RequestTooLarge(format!("Request must be smaller than {ANY_BODY_MAX} bytes"))
    })
    .await
    {
        Ok(bytes) => bytes,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    signed.payload_sha256 = crate::sigv4::sha256_hex(&bytes);
    match crate::sigv4::verify(&signed, keys, now, service) {
        Ok(access_key) => {
            tracing::trace!(%access_key, "request authenticated");
            drop(signed);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => refuse(e),
    }
}

/// Oversized bodies up to this size are read (and discarded) before the 413 is sent.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Reads a request body, refusing it once it passes `limit` bytes.
pub async fn read_body(
    body: Body,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    // A declared Content-Length over the limit is refused without buffering anything.
    // A moderately large body is read and discarded first, so that the client, still
    // sending, gets to read the 413 instead of a reset connection.
    let declared = hyper::body::Body::size_hint(&body).lower();
    if declared > limit as u64 {
        if declared <= DRAIN_MAX {
            let mut body = body;
            let drain = async {
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        }
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::InvalidRequestContent(format!(
            "Could not read the request body: {e}"
        ))),
    }
}

/// Parses a JSON body into `T`, naming the offending field on a type error.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(b"{}").map_err(|e| {
            ApiError::InvalidRequestContent(format!("The request body is empty: {e}"))
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidRequestContent(format!(
                "Could not parse request body into json: {inner}"
            ))
        } else if path == "." {
            ApiError::InvalidParameterValue(format!("Invalid request: {inner}"))
        } else {
            ApiError::InvalidParameterValue(format!("Invalid value for '{path}': {inner}"))
        }
    })
}

/// A function reference of a request, parsed, and refused when it names another
/// account's function (403, as AWS answers a caller without permission on it) or another
/// region's (400: this endpoint serves its own region).
pub(crate) fn function_ref(
    state: &SharedState,
    raw: &str,
) -> Result<crate::function::FunctionRef, ApiError> {
    let reference = crate::function::parse_function_ref(raw)?;
    match state.arns.foreign(&reference) {
        None => Ok(reference),
        Some(crate::function::Foreign::Account(account)) => Err(ApiError::AccessDenied(format!(
            "User is not authorized to perform this action on resource {raw}: the function \
             belongs to account {account}, not to this server's account {}",
            state.arns.account_id
        ))),
        Some(crate::function::Foreign::Region(region)) => {
            Err(ApiError::InvalidParameterValue(format!(
                "The function ARN {raw} names region {region}, but this endpoint serves {}",
                state.arns.region
            )))
        }
    }
}

/// The function a path names (any qualifier aside) and its document; a 404 when it
/// does not exist.
pub(crate) fn named_function(
    state: &SharedState,
    raw: &str,
) -> Result<(String, Arc<crate::document::FunctionDocument>), ApiError> {
    let name = function_ref(state, raw)?.name;
    let document = state
        .registry
        .require(&name, || state.arns.function_arn(&name))?;
    Ok((name, document))
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) => ApiError::ResourceNotFound(e.to_string()),
            RegistryError::Missing(m) => ApiError::ResourceNotFound(m),
            RegistryError::AlreadyExists(_) => ApiError::ResourceConflict(e.to_string()),
            RegistryError::Conflict(m) => ApiError::ResourceConflict(m),
            RegistryError::PreconditionFailed(m) => ApiError::PreconditionFailed(m),
            RegistryError::Invalid(m) => ApiError::InvalidParameterValue(m),
            RegistryError::Internal(m) => ApiError::Service(m),
        }
    }
}

impl From<crate::function::InvalidField> for ApiError {
    fn from(e: crate::function::InvalidField) -> Self {
        ApiError::InvalidParameterValue(e.0)
    }
}
