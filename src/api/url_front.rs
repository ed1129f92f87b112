//! The front of function URLs: requests addressed to a URL (by host name or by the
//! `/lambda-url/<id>/` path, see `crate::urls`) are taken here, before the API's own
//! authentication and error formatting, and answered as Lambda's URL endpoints answer.
//!
//! In order: the URL is looked up (404 when there is none); a CORS preflight is answered
//! from the URL's settings without invoking anything; the caller is authorized (auth type
//! `NONE`: the function's policy must allow `lambda:InvokeFunctionUrl` to everyone;
//! `AWS_IAM`: a SigV4 signature with the server's keys, or an environment's credentials);
//! the request becomes a payload 2.0 event and a synchronous invocation through the invoke
//! door; the function's output becomes the HTTP answer, with the URL's CORS headers.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use serde_json::json;

use super::invoke::PAYLOAD_MAX_BYTES;
use super::streamed::{Began, Next as Piece, Tail};
use super::{SharedState, read_body};
use crate::function::LATEST;
use crate::invoke::{Invocation, InvokeError, InvokeOutcome, Mode, Origin};

/// The content type of a streamed answer that begins with an HTTP prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
use crate::urls::answer::{self, HttpAnswer};
use crate::urls::event::{HttpRequest, RequestContext, event_v2};
use crate::urls::{AuthType, InvokeMode, UrlConfig};

/// Takes the requests addressed to a function URL; passes every other on.
pub async fn intercept(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    let Some(addressed) = crate::urls::addressed(host, request.uri().path()) else {
        return next.run(request).await;
    };
    let target = Target {
        url_id: addressed.url_id.to_string(),
        path: addressed.path.to_string(),
        domain: addressed.domain.map(str::to_string),
    };
    let request_id = crate::invoke::new_request_id().to_string();
    let span = tracing::info_span!(
        "url",
        url_id = %target.url_id,
        method = %request.method(),
        path = %target.path,
        request_id = %request_id,
    );
    let mut response =
        tracing::Instrument::instrument(serve(state, target, request, request_id.clone()), span)
            .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// The URL a request is for, owned.
struct Target {
    url_id: String,
    path: String,
    domain: Option<String>,
}

/// An answer in the shape Lambda's URL endpoints give for their own errors.
fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "Message": text }))).into_response()
}

/// A function's HTTP answer as the response (its headers, not the body type's).
pub(super) fn http(answer: HttpAnswer) -> Response {
    let mut response = (answer.status, answer.body).into_response();
    // The function's headers, not the defaults of the body type.
    response.headers_mut().remove("content-type");
    copy_headers(&answer.headers, response.headers_mut());
    response
}

/// Copies a function's answer headers, less those of the framing (the server's to set).
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            to.append(name.clone(), value.clone());
        }
    }
}

async fn serve(
    state: SharedState,
    target: Target,
    request: Request,
    request_id: String,
) -> Response {
    let Some((document, qualifier)) = state.registry.url(&target.url_id) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(url) = document.urls.get(&qualifier).cloned() else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(cors) = &url.cors
        && request.method() == Method::OPTIONS
        && origin.is_some()
        && request
            .headers()
            .contains_key("access-control-request-method")
    {
        let mut response = StatusCode::OK.into_response();
        *response.headers_mut() = cors.preflight(request.headers());
        return response;
    }
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    let (parts, body) = request.into_parts();
    let body = match read_body(body, PAYLOAD_MAX_BYTES, || {
        super::ApiError::RequestTooLarge(String::new())
    })
    .await
    {
        Ok(body) => body,
        Err(super::ApiError::RequestTooLarge(_)) => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "Request must be smaller than {PAYLOAD_MAX_BYTES} bytes for the InvokeFunction operation"
                ),
            );
        }
        Err(e) => return message(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let authorizer = match authorize(&state, &document, &qualifier, &url, &parts, &body) {
        Ok(authorizer) => authorizer,
        Err(response) => return response,
    };
    let region = document
        .latest
        .spec
        .region
        .clone()
        .unwrap_or_else(|| state.arns.region.clone());
    let domain = target
        .domain
        .clone()
        .unwrap_or_else(|| format!("{}.lambda-url.{region}.localhost", target.url_id));
    let time_ms = crate::timefmt::now_ms();
    let event = event_v2(
        &HttpRequest {
            method: &parts.method,
            path: &target.path,
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            source_ip,
            protocol: "HTTP/1.1",
        },
        &RequestContext {
            account_id: &state.arns.account_id,
            api_id: &target.url_id,
            domain_name: &domain,
            request_id: &request_id,
            time_ms,
            route_key: "$default",
            stage: "$default",
            authorizer,
        },
    );
    let invocation = Invocation::new(
        document.key().into_owned(),
        Bytes::from(event.to_string()),
        Mode::Sync { log_tail: false },
        Origin::FunctionUrl,
    )
    .qualifier((qualifier != LATEST).then(|| qualifier.clone()))
    .request_id(Some(request_id))
    .trace_id(
        parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    // A function may stream its answer in either mode: in BUFFERED mode it is gathered
    // and sent whole, in RESPONSE_STREAM mode sent as it comes.
    let outcome = match super::streamed::begin(state.invoke.clone(), invocation).await {
        Began::Finished(outcome) => outcome,
        Began::Streaming { content_type, tail } => {
            let buffered = url.invoke_mode == InvokeMode::Buffered;
            let mut response = streaming_answer(content_type, tail, buffered).await;
            if let Some(cors) = &url.cors {
                cors.decorate(origin.as_deref(), response.headers_mut());
            }
            return response;
        }
    };
    let mut response = answer_of(outcome);
    if let Some(cors) = &url.cors {
        cors.decorate(origin.as_deref(), response.headers_mut());
    }
    response
}

/// The answer to a URL request of a function that answered at once (or failed).
fn answer_of(outcome: super::streamed::Outcome) -> Response {
    match outcome {
        Ok(InvokeOutcome::Completed(done)) if done.function_error.is_some() => {
            http(HttpAnswer::bad_gateway())
        }
        Ok(InvokeOutcome::Completed(done)) => match answer::from_output(&done.payload) {
            Ok(answer) => http(answer),
            Err(e) => {
                tracing::info!(error = %e, "the function's answer to a URL request is malformed");
                http(HttpAnswer::bad_gateway())
            }
        },
        Ok(other) => {
            tracing::error!(?other, "a URL invocation did not complete");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Err(InvokeError::Throttled(throttle)) => {
            message(StatusCode::TOO_MANY_REQUESTS, throttle.message())
        }
        Err(InvokeError::NotFound(_)) => message(StatusCode::NOT_FOUND, "Not Found"),
        Err(e) => {
            let error = super::ApiError::from(e);
            message(error.status(), &error.to_string())
        }
    }
}

/// Where a streamed HTTP answer's prelude (JSON status, headers and cookies) ends: eight
/// NUL bytes, as `awslambda.HttpResponseStream` writes them.
const PRELUDE_END: [u8; 8] = [0; 8];
/// The most of a prelude read before the stream is taken as a plain body.
const PRELUDE_MAX: usize = 64 * 1024;

/// The answer to a URL request of a function that streams: with an HTTP prelude
/// (`application/vnd.awslambda.http-integration-response`) its status and headers, else
/// 200 with the stream's content type; the body sent as the function writes it, or, when
/// `buffered`, once it has all come (502 if the function failed meanwhile).
async fn streaming_answer(
    content_type: Option<String>,
    mut tail: Tail,
    buffered: bool,
) -> Response {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    let mut first = bytes::BytesMut::new();
    let mut ended = false;
    if content_type.as_deref() == Some(HTTP_INTEGRATION) {
        // Read until the prelude's end.
        loop {
            if let Some(at) = first.windows(8).position(|w| w == PRELUDE_END) {
                let prelude = first.split_to(at);
                first.advance(8);
                match answer::from_output(&with_status(&prelude)) {
                    Ok(parsed) => {
                        status = parsed.status;
                        headers = parsed.headers;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "a streamed answer's prelude is malformed")
                    }
                }
                break;
            }
            if first.len() > PRELUDE_MAX {
                break;
            }
            match tail.next().await {
                Piece::Chunk(chunk) => first.extend_from_slice(&chunk),
                Piece::End(outcome) => {
                    ended = true;
                    if !matches!(&outcome, Ok(InvokeOutcome::Completed(d)) if d.function_error.is_none())
                    {
                        return answer_of(outcome);
                    }
                    break;
                }
            }
        }
    } else if let Some(value) = content_type.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("content-type", value);
    }
    if buffered {
        while !ended {
            match tail.next().await {
                Piece::Chunk(chunk) => first.extend_from_slice(&chunk),
                Piece::End(outcome) => {
                    if !matches!(&outcome, Ok(InvokeOutcome::Completed(d)) if d.function_error.is_none())
                    {
                        return answer_of(outcome);
                    }
                    ended = true;
                }
            }
        }
        return http(HttpAnswer {
            status,
            headers,
            body: first.freeze(),
        });
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first.freeze()).await.is_err() {
            return;
        }
        if ended {
            return;
        }
        loop {
            match tail.next().await {
                Piece::Chunk(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                Piece::End(outcome) => {
                    if let Ok(InvokeOutcome::Completed(d)) = &outcome
                        && let Some(kind) = d.function_error
                    {
                        tracing::info!(kind, "a streamed URL answer ended with a function error");
                    }
                    return;
                }
            }
        }
    });
    let mut response = Response::new(axum::body::Body::new(super::eventstream::ChannelBody(rx)));
    *response.status_mut() = status;
    copy_headers(&headers, response.headers_mut());
    response
}

/// A prelude as a response object: `statusCode` defaults to 200.
fn with_status(prelude: &[u8]) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(prelude).unwrap_or(json!({}));
    if let Some(object) = value.as_object_mut() {
        object.entry("statusCode").or_insert(json!(200));
        object.remove("body");
    }
    value.to_string().into_bytes()
}

/// Whether the caller may invoke this URL; `requestContext.authorizer` when it is signed.
#[allow(clippy::result_large_err)]
fn authorize(
    state: &SharedState,
    document: &crate::document::FunctionDocument,
    qualifier: &str,
    url: &UrlConfig,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Option<serde_json::Value>, Response> {
    let forbidden = || message(StatusCode::FORBIDDEN, "Forbidden");
    match url.auth_type {
        AuthType::None => {
            if crate::policy::allows_public_url(super::policy::statements_for_url(
                document, qualifier,
            )) {
                Ok(None)
            } else {
                tracing::info!(
                    "URL request refused: the function's policy does not allow lambda:InvokeFunctionUrl to everyone"
                );
                Err(forbidden())
            }
        }
        AuthType::AwsIam => {
            let Some(configured) = &state.keys else {
                // An open server authenticates nobody.
                return Ok(None);
            };
            let keys = &(configured, &*state.credentials);
            let signed = crate::sigv4::RequestParts {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: super::header_pairs(&parts.headers),
                payload_sha256: crate::sigv4::sha256_hex(body),
            };
            let now = crate::timefmt::now_ms() / 1000;
            match crate::sigv4::verify(&signed, keys, now, "lambda") {
                Ok(access_key) => Ok(Some(json!({
                    "iam": {
                        "accessKey": access_key,
                        "accountId": state.arns.account_id,
                        "callerId": access_key,
                        "cognitoIdentity": null,
                        "principalOrgId": null,
                        "userArn": format!("arn:aws:iam::{}:root", state.arns.account_id),
                        "userId": state.arns.account_id,
                    }
                }))),
                Err(e) => {
                    tracing::info!(error = %e, "URL request refused: authentication failed");
                    Err(forbidden())
                }
            }
        }
    }
}
