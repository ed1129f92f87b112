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
use bytes::Bytes;
use serde_json::json;

use super::invoke::PAYLOAD_MAX_BYTES;
use super::{SharedState, read_body};
use crate::function::LATEST;
use crate::invoke::{Invocation, InvokeError, InvokeOutcome, Mode, Origin};
use crate::urls::answer::{self, HttpAnswer};
use crate::urls::event::{HttpRequest, RequestContext, event_v2};
use crate::urls::{AuthType, UrlConfig};

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

fn http(answer: HttpAnswer) -> Response {
    let mut response = (answer.status, answer.body).into_response();
    let headers = response.headers_mut();
    // The function's headers, not the defaults of the body type.
    headers.remove("content-type");
    for (name, value) in answer.headers.iter() {
        // Framing is the server's to set.
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    response
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
    let mut response = match state.invoke.invoke(invocation).await {
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
    };
    if let Some(cors) = &url.cors {
        cors.decorate(origin.as_deref(), response.headers_mut());
    }
    response
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
                headers: header_pairs(&parts.headers),
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

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
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
