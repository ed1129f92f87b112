//! The public HTTP surface: Lambda's REST API (2015-03-31 and friends), Shoal's own
//! `/shoal/v1` endpoints (logs, code download), `/health`, and the wire fronts of other
//! AWS services on `POST /` (see [`fronts`]).
//!
//! This layer only translates: it parses requests into typed values, calls the registry,
//! the control door (after every change to a function, and for what environments are
//! running) or the invoke service, and renders results and [`ApiError`]s in Lambda's wire
//! format.
//! Every request is admitted before anything of its body is read: its route sets the
//! largest body it may have ([`body_limit`]), code uploads wait for one of a few upload
//! slots, and on a keyed server the signature is checked (over the declared
//! `x-amz-content-sha256` when the client sends one, so a forged request is refused
//! without reading its body). Every request runs in a `tracing` span carrying its request
//! id, which is also returned as `x-amzn-RequestId`; every error answer, including those
//! axum makes by itself (extractor rejections), is in the service's error format.

mod aliases;
mod apigw;
mod async_config;
mod concurrency;
pub mod connections;
pub mod error;
mod events;
mod eventstream;
mod fronts;
mod functions;
mod gateway_front;
mod invoke;
mod layers;
mod logs;
mod mappings;
mod policy;
mod query;
mod scheduler;
pub mod scope;
mod sns;
mod sqs;
mod streamed;
mod tags;
mod unconfigured;
mod url_front;
mod urls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

pub use error::ApiError;

use crate::control::Control;
use crate::function::ArnContext;
use crate::invoke::InvokeDoor;
use crate::registry::{Registry, RegistryError};
pub use scope::Scope;

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The door for changes to functions and reads of their environments.
    pub control: Arc<Control>,
    /// The invoke door: every invocation the API asks for goes through it.
    pub invoke: Arc<dyn InvokeDoor>,
    /// The delivery door (destinations are checked against it when configured).
    pub targets: Arc<crate::delivery::Targets>,
    pub logs: crate::logs::LogSink,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub dispatcher: Arc<crate::dispatcher::Dispatcher>,
    pub queues: Arc<crate::queues::QueueService>,
    /// Event source mappings (their pollers run as an event source).
    pub mappings: Arc<crate::mappings::Mappings>,
    /// Topics (their deliverer runs as an event source).
    pub topics: Arc<crate::topics::TopicService>,
    /// Lambda layers.
    pub layers: Arc<crate::layers::Layers>,
    /// HTTP APIs (API Gateway v2).
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Event buses (EventBridge); their deliverer runs as an event source.
    pub bus: Arc<crate::bus::EventBusService>,
    /// Scheduler schedules and groups; their runner is an event source.
    pub schedules: Arc<crate::schedules::SchedulerService>,
    /// The data disk's budget: checked before async events, queue messages and code
    /// packages are written.
    pub disk: Arc<crate::disk::DiskBudget>,
    /// Largest payload of an asynchronous invocation.
    pub async_payload_max: usize,
    /// The account in the data directory's home region.
    pub arns: ArnContext,
    /// The region of unsigned requests (`--region`).
    pub default_region: String,
    /// Access key id -> secret; `None` runs the API open (loopback only).
    pub keys: Option<std::collections::HashMap<String, String>>,
    /// Temporary credentials of live environments, accepted besides `keys`.
    pub credentials: Arc<crate::credentials::CredentialRegistry>,
    /// Why environments cannot be given network egress here (`None`: they can).
    pub egress_unavailable: Option<String>,
    /// Slots for code uploads (the operations of [`BodyLimit::upload`]): held from before
    /// the body is read until the response, so that the memory uploads take is bounded.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// How long a request's body may stop arriving before reading it fails (so that a
    /// stalled upload does not keep its upload slot).
    pub body_silence: std::time::Duration,
    /// The public listener's address (`host:port`), once bound: queue URLs naming it are
    /// this server's on every listener (a function's own endpoint included).
    pub public_addr: std::sync::OnceLock<String>,
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
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            post(invoke::invoke_stream),
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
            "/2015-03-31/event-source-mappings",
            post(mappings::create).get(mappings::list),
        )
        .route(
            "/2015-03-31/event-source-mappings/",
            post(mappings::create).get(mappings::list),
        )
        .route(
            "/2015-03-31/event-source-mappings/{uuid}",
            get(mappings::get)
                .put(mappings::update)
                .delete(mappings::delete),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            post(tags::tag).delete(tags::untag).get(tags::list),
        )
        .route(
            "/2015-03-31/functions/{name}/policy",
            post(policy::add).get(policy::get),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{sid}",
            axum::routing::delete(policy::remove),
        )
        .route("/2018-10-31/layers", get(layers::list_or_find))
        .route(
            "/2018-10-31/layers/{name}/versions",
            post(layers::publish).get(layers::list_versions),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}",
            get(layers::get_version).delete(layers::delete_version),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}/policy",
            post(layers::add_permission).get(layers::get_policy),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}/policy/{sid}",
            axum::routing::delete(layers::remove_permission),
        )
        .route(
            "/shoal/v1/layers/{name}/versions/{version}/content.zip",
            get(layers::download),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(urls::create)
                .get(urls::get)
                .put(urls::update)
                .delete(urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(urls::list))
        .route(
            "/2020-06-30/functions/{name}/code-signing-config",
            get(unconfigured::code_signing_config),
        )
        .merge(apigw::routes())
        .merge(scheduler::routes())
        .route("/metrics", get(metrics))
        .route("/", post(fronts::handle).get(sns::link))
        .route("/{account}/{queue}", post(sqs_at_queue))
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
        .route(
            "/shoal/v1/runtimes/{runtime}",
            get(functions::runtime_report),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .layer(axum::middleware::from_fn(request_context))
        // Function URLs and HTTP APIs are answered in their own format, before the API's
        // authentication.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            url_front::intercept,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gateway_front::intercept,
        ))
        .with_state(state)
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> impl axum::response::IntoResponse {
    let mut gauges = state.control.gauges();
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

/// `POST /<account>/<queue>`: SQS's query protocol sent to a queue's URL; any other
/// two-segment `POST` no route takes is an unknown operation.
async fn sqs_at_queue(
    state: axum::extract::State<SharedState>,
    path: axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let uri_path = request.uri().path().to_string();
    if fronts::front_of(request.method(), &uri_path, &headers).is_none() {
        return axum::response::IntoResponse::into_response(unknown_operation(request).await);
    }
    sqs::query::serve_at_queue(state, path, headers, request.into_body()).await
}

async fn unknown_operation(request: Request) -> ApiError {
    ApiError::UnknownOperation(format!(
        "No operation matches {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Gives each request a span and an `x-amzn-RequestId` (unless the handler set its own),
/// and puts every error answer in the service's format.
async fn request_context(request: Request, next: Next) -> Response {
    let request_id = crate::invoke::new_request_id().to_string();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        caller = tracing::field::Empty,
        principal = tracing::field::Empty,
    );
    // Requests from inside an environment (its platform API endpoint) name it.
    if let Some(caller) = request
        .extensions()
        .get::<Arc<crate::credentials::Caller>>()
    {
        span.record("caller", tracing::field::display(caller));
    }
    let front = fronts::front_of(request.method(), request.uri().path(), request.headers());
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let mut response = in_service_format(response, front).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    if let (false, Ok(value)) = (
        response.headers().contains_key("x-amzn-requestid"),
        HeaderValue::from_str(&request_id),
    ) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// The most of an error body read to reformat it.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// An error answer in the service's format: those axum gives by itself (a path that is
/// not UTF-8, a bad query string, 405, 413) become [`ApiError`]s, and on a wire front's
/// requests Lambda-format errors become that service's. Everything else is returned as it
/// is.
async fn in_service_format(response: Response, front: Option<&fronts::Front>) -> Response {
    let status = response.status();
    let headers = response.headers();
    if !(status.is_client_error() || status.is_server_error())
        || headers.contains_key("x-amzn-query-error")
        || (front.is_none() && headers.contains_key("x-amzn-errortype"))
    {
        return response;
    }
    let lambda_code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = axum::body::to_bytes(response.into_body(), ERROR_BODY_MAX)
        .await
        .unwrap_or_default();
    let Some(front) = front else {
        // A Lambda request: only answers not yet in Lambda's format get here.
        let error = ApiError::from_bare_answer(status, &String::from_utf8_lossy(&text));
        return axum::response::IntoResponse::into_response(error);
    };
    match lambda_code {
        Some(code) => {
            let doc: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            let message = doc
                .get("message")
                .or_else(|| doc.get("Message"))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            (front.error)(status, &code, message)
        }
        None => {
            let error = ApiError::from_bare_answer(status, &String::from_utf8_lossy(&text));
            (front.error)(error.status(), error.code(), &error.to_string())
        }
    }
}

/// Bodies of the operations [`body_limit`] does not name.
pub(crate) const SMALL_BODY_MAX: usize = 1024 * 1024;
/// The largest body of a code upload: a 50 MB zip, base64-encoded, with room for the rest.
pub(crate) const UPLOAD_BODY_MAX: usize = 70 * 1024 * 1024;

/// The largest body one operation accepts, known from its route before anything is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyLimit {
    max: usize,
    operation: &'static str,
    /// A code upload: waits for an upload slot before its body is read.
    upload: bool,
}

impl BodyLimit {
    fn too_large(&self) -> ApiError {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {} bytes for the {} operation",
            self.max, self.operation
        ))
    }
}

/// The body limit of a request: code uploads 70 MB, synchronous invokes 6 MB,
/// asynchronous ones `async_max`, a wire front's requests its own limit (SQS 4 MB),
/// everything else 1 MB.
fn body_limit(method: &Method, path: &str, headers: &HeaderMap, async_max: usize) -> BodyLimit {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let limit = |max, operation| BodyLimit {
        max,
        operation,
        upload: false,
    };
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["2015-03-31", "functions"]) => BodyLimit {
            upload: true,
            ..limit(UPLOAD_BODY_MAX, "CreateFunction")
        },
        ("POST", ["2018-10-31", "layers", _, "versions"]) => BodyLimit {
            upload: true,
            ..limit(UPLOAD_BODY_MAX, "PublishLayerVersion")
        },
        ("PUT", ["2015-03-31", "functions", _, "code"]) => BodyLimit {
            upload: true,
            ..limit(UPLOAD_BODY_MAX, "UpdateFunctionCode")
        },
        (
            "POST",
            [
                "2021-11-15",
                "functions",
                _,
                "response-streaming-invocations",
            ],
        ) => limit(invoke::PAYLOAD_MAX_BYTES, "InvokeWithResponseStream"),
        ("POST", ["2015-03-31", "functions", _, "invocations"]) => {
            if headers
                .get("x-amz-invocation-type")
                .is_some_and(|t| t.as_bytes() == b"Event")
            {
                limit(async_max, "InvokeAsync")
            } else {
                limit(invoke::PAYLOAD_MAX_BYTES, "InvokeFunction")
            }
        }
        _ => match fronts::front_of(method, path, headers) {
            Some(front) => limit(front.body_max, front.name),
            None => limit(SMALL_BODY_MAX, "this"),
        },
    }
}

/// The body length a request declares (`Content-Length`), 0 when it declares none.
fn declared_length(body: &Body) -> u64 {
    hyper::body::Body::size_hint(body).lower()
}

/// A payload hash the client declared (`x-amz-content-sha256` as 64 hex digits), which
/// its signature covers in place of the body's.
fn declared_payload_hash(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-amz-content-sha256")?.to_str().ok()?;
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| value.to_ascii_lowercase())
}

/// Admits a request before its body is read: the route's body limit is applied to the
/// declared length, code uploads wait for an upload slot, and on a keyed server the
/// signature is verified (see [`authenticate`]).
async fn admit(
    axum::extract::State(state): axum::extract::State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = body_limit(
        request.method(),
        request.uri().path(),
        request.headers(),
        state.async_payload_max,
    );
    let silence = state.body_silence;
    let request = request.map(|body| Body::new(SilenceLimited::new(body, silence)));
    if state.keys.is_some() && request.uri().path() != "/health" && !is_message_link(&request) {
        return authenticate(&state, limit, request, next).await;
    }
    if declared_length(request.body()) > limit.max as u64 {
        let (parts, body) = request.into_parts();
        drain(body, expects_continue(&parts.headers)).await;
        return axum::response::IntoResponse::into_response(limit.too_large());
    }
    let _slot = match upload_slot(&state, limit).await {
        Ok(slot) => slot,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    next.run(request).await
}

/// A `GET /?Action=ConfirmSubscription|Unsubscribe&...`: a link SNS puts in the messages
/// it sends, followed without a signature (its token, or the subscription's ARN, is what
/// it is allowed by, as on SNS).
fn is_message_link(request: &Request) -> bool {
    request.method() == Method::GET
        && request.uri().path() == "/"
        && request.uri().query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "Action" && sns::LINK_ACTIONS.contains(&v.as_ref()))
        })
}

/// A request body that fails once nothing of it has arrived for `silence` (counted from
/// when it is first read, and again after each frame).
struct SilenceLimited {
    inner: Body,
    silence: std::time::Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    started: bool,
}

impl SilenceLimited {
    fn new(inner: Body, silence: std::time::Duration) -> Self {
        Self {
            inner,
            silence,
            timer: Box::pin(tokio::time::sleep(silence)),
            started: false,
        }
    }
}

/// Why reading a body was given up.
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body arrived for {0:?}")]
struct BodySilent(std::time::Duration);

impl hyper::body::Body for SilenceLimited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let restart = tokio::time::Instant::now() + this.silence;
        if !this.started {
            this.started = true;
            this.timer.as_mut().reset(restart);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(frame) => {
                this.timer.as_mut().reset(restart);
                std::task::Poll::Ready(frame)
            }
            std::task::Poll::Pending => match this.timer.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => {
                    std::task::Poll::Ready(Some(Err(axum::Error::new(BodySilent(this.silence)))))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// An upload slot for a code upload (none for other operations).
async fn upload_slot(
    state: &SharedState,
    limit: BodyLimit,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    if !limit.upload {
        return Ok(None);
    }
    state
        .uploads
        .clone()
        .acquire_owned()
        .await
        .map(Some)
        .map_err(|_| ApiError::Service("the server is shutting down".into()))
}

/// Verifies the AWS SigV4 signature of a request (keys are configured, and it is not
/// `/health`). Everything but the body is checked before any of it is read; when the
/// client declares the payload's hash (`x-amz-content-sha256`) the signature is checked
/// over that too, and the body, once read, must match it. Otherwise the body (within
/// the route's limit) is read and hashed, then the signature is checked.
/// A request's headers as SigV4 reads them: names and values as received.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn authenticate(
    state: &SharedState,
    limit: BodyLimit,
    request: Request,
    next: Next,
) -> Response {
    let Some(configured) = &state.keys else {
        return next.run(request).await;
    };
    // The configured keys, then the temporary credentials of live environments.
    let keys = &(configured, &*state.credentials);
    let (parts, body) = request.into_parts();
    let mut signed = crate::sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: header_pairs(&parts.headers),
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
    // A wire front's requests are signed for its service, API Gateway's (`/v2/`) for
    // `apigateway`, the Scheduler's for `scheduler`, everything else for Lambda.
    let service = if signed.path.starts_with("/v2/") {
        "apigateway"
    } else if scheduler::is_scheduler_path(signed.path) {
        "scheduler"
    } else {
        fronts::signing_service(fronts::front_of(&parts.method, signed.path, &parts.headers))
    };
    // Everything that needs no body is checked before any of it is read.
    if let Err(e) = crate::sigv4::check_headers(&signed, keys, now, service) {
        return refuse(e);
    }
    let declared_hash = declared_payload_hash(&parts.headers);
    let mut early_key = None;
    if let Some(hash) = &declared_hash {
        signed.payload_sha256 = hash.clone();
        match crate::sigv4::verify(&signed, keys, now, service) {
            Ok(access_key) => early_key = Some(access_key),
            Err(e) => return refuse(e),
        }
    }
    if declared_length(&body) > limit.max as u64 {
        drain(body, expects_continue(&parts.headers)).await;
        return axum::response::IntoResponse::into_response(limit.too_large());
    }
    let _slot = match upload_slot(state, limit).await {
        Ok(slot) => slot,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let bytes = match read_body(body, limit.max, || limit.too_large()).await {
        Ok(bytes) => bytes,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let payload_sha256 = crate::sigv4::sha256_hex(&bytes);
    let verified = match declared_hash {
        Some(declared) if declared != payload_sha256 => {
            Err(crate::sigv4::AuthError::PayloadHashMismatch)
        }
        Some(_) => early_key.ok_or(crate::sigv4::AuthError::Missing),
        None => {
            signed.payload_sha256 = payload_sha256;
            crate::sigv4::verify(&signed, keys, now, service)
        }
    };
    if let Ok(access_key) = &verified {
        tracing::trace!(%access_key, "request authenticated");
        // Signed with an environment's credentials: the request names whose.
        if let Some(principal) = state.credentials.caller(access_key) {
            tracing::Span::current().record("principal", tracing::field::display(&principal));
        }
    }
    match verified {
        Ok(_) => {
            drop(signed);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => refuse(e),
    }
}

/// Oversized bodies up to this size are read (and discarded) before the 413 is sent: an
/// upload a few times Lambda's limit is still answered with its error, not a reset.
const DRAIN_MAX: u64 = 256 * 1024 * 1024;

/// How long draining waits for more of a refused body before giving up.
const DRAIN_SILENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards a body declared too large, when it is moderately large and on its
/// way, so that the client, still sending, gets to read the 413 instead of a reset
/// connection. A client that waits for `100 Continue` is answered at once (reading the
/// body would invite it), and one that stops sending is answered after [`DRAIN_SILENCE`].
async fn drain(mut body: Body, expects_continue: bool) {
    if expects_continue || declared_length(&body) > DRAIN_MAX {
        return;
    }
    let drain = async {
        while let Ok(Some(frame)) = tokio::time::timeout(DRAIN_SILENCE, body.frame()).await {
            if frame.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// The client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads a request body, refusing it once it passes `limit` bytes.
pub async fn read_body(
    body: Body,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    // A declared Content-Length over the limit is refused without buffering anything.
    if declared_length(&body) > limit as u64 {
        drain(body, false).await;
        return Err(too_large());
    }
    // A body that comes as one frame (as one authentication has read) is kept as it is;
    // one in several frames is copied once, into a buffer of the declared size.
    let declared = declared_length(&body) as usize;
    let mut first: Option<Bytes> = None;
    let mut buffer = bytes::BytesMut::new();
    let mut body = Limited::new(body, limit);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if first.is_none() && buffer.is_empty() {
                    first = Some(data);
                    continue;
                }
                if let Some(first) = first.take() {
                    buffer.reserve(declared.max(first.len() + data.len()));
                    buffer.extend_from_slice(&first);
                }
                buffer.extend_from_slice(&data);
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(too_large());
            }
            Err(e) => {
                return Err(ApiError::InvalidRequestContent(format!(
                    "Could not read the request body: {e}"
                )));
            }
        }
    }
    Ok(first.unwrap_or_else(|| buffer.freeze()))
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
/// region's than the request's (400: a request acts in its own region).
pub(crate) fn function_ref(
    scope: &Scope,
    raw: &str,
) -> Result<crate::function::FunctionRef, ApiError> {
    let reference = crate::function::parse_function_ref(raw)?;
    match reference.foreign(scope) {
        None => Ok(reference),
        Some(crate::function::Foreign::Account(account)) => Err(ApiError::AccessDenied(format!(
            "User is not authorized to perform this action on resource {raw}: the function \
             belongs to account {account}, not to this server's account {}",
            scope.account_id
        ))),
        Some(crate::function::Foreign::Region(region)) => {
            Err(ApiError::InvalidParameterValue(format!(
                "The function ARN {raw} names region {region}, but this request is for {}",
                scope.region
            )))
        }
    }
}

/// The function a path names (any qualifier aside) in the request's region, and its
/// document; a 404 when it does not exist there.
pub(crate) fn named_function(
    state: &SharedState,
    scope: &Scope,
    raw: &str,
) -> Result<(String, Arc<crate::document::FunctionDocument>), ApiError> {
    let name = function_ref(scope, raw)?.name;
    let document = state
        .registry
        .require(&scope.key(&name), || scope.function_arn(&name))?;
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
            RegistryError::PolicyTooLarge(m) => ApiError::PolicyLengthExceeded(m),
            RegistryError::Internal(m) => ApiError::Service(m),
        }
    }
}

impl From<crate::function::InvalidField> for ApiError {
    fn from(e: crate::function::InvalidField) -> Self {
        ApiError::InvalidParameterValue(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_of(method: Method, path: &str, headers: &[(&'static str, &'static str)]) -> BodyLimit {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        body_limit(&method, path, &map, 256 * 1024)
    }

    #[test]
    fn body_limits_follow_the_route() {
        let create = limit_of(Method::POST, "/2015-03-31/functions/", &[]);
        assert_eq!((create.max, create.upload), (UPLOAD_BODY_MAX, true));
        let code = limit_of(Method::PUT, "/2015-03-31/functions/arn%3Aaws%3Af/code", &[]);
        assert_eq!((code.max, code.upload), (UPLOAD_BODY_MAX, true));
        let invoke = limit_of(Method::POST, "/2015-03-31/functions/f/invocations", &[]);
        assert_eq!(
            (invoke.max, invoke.upload),
            (invoke::PAYLOAD_MAX_BYTES, false)
        );
        let event = limit_of(
            Method::POST,
            "/2015-03-31/functions/f/invocations",
            &[("x-amz-invocation-type", "Event")],
        );
        assert_eq!(event.max, 256 * 1024);
        let queue = limit_of(
            Method::POST,
            "/",
            &[("x-amz-target", "AmazonSQS.SendMessageBatch")],
        );
        assert_eq!((queue.max, queue.operation), (sqs::BODY_MAX, "SQS"));
        assert_eq!(limit_of(Method::POST, "/", &[]).max, SMALL_BODY_MAX);
        for (method, path) in [
            (Method::GET, "/2015-03-31/functions"),
            (Method::PUT, "/2015-03-31/functions/f/configuration"),
            (Method::POST, "/2015-03-31/functions/f/versions"),
            (Method::POST, "/2015-03-31/functions/f/code"),
            (Method::POST, "/2015-03-31/functions/f/g/invocations"),
        ] {
            let small = limit_of(method.clone(), path, &[]);
            assert_eq!(
                (small.max, small.upload),
                (SMALL_BODY_MAX, false),
                "{method} {path}"
            );
        }
        assert!(
            limit_of(Method::GET, "/", &[])
                .too_large()
                .to_string()
                .contains("1048576")
        );
    }

    #[test]
    fn only_a_hex_sha256_is_a_declared_payload_hash() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_payload_hash(&headers), None);
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        assert_eq!(declared_payload_hash(&headers), None);
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        headers.insert("x-amz-content-sha256", HeaderValue::from_static(upper));
        assert_eq!(
            declared_payload_hash(&headers).as_deref(),
            Some(crate::sigv4::sha256_hex(b"").as_str())
        );
    }
}
