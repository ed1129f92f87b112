//! The front of HTTP APIs: requests addressed to an API (by host name
//! `<api-id>.execute-api.localhost` or the `/execute-api/<api-id>/` path, see
//! `crate::gateway`) are taken here, before the API's own authentication, and answered as
//! API Gateway answers them.
//!
//! In order: the API, its stage and the deployment the stage serves are found; a CORS
//! preflight is answered from the API's settings; the route is chosen (404
//! `{"message":"Not Found"}` when none matches); the body is read (10 MB); the caller is
//! authorized by the route's authorization type (a Lambda authorizer's answer is cached
//! for its TTL); then the route's integration runs: a Lambda function with a payload 1.0
//! or 2.0 event through the invoke door (API Gateway's permission on the function is
//! checked first), or a first-class integration that puts the request into a queue or on
//! an event bus and answers once it is committed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::url_front::http;
use super::{SharedState, read_body};
use crate::gateway::authorizer::{self, Verdict};
use crate::gateway::event_v1::{ContextV1, event_v1, is_response};
use crate::gateway::mapping::{RequestView, evaluate};
use crate::gateway::route_key::RouteKey;
use crate::gateway::{FunctionTarget, HttpApi, Integration, Route, Snapshot};
use crate::invoke::{Invocation, InvokeError, InvokeOutcome, Mode, Origin};
use crate::urls::answer;
use crate::urls::event::{HttpRequest, RequestContext, event_v2};

/// The largest request body an HTTP API takes.
const BODY_MAX: usize = 10 * 1024 * 1024;
/// The service whose permission on a function API Gateway needs.
const SERVICE: &str = "apigateway.amazonaws.com";

/// Takes the requests addressed to an HTTP API; passes every other on.
pub async fn intercept(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    let Some(addressed) = crate::gateway::addressed(host, request.uri().path()) else {
        return next.run(request).await;
    };
    let api_id = addressed.api_id.to_string();
    let path = addressed.path.to_string();
    let domain = addressed.domain.map(str::to_string);
    let request_id = crate::invoke::new_request_id().to_string();
    let span = tracing::info_span!(
        "http_api",
        api_id = %api_id,
        method = %request.method(),
        path = %path,
        request_id = %request_id,
    );
    let call = Call {
        state,
        api_id,
        path,
        domain,
        request_id: request_id.clone(),
    };
    let mut response = tracing::Instrument::instrument(call.serve(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", value);
    }
    response
}

/// API Gateway's own answers: `{"message": ...}`.
fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

fn internal() -> Response {
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// One request to an API.
struct Call {
    state: SharedState,
    api_id: String,
    /// The path after the API's address (stage prefix included).
    path: String,
    domain: Option<String>,
    request_id: String,
}

/// What the route and the request resolved to, for the integration.
struct Matched<'a> {
    api: &'a HttpApi,
    snapshot: &'a Snapshot,
    stage: String,
    route: &'a Route,
    route_key: RouteKey,
    path_parameters: BTreeMap<String, String>,
    parts: axum::http::request::Parts,
    body: Bytes,
    source_ip: IpAddr,
    time_ms: u64,
    domain: String,
    /// The request's path as the API's own (the stage's name included), undecoded.
    path: String,
    context: BTreeMap<String, String>,
}

impl Matched<'_> {
    fn stage_variables(&self) -> &BTreeMap<String, String> {
        &self.api.stages[&self.stage].stage_variables
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            headers: &self.parts.headers,
            query: self.parts.uri.query().unwrap_or(""),
            path: &self.path,
            path_parameters: &self.path_parameters,
            body: &self.body,
            context: &self.context,
            stage_variables: self.stage_variables(),
        }
    }

    fn http_request<'r>(&'r self, raw_path: &'r str) -> HttpRequest<'r> {
        HttpRequest {
            method: &self.parts.method,
            path: raw_path,
            query: self.parts.uri.query().unwrap_or(""),
            headers: &self.parts.headers,
            body: &self.body,
            source_ip: self.source_ip,
            protocol: "HTTP/1.1",
        }
    }
}

impl Call {
    async fn serve(self, request: Request) -> Response {
        let Some(api) = self.state.gateway.get(&self.api_id) else {
            return not_found();
        };
        if api.disable_execute_api_endpoint {
            return message(StatusCode::FORBIDDEN, "Forbidden");
        }
        let Some((stage, in_stage)) = crate::gateway::stage_of(&api, &self.path) else {
            return not_found();
        };
        let in_stage = in_stage.to_string();
        let Some(snapshot) = api.served(&stage) else {
            return not_found();
        };
        let origin = request
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cors = api.cors_configuration.as_ref().map(|c| c.as_cors());
        if let Some(cors) = &cors
            && request.method() == Method::OPTIONS
            && origin.is_some()
            && request
                .headers()
                .contains_key("access-control-request-method")
        {
            let mut response = StatusCode::NO_CONTENT.into_response();
            *response.headers_mut() = cors.preflight(request.headers());
            return response;
        }
        let method = request.method().as_str().to_string();
        let parsed: Vec<(RouteKey, &Route)> = snapshot
            .routes
            .values()
            .filter_map(|r| RouteKey::parse(&r.route_key).ok().map(|k| (k, r)))
            .collect();
        let Some(((route_key, route), path_parameters)) = crate::gateway::route_key::choose(
            parsed.iter().map(|(k, r)| (k, (k.clone(), *r))),
            &method,
            &in_stage,
        ) else {
            return not_found();
        };
        let source_ip = request
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
        let (parts, body) = request.into_parts();
        let body = match read_body(body, BODY_MAX, || {
            super::ApiError::RequestTooLarge(String::new())
        })
        .await
        {
            Ok(body) => body,
            Err(super::ApiError::RequestTooLarge(_)) => {
                return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
            }
            Err(_) => return message(StatusCode::BAD_REQUEST, "Bad Request"),
        };
        let time_ms = crate::timefmt::now_ms();
        let domain = self
            .domain
            .clone()
            .unwrap_or_else(|| format!("{}.execute-api.localhost", self.api_id));
        let mut matched = Matched {
            api: &api,
            snapshot,
            stage,
            route,
            route_key,
            path_parameters,
            parts,
            body,
            source_ip,
            time_ms,
            domain,
            path: self.path.clone(),
            context: BTreeMap::new(),
        };
        matched.context = self.context_variables(&matched);
        let authorizer = match self.authorize(&matched).await {
            Ok(verdict) => verdict,
            Err(response) => return response,
        };
        if let Some(verdict) = &authorizer {
            for (k, v) in &verdict.context {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                matched.context.insert(format!("authorizer.{k}"), text);
            }
        }
        let Some(integration) = route
            .integration_id()
            .and_then(|id| snapshot.integrations.get(id))
        else {
            tracing::info!(route = %route.route_key, "the route has no integration");
            return not_found();
        };
        let mut response = match integration.integration_subtype.as_deref() {
            Some("SQS-SendMessage") => self.send_to_queue(&matched, integration).await,
            Some("EventBridge-PutEvents") => self.put_on_bus(&matched, integration).await,
            Some(other) => {
                tracing::warn!(
                    subtype = other,
                    "an integration subtype this server does not serve"
                );
                internal()
            }
            None => {
                self.invoke(&matched, integration, authorizer.as_ref())
                    .await
            }
        };
        if let Some(cors) = &cors {
            // API Gateway's CORS headers replace the integration's.
            let theirs: Vec<_> = response
                .headers()
                .keys()
                .filter(|k| k.as_str().starts_with("access-control-"))
                .cloned()
                .collect();
            for name in theirs {
                response.headers_mut().remove(name);
            }
            cors.decorate(origin.as_deref(), response.headers_mut());
        }
        response
    }

    /// `$context` variables of a request.
    fn context_variables(&self, m: &Matched<'_>) -> BTreeMap<String, String> {
        let user_agent = m.http_request(&m.path).user_agent().to_string();
        BTreeMap::from([
            ("requestId".into(), self.request_id.clone()),
            ("extendedRequestId".into(), self.request_id.clone()),
            ("apiId".into(), self.api_id.clone()),
            ("stage".into(), m.stage.clone()),
            ("domainName".into(), m.domain.clone()),
            (
                "domainPrefix".into(),
                crate::urls::event::domain_prefix(&m.domain).to_string(),
            ),
            ("accountId".into(), self.state.arns.account_id.clone()),
            ("httpMethod".into(), m.parts.method.to_string()),
            ("path".into(), m.path.clone()),
            ("protocol".into(), "HTTP/1.1".into()),
            ("routeKey".into(), m.route.route_key.clone()),
            (
                "requestTime".into(),
                crate::timefmt::clf_timestamp(m.time_ms),
            ),
            ("requestTimeEpoch".into(), m.time_ms.to_string()),
            ("identity.sourceIp".into(), m.source_ip.to_string()),
            ("identity.userAgent".into(), user_agent),
        ])
    }

    fn execution_arn(&self, api: &HttpApi) -> String {
        crate::gateway::execution_arn(&api.region, &self.state.arns.account_id, &self.api_id)
    }

    /// The ARN permissions of the route's function are checked against:
    /// `<execution-arn>/<stage>/<METHOD>/<route path>` (`.../$default` for the default
    /// route).
    fn source_arn(&self, m: &Matched<'_>) -> String {
        let base = self.execution_arn(m.api);
        match &m.route_key {
            RouteKey::Default => format!("{base}/{}/$default", m.stage),
            RouteKey::Path { method, .. } => {
                format!("{base}/{}/{method}{}", m.stage, m.route_key.path())
            }
        }
    }

    /// The ARN an authorizer's policy is matched against: the request's method and path.
    fn route_arn(&self, m: &Matched<'_>) -> String {
        format!(
            "{}/{}/{}{}",
            self.execution_arn(m.api),
            m.stage,
            m.parts.method,
            m.path
        )
    }

    /// The route's authorization: `Ok(Some)` with a Lambda authorizer's verdict, `Ok(None)`
    /// when none is needed, or the refusal.
    async fn authorize(&self, m: &Matched<'_>) -> Result<Option<Verdict>, Response> {
        match m.route.authorization_type.as_str() {
            "AWS_IAM" => {
                let Some(configured) = &self.state.keys else {
                    return Ok(None);
                };
                let keys = &(configured, &*self.state.credentials);
                let signed = crate::sigv4::RequestParts {
                    method: m.parts.method.as_str(),
                    path: m.parts.uri.path(),
                    query: m.parts.uri.query().unwrap_or(""),
                    headers: super::header_pairs(&m.parts.headers),
                    payload_sha256: crate::sigv4::sha256_hex(&m.body),
                };
                let now = crate::timefmt::now_ms() / 1000;
                match crate::sigv4::verify(&signed, keys, now, "execute-api") {
                    Ok(_) => Ok(None),
                    Err(e) => {
                        tracing::info!(error = %e, "request refused: authentication failed");
                        Err(message(StatusCode::FORBIDDEN, "Forbidden"))
                    }
                }
            }
            "CUSTOM" => {
                let Some(a) = m
                    .route
                    .authorizer_id
                    .as_deref()
                    .and_then(|id| m.snapshot.authorizers.get(id))
                else {
                    tracing::warn!("the route's authorizer is not in its deployment");
                    return Err(internal());
                };
                let Some(identity) = authorizer::identity(a, &m.view()) else {
                    return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
                };
                let route_arn = self.route_arn(m);
                let cached = (a.authorizer_result_ttl_in_seconds > 0)
                    .then(|| {
                        self.state
                            .gateway
                            .verdicts
                            .get(&self.api_id, &a.authorizer_id, &identity)
                    })
                    .flatten();
                let verdict = match cached {
                    Some(v) => v,
                    None => {
                        let v = self.ask_authorizer(m, a, &identity, &route_arn).await?;
                        if a.authorizer_result_ttl_in_seconds > 0 {
                            self.state.gateway.verdicts.put(
                                &self.api_id,
                                &a.authorizer_id,
                                &identity,
                                v.clone(),
                                Duration::from_secs(a.authorizer_result_ttl_in_seconds),
                            );
                        }
                        v
                    }
                };
                if verdict.allows(&route_arn) {
                    Ok(Some(verdict))
                } else {
                    Err(message(StatusCode::FORBIDDEN, "Forbidden"))
                }
            }
            _ => Ok(None),
        }
    }

    /// Invokes a Lambda authorizer for its verdict.
    async fn ask_authorizer(
        &self,
        m: &Matched<'_>,
        a: &crate::gateway::Authorizer,
        identity: &[String],
        route_arn: &str,
    ) -> Result<Verdict, Response> {
        let request_event = self.event(m, &a.authorizer_payload_format_version, None);
        let event = authorizer::event(
            request_event,
            &a.authorizer_payload_format_version,
            route_arn,
            identity,
        );
        let source_arn = format!(
            "{}/authorizers/{}",
            self.execution_arn(m.api),
            a.authorizer_id
        );
        let output = self
            .call_function(
                &a.authorizer_uri,
                &source_arn,
                event,
                Duration::from_secs(10),
            )
            .await?;
        let simple = a.enable_simple_responses == Some(true);
        Verdict::read(&output, simple).map_err(|e| {
            tracing::info!(error = %e, "the authorizer's answer is malformed");
            internal()
        })
    }

    /// The integration's event of payload `version`.
    fn event(&self, m: &Matched<'_>, version: &str, authorizer: Option<Value>) -> Value {
        let request = m.http_request(&m.path);
        let route_path = m.route_key.path();
        if version == "1.0" {
            event_v1(
                &request,
                &ContextV1 {
                    account_id: &self.state.arns.account_id,
                    api_id: &self.api_id,
                    domain_name: &m.domain,
                    request_id: &self.request_id,
                    time_ms: m.time_ms,
                    stage: &m.stage,
                    resource_path: &route_path,
                    route_key: &m.route.route_key,
                    route_id: &m.route.route_id,
                    path_parameters: &m.path_parameters,
                    stage_variables: m.stage_variables(),
                    authorizer,
                },
            )
        } else {
            let mut event = event_v2(
                &request,
                &RequestContext {
                    account_id: &self.state.arns.account_id,
                    api_id: &self.api_id,
                    domain_name: &m.domain,
                    request_id: &self.request_id,
                    time_ms: m.time_ms,
                    route_key: &m.route.route_key,
                    stage: &m.stage,
                    authorizer,
                },
            );
            if !m.path_parameters.is_empty() {
                event["pathParameters"] = json!(m.path_parameters);
            }
            if !m.stage_variables().is_empty() {
                event["stageVariables"] = json!(m.stage_variables());
            }
            event
        }
    }

    /// Invokes the function `uri` names with `event`, synchronously, once API Gateway's
    /// permission on it holds; its output, or the answer a failure makes.
    async fn call_function(
        &self,
        uri: &str,
        source_arn: &str,
        event: Value,
        timeout: Duration,
    ) -> Result<Bytes, Response> {
        let Some(target) = FunctionTarget::parse(uri) else {
            tracing::warn!(uri, "the integration names no Lambda function");
            return Err(internal());
        };
        let key = self
            .state
            .arns
            .key_of_arn(&target.region, &target.name)
            .into_owned();
        let Some(document) = self.state.registry.get(&key) else {
            tracing::warn!(function = %target.name, "the integration's function does not exist");
            return Err(internal());
        };
        let qualifier = target
            .qualifier
            .clone()
            .unwrap_or_else(|| crate::function::LATEST.into());
        let statements = super::policy::statements_for_url(&document, &qualifier);
        if !crate::policy::allows_service(
            statements,
            SERVICE,
            source_arn,
            &self.state.arns.account_id,
        ) {
            tracing::warn!(
                function = %target.name,
                source_arn,
                "API Gateway has no permission to invoke the function: add one with AddPermission (principal apigateway.amazonaws.com)"
            );
            return Err(internal());
        }
        let invocation = Invocation::new(
            key,
            Bytes::from(event.to_string()),
            Mode::Sync { log_tail: false },
            Origin::FunctionUrl,
        )
        .qualifier(target.qualifier)
        .request_id(Some(crate::invoke::new_request_id().to_string()));
        let outcome = tokio::time::timeout(timeout, self.state.invoke.invoke(invocation)).await;
        match outcome {
            Err(_) => {
                tracing::info!("the integration timed out");
                Err(message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                ))
            }
            Ok(Ok(InvokeOutcome::Completed(done))) if done.function_error.is_some() => {
                tracing::info!(
                    kind = done.function_error.unwrap_or(""),
                    "the integration's function failed"
                );
                Err(internal())
            }
            Ok(Ok(InvokeOutcome::Completed(done))) => Ok(done.payload),
            Ok(Ok(other)) => {
                tracing::error!(?other, "an HTTP API invocation did not complete");
                Err(internal())
            }
            Ok(Err(InvokeError::Throttled(_))) => {
                Err(message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the integration's invocation failed");
                Err(message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                ))
            }
        }
    }

    /// A Lambda integration: the event of its payload version, the function's answer.
    async fn invoke(
        &self,
        m: &Matched<'_>,
        integration: &Integration,
        verdict: Option<&Verdict>,
    ) -> Response {
        let version = integration.payload_format_version.as_str();
        let event = self.event(m, version, verdict.map(|v| v.for_integration(version)));
        if event.to_string().len() > super::invoke::PAYLOAD_MAX_BYTES {
            return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
        let uri = integration.integration_uri.as_deref().unwrap_or("");
        let timeout = Duration::from_millis(integration.timeout_in_millis);
        let output = match self
            .call_function(uri, &self.source_arn(m), event, timeout)
            .await
        {
            Ok(output) => output,
            Err(response) => return response,
        };
        if version == "1.0" && !is_response(&output) {
            tracing::info!("a 1.0 integration's answer has no statusCode");
            return internal();
        }
        match answer::from_output(&output) {
            Ok(answer) => http(answer),
            Err(e) => {
                tracing::info!(error = %e, "the function's answer to an HTTP API request is malformed");
                internal()
            }
        }
    }

    /// `SQS-SendMessage`: the request's parameters make a message, committed to the queue
    /// before the answer (SendMessage's result, as API Gateway returns it).
    async fn send_to_queue(&self, m: &Matched<'_>, integration: &Integration) -> Response {
        use super::sqs::error::SqsError;
        let view = m.view();
        let parameter = |name: &str| {
            integration
                .request_parameters
                .get(name)
                .map(|value| evaluate(value, &view))
        };
        let result: Result<Value, SqsError> = async {
            let url = parameter("QueueUrl").unwrap_or_default();
            let region = parameter("Region")
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| m.api.region.clone());
            let name = queue_of(&url, &self.state.arns.account_id)
                .ok_or_else(|| SqsError::invalid(format!("Invalid QueueUrl: {url}")))?;
            let key = self.state.arns.key_of_arn(&region, &name).into_owned();
            let body = parameter("MessageBody").unwrap_or_default();
            super::sqs::messages::check_body(&body)?;
            let delay_s = match parameter("DelaySeconds").filter(|d| !d.is_empty()) {
                None => None,
                Some(d) => Some(d.parse::<u64>().map_err(|_| {
                    SqsError::invalid(format!("Value {d} for parameter DelaySeconds is invalid."))
                })?),
            };
            let attributes = match parameter("MessageAttributes").filter(|a| !a.is_empty()) {
                None => BTreeMap::new(),
                Some(a) => super::sqs::messages::attributes(Some(
                    serde_json::from_str(&a).map_err(|e| {
                        SqsError::invalid(format!(
                            "MessageAttributes is not a map of attributes: {e}"
                        ))
                    })?,
                )),
            };
            self.state
                .disk
                .check(body.len() as u64, "a queue message")?;
            let md5_body = crate::queues::md5_hex(body.as_bytes());
            let md5_attributes = crate::queues::md5_of_attributes(&attributes);
            let message = crate::queues::Outgoing {
                body,
                attributes,
                delay_s,
                group_id: parameter("MessageGroupId").filter(|g| !g.is_empty()),
                dedup_id: parameter("MessageDeduplicationId").filter(|d| !d.is_empty()),
            };
            let queues = self.state.queues.clone();
            let sent = tokio::task::spawn_blocking(move || queues.send(&key, &[message]))
                .await
                .map_err(|e| SqsError::from(crate::queues::QueueError::Backend(e.to_string())))??;
            Ok(json!({
                "SendMessageResponse": {
                    "ResponseMetadata": { "RequestId": self.request_id },
                    "SendMessageResult": {
                        "MD5OfMessageAttributes": md5_attributes,
                        "MD5OfMessageBody": md5_body,
                        "MD5OfMessageSystemAttributes": null,
                        "MessageId": sent[0].message_id,
                        "SequenceNumber": sent[0].sequence_number,
                    }
                }
            }))
        }
        .await;
        match result {
            Ok(value) => (StatusCode::OK, axum::Json(value)).into_response(),
            Err(e) => {
                tracing::info!(error = %e, "a queue integration's message was refused");
                (
                    e.status,
                    axum::Json(json!({
                        "Error": { "Code": e.code, "Message": e.message, "Type": if e.status.is_client_error() { "Sender" } else { "Receiver" } },
                        "RequestId": self.request_id,
                    })),
                )
                    .into_response()
            }
        }
    }

    /// `EventBridge-PutEvents`: the request's parameters make one event, committed to
    /// the bus (and its matched deliveries) before the answer (PutEvents' result, as API
    /// Gateway returns it).
    async fn put_on_bus(&self, m: &Matched<'_>, integration: &Integration) -> Response {
        let view = m.view();
        let parameter = |name: &str| {
            integration
                .request_parameters
                .get(name)
                .map(|value| evaluate(value, &view))
                .filter(|v| !v.is_empty())
        };
        let region = parameter("Region").unwrap_or_else(|| m.api.region.clone());
        let resources = parameter("Resources")
            .map(|r| match serde_json::from_str::<Vec<String>>(&r) {
                Ok(list) => list,
                Err(_) => r.split(',').map(|s| s.trim().to_string()).collect(),
            })
            .unwrap_or_default();
        let entry = crate::bus::event::Entry {
            time: parameter("Time").map(Value::String),
            source: parameter("Source"),
            resources,
            detail_type: parameter("DetailType"),
            detail: parameter("Detail"),
            event_bus_name: parameter("EventBusName"),
        };
        if entry.size() > crate::bus::event::REQUEST_MAX_BYTES {
            return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
        match self.state.bus.put_events(&region, vec![entry]).await {
            Ok(outcomes) => {
                let failed = outcomes.iter().filter(|o| o.is_err()).count();
                let entries: Vec<Value> = outcomes
                    .into_iter()
                    .map(|o| match o {
                        Ok(id) => json!({ "EventId": id }),
                        Err(e) => json!({ "ErrorCode": e.code, "ErrorMessage": e.message }),
                    })
                    .collect();
                (
                    StatusCode::OK,
                    axum::Json(json!({ "Entries": entries, "FailedEntryCount": failed })),
                )
                    .into_response()
            }
            Err(e) => {
                tracing::warn!(error = %e, "a bus integration's event was not accepted");
                internal()
            }
        }
    }
}

/// The queue name of a queue URL of `account` (`http[s]://<host>/<account>/<name>`, or
/// the path alone).
fn queue_of(url: &str, account: &str) -> Option<String> {
    let path = match url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        Some(rest) => &rest[rest.find('/')?..],
        None => url,
    };
    let mut parts = path.trim_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(name), None) if a == account && !name.is_empty() => Some(name.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_name_a_queue_of_the_account() {
        assert_eq!(
            queue_of("http://127.0.0.1:9000/000000000000/orders", "000000000000"),
            Some("orders".into())
        );
        assert_eq!(
            queue_of("/000000000000/orders.fifo", "000000000000"),
            Some("orders.fifo".into())
        );
        assert_eq!(
            queue_of("http://h/111111111111/orders", "000000000000"),
            None
        );
        assert_eq!(queue_of("http://h/000000000000", "000000000000"), None);
        assert_eq!(queue_of("", "000000000000"), None);
    }
}
