//! The built-in queues on the Amazon SQS JSON protocol: `POST /` with
//! `X-Amz-Target: AmazonSQS.<Action>`, as current boto3 and the AWS CLI speak it.
//! Requests are parsed here into calls on [`QueueService`]; errors carry the
//! `x-amzn-query-error` header botocore reads the error code from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ApiError, SharedState, read_body};
use crate::queues::{Attribute, QueueError, QueueService, md5_hex, md5_of_attributes};

/// The largest SQS request (a batch of ten messages of 256 KB, JSON-escaped).
pub(super) const BODY_MAX: usize = 4 * 1024 * 1024;
const BATCH_MAX: usize = 10;

/// An SQS error: its shape name, the code botocore reports, the sender's fault or not.
#[derive(Debug)]
struct SqsError {
    status: StatusCode,
    shape: &'static str,
    code: &'static str,
    message: String,
}

impl SqsError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            shape: "InvalidParameterValueException",
            code: "InvalidParameterValue",
            message: message.into(),
        }
    }
}

impl From<crate::disk::DiskFull> for SqsError {
    /// A full data disk: AWS's common 503 `ServiceUnavailable` (a temporary failure,
    /// which clients retry).
    fn from(e: crate::disk::DiskFull) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            shape: "ServiceUnavailable",
            code: "ServiceUnavailable",
            message: e.to_string(),
        }
    }
}

impl From<QueueError> for SqsError {
    fn from(e: QueueError) -> Self {
        let message = e.to_string();
        let (status, shape, code) = match e {
            QueueError::NoSuchQueue => (
                StatusCode::BAD_REQUEST,
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
            QueueError::NameExists(_) => (
                StatusCode::BAD_REQUEST,
                "QueueNameExists",
                "QueueAlreadyExists",
            ),
            QueueError::InvalidParameter(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidAttributeValue",
                "InvalidAttributeValue",
            ),
            QueueError::InvalidMessage(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "InvalidParameterValue",
            ),
            QueueError::InvalidTag(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "InvalidParameterValue",
            ),
            QueueError::InvalidReceiptHandle(_) => (
                StatusCode::BAD_REQUEST,
                "ReceiptHandleIsInvalid",
                "ReceiptHandleIsInvalid",
            ),
            QueueError::Backend(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "InternalError",
            ),
        };
        Self {
            status,
            shape,
            code,
            message,
        }
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        error_response(self.status, self.shape, self.code, &self.message)
    }
}

/// An error in SQS's JSON format: `__type` names the shape, `x-amzn-query-error` carries
/// the code botocore reports and whose fault it is.
fn error_response(status: StatusCode, shape: &str, code: &str, message: &str) -> Response {
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = json!({ "__type": format!("com.amazonaws.sqs#{shape}"), "message": message });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault}")) {
        headers.insert("x-amzn-query-error", v);
    }
    response
}

/// An error made outside the SQS handler (authentication, limits, axum's own answers) in
/// SQS's format, under the same code.
pub(super) fn foreign_error_response(status: StatusCode, code: &str, message: &str) -> Response {
    error_response(status, code, code, message)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SqsError> {
    serde_json::from_slice(body).map_err(|e| SqsError::invalid(format!("Invalid request: {e}")))
}

fn ok(value: Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

/// The address queue URLs are made of and checked against: the host a request was sent
/// to and this server's account.
struct Endpoint {
    host: String,
    account: String,
}

impl Endpoint {
    fn url(&self, name: &str) -> String {
        format!("http://{}/{}/{name}", self.host, self.account)
    }

    /// The queue name of a queue URL (`http[s]://host/<account>/<name>`), refused as SQS
    /// refuses it when it names another account's queue or another endpoint.
    fn queue_name(&self, url: &str) -> Result<String, SqsError> {
        let invalid = || SqsError::invalid(format!("Invalid QueueUrl: {url}"));
        let (host, path) = match url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        {
            Some(rest) => match rest.split_once('/') {
                Some((host, path)) => (Some(host), path),
                None => return Err(invalid()),
            },
            None => (None, url.strip_prefix('/').ok_or_else(invalid)?),
        };
        let mut parts = path.trim_end_matches('/').split('/');
        let (Some(account), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        if name.is_empty() || account.is_empty() {
            return Err(invalid());
        }
        if let Some(host) = host.filter(|h| !same_host(h, &self.host)) {
            return Err(SqsError {
                status: StatusCode::NOT_FOUND,
                shape: "InvalidAddress",
                code: "InvalidAddress",
                message: format!(
                    "The address {url} is not valid for this endpoint ({host} is not {})",
                    self.host
                ),
            });
        }
        if account != self.account {
            return Err(SqsError {
                status: StatusCode::FORBIDDEN,
                shape: "AccessDenied",
                code: "AccessDenied",
                message: format!("Access to the resource {url} is denied."),
            });
        }
        Ok(name.to_string())
    }
}

/// Whether two `host[:port]`s name this server alike: equal, or both loopback names
/// (`localhost`, `127.x.y.z`, `[::1]`) with the same port.
fn same_host(a: &str, b: &str) -> bool {
    fn split(h: &str) -> (String, &str) {
        let h = h.trim();
        match h.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && !port.contains(']') => {
                (name.to_ascii_lowercase(), port)
            }
            _ => (h.to_ascii_lowercase(), ""),
        }
    }
    let loopback = |name: &str| {
        name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let ((name_a, port_a), (name_b, port_b)) = (split(a), split(b));
    port_a == port_b && (name_a == name_b || (loopback(&name_a) && loopback(&name_b)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeInput {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
}

fn attributes(input: Option<HashMap<String, AttributeInput>>) -> BTreeMap<String, Attribute> {
    input
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                Attribute {
                    data_type: v.data_type,
                    string_value: v.string_value,
                    binary_value: v.binary_value,
                },
            )
        })
        .collect()
}

/// SQS's rules for a message body: present, at most the size limit, and only the
/// characters SQS allows (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`).
fn check_body(body: &str) -> Result<(), SqsError> {
    if body.is_empty() {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "MissingParameter",
            code: "MissingParameter",
            message: "The request must contain the parameter MessageBody.".into(),
        });
    }
    if body.len() > crate::queues::MAX_MESSAGE_BYTES {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            crate::queues::MAX_MESSAGE_BYTES
        )));
    }
    let allowed = |c: char| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    if let Some(bad) = body.chars().find(|c| !allowed(*c)) {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "InvalidMessageContents",
            code: "InvalidMessageContents",
            message: format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of \
                 allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | \
                 #x10000 to #x10FFFF",
                u32::from(bad)
            ),
        });
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    queues: &Arc<QueueService>,
    f: impl FnOnce(&QueueService) -> Result<T, QueueError> + Send + 'static,
) -> Result<T, SqsError> {
    let queues = queues.clone();
    tokio::task::spawn_blocking(move || f(&queues))
        .await
        .map_err(|e| SqsError::from(QueueError::Backend(e.to_string())))?
        .map_err(SqsError::from)
}

pub async fn handle(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSQS."))
        .map(str::to_string);
    let Some(action) = target else {
        return ApiError::UnknownOperation(
            "POST / needs an X-Amz-Target header (AmazonSQS.<Action>)".into(),
        )
        .into_response();
    };
    let body = match read_body(body, BODY_MAX, || {
        ApiError::RequestTooLarge("Request is too large".into())
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9600")
        .to_string();
    let endpoint = Endpoint {
        host,
        account: state.arns.account_id.clone(),
    };
    let span = tracing::info_span!("sqs", action = %action);
    let result =
        tracing::Instrument::instrument(dispatch(&state, &action, &body, &endpoint), span).await;
    match result {
        Ok(value) => ok(value),
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    state: &SharedState,
    action: &str,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Value, SqsError> {
    let queues = &state.queues;
    let url = |name: &str| endpoint.url(name);
    match action {
        "CreateQueue" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_name: String,
                attributes: Option<HashMap<String, String>>,
                #[serde(rename = "tags")]
                tags: Option<BTreeMap<String, String>>,
            }
            let req: Req = parse(body)?;
            let attrs = crate::queues::validate_attributes(&req.attributes.unwrap_or_default())?;
            let name = req.queue_name.clone();
            let tags = req.tags.unwrap_or_default();
            blocking(queues, move |q| q.create(&name, attrs, tags)).await?;
            Ok(json!({ "QueueUrl": url(&req.queue_name) }))
        }
        "GetQueueUrl" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_name: String,
            }
            let req: Req = parse(body)?;
            let name = req.queue_name.clone();
            blocking(queues, move |q| q.info(&name)).await?;
            Ok(json!({ "QueueUrl": url(&req.queue_name) }))
        }
        "ListQueues" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_name_prefix: Option<String>,
            }
            let req: Req = parse(body)?;
            let prefix = req.queue_name_prefix.unwrap_or_default();
            let names = blocking(queues, move |q| q.list(&prefix)).await?;
            Ok(json!({ "QueueUrls": names.iter().map(|n| url(n)).collect::<Vec<_>>() }))
        }
        "DeleteQueue" | "PurgeQueue" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
            }
            let req: Req = parse(body)?;
            let name = endpoint.queue_name(&req.queue_url)?;
            if action == "DeleteQueue" {
                blocking(queues, move |q| q.delete(&name)).await?;
            } else {
                blocking(queues, move |q| q.purge(&name)).await?;
            }
            Ok(json!({}))
        }
        "SendMessage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                message_body: String,
                delay_seconds: Option<u64>,
                message_attributes: Option<HashMap<String, AttributeInput>>,
            }
            let req: Req = parse(body)?;
            check_body(&req.message_body)?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let attrs = attributes(req.message_attributes);
            let md5_attrs = md5_of_attributes(&attrs);
            let md5_body = md5_hex(req.message_body.as_bytes());
            state
                .disk
                .check(req.message_body.len() as u64, "a queue message")?;
            let message = (req.message_body, attrs, req.delay_seconds);
            let ids = blocking(queues, move |q| q.send(&name, &[message])).await?;
            let mut out = json!({ "MessageId": ids[0], "MD5OfMessageBody": md5_body });
            if let Some(md5) = md5_attrs {
                out["MD5OfMessageAttributes"] = json!(md5);
            }
            Ok(out)
        }
        "SendMessageBatch" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Entry {
                id: String,
                message_body: String,
                delay_seconds: Option<u64>,
                message_attributes: Option<HashMap<String, AttributeInput>>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                entries: Vec<Entry>,
            }
            let req: Req = parse(body)?;
            check_batch(req.entries.iter().map(|e| e.id.as_str()).collect())?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let mut results = Vec::new();
            let mut messages = Vec::new();
            for entry in req.entries {
                check_body(&entry.message_body)?;
                let attrs = attributes(entry.message_attributes);
                let mut result = json!({ "Id": entry.id, "MD5OfMessageBody": md5_hex(entry.message_body.as_bytes()) });
                if let Some(md5) = md5_of_attributes(&attrs) {
                    result["MD5OfMessageAttributes"] = json!(md5);
                }
                results.push(result);
                messages.push((entry.message_body, attrs, entry.delay_seconds));
            }
            let bytes = messages.iter().map(|m| m.0.len() as u64).sum();
            state.disk.check(bytes, "a batch of queue messages")?;
            let ids = blocking(queues, move |q| q.send(&name, &messages)).await?;
            for (result, id) in results.iter_mut().zip(ids) {
                result["MessageId"] = json!(id);
            }
            Ok(json!({ "Successful": results, "Failed": [] }))
        }
        "ReceiveMessage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                max_number_of_messages: Option<i64>,
                visibility_timeout: Option<i64>,
                wait_time_seconds: Option<i64>,
                attribute_names: Option<Vec<String>>,
                message_system_attribute_names: Option<Vec<String>>,
                message_attribute_names: Option<Vec<String>>,
            }
            let req: Req = parse(body)?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let max = req.max_number_of_messages.unwrap_or(1);
            if !(1..=10).contains(&max) {
                return Err(SqsError::invalid(format!(
                    "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
                )));
            }
            let wait = match req.wait_time_seconds {
                Some(w) if !(0..=20).contains(&w) => {
                    return Err(SqsError::invalid(format!(
                        "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
                    )));
                }
                Some(w) => w as u64,
                None => {
                    let queue = name.clone();
                    blocking(queues, move |q| q.info(&queue))
                        .await?
                        .attributes
                        .get("ReceiveMessageWaitTimeSeconds")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                }
            };
            if req
                .visibility_timeout
                .is_some_and(|v| !(0..=43_200).contains(&v))
            {
                return Err(SqsError::invalid(
                    "VisibilityTimeout must be between 0 and 43200 seconds",
                ));
            }
            let messages = queues
                .receive(
                    &name,
                    max as usize,
                    req.visibility_timeout.map(|v| v as u64),
                    Duration::from_secs(wait),
                )
                .await?;
            let system: Vec<String> = req
                .attribute_names
                .unwrap_or_default()
                .into_iter()
                .chain(req.message_system_attribute_names.unwrap_or_default())
                .collect();
            let wanted = req.message_attribute_names.unwrap_or_default();
            let rendered: Vec<Value> = messages
                .into_iter()
                .map(|m| {
                    let mut out = json!({
                        "MessageId": m.message_id,
                        "ReceiptHandle": m.receipt_handle,
                        "MD5OfBody": m.md5_of_body,
                        "Body": m.body,
                    });
                    let all_system = [
                        ("SentTimestamp", m.sent_ms.to_string()),
                        ("ApproximateReceiveCount", m.receive_count.to_string()),
                        (
                            "ApproximateFirstReceiveTimestamp",
                            m.first_receive_ms.to_string(),
                        ),
                        ("SenderId", state.arns.account_id.clone()),
                    ];
                    let chosen: serde_json::Map<String, Value> = all_system
                        .into_iter()
                        .filter(|(k, _)| system.iter().any(|s| s == "All" || s == k))
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                    if !chosen.is_empty() {
                        out["Attributes"] = Value::Object(chosen);
                    }
                    let attrs: BTreeMap<String, Attribute> = m
                        .attributes
                        .into_iter()
                        .filter(|(k, _)| {
                            wanted.iter().any(|w| {
                                w == "All"
                                    || w == ".*"
                                    || w == k
                                    || w.strip_suffix(".*").is_some_and(|p| k.starts_with(p))
                            })
                        })
                        .collect();
                    if let Some(md5) = md5_of_attributes(&attrs) {
                        out["MD5OfMessageAttributes"] = json!(md5);
                        out["MessageAttributes"] = attrs
                            .iter()
                            .map(|(k, a)| {
                                let mut v = json!({ "DataType": a.data_type });
                                if let Some(s) = &a.string_value {
                                    v["StringValue"] = json!(s);
                                }
                                if let Some(b) = &a.binary_value {
                                    v["BinaryValue"] = json!(b);
                                }
                                (k.clone(), v)
                            })
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                    }
                    out
                })
                .collect();
            Ok(json!({ "Messages": rendered }))
        }
        "DeleteMessage" | "ChangeMessageVisibility" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                receipt_handle: String,
                visibility_timeout: Option<i64>,
            }
            let req: Req = parse(body)?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let handle = req.receipt_handle;
            if action == "DeleteMessage" {
                blocking(queues, move |q| q.delete_message(&name, &handle)).await?;
            } else {
                let visibility = req
                    .visibility_timeout
                    .filter(|v| (0..=43_200).contains(v))
                    .ok_or_else(|| {
                        SqsError::invalid("VisibilityTimeout must be between 0 and 43200 seconds")
                    })?;
                blocking(queues, move |q| {
                    q.change_visibility(&name, &handle, visibility as u64)
                })
                .await?;
            }
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Entry {
                id: String,
                receipt_handle: String,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                entries: Vec<Entry>,
            }
            let req: Req = parse(body)?;
            check_batch(req.entries.iter().map(|e| e.id.as_str()).collect())?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for entry in req.entries {
                let queue = name.clone();
                let handle = entry.receipt_handle.clone();
                match blocking(queues, move |q| q.delete_message(&queue, &handle)).await {
                    Ok(()) => successful.push(json!({ "Id": entry.id })),
                    Err(e) if e.code == "AWS.SimpleQueueService.NonExistentQueue" => return Err(e),
                    Err(e) => failed.push(json!({ "Id": entry.id, "SenderFault": true, "Code": e.code, "Message": e.message })),
                }
            }
            Ok(json!({ "Successful": successful, "Failed": failed }))
        }
        "GetQueueAttributes" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Req {
                queue_url: String,
                attribute_names: Option<Vec<String>>,
            }
            let req: Req = parse(body)?;
            let name = endpoint.queue_name(&req.queue_url)?;
            let queue = name.clone();
            let (info, counts) =
                blocking(queues, move |q| Ok((q.info(&queue)?, q.counts(&queue)?))).await?;
            let mut all: BTreeMap<String, String> = BTreeMap::new();
            all.insert("VisibilityTimeout".into(), info.visibility_s().to_string());
            all.insert(
                "MessageRetentionPeriod".into(),
                info.retention_s().to_string(),
            );
            all.insert("DelaySeconds".into(), info.delay_s().to_string());
            all.insert(
                "MaximumMessageSize".into(),
                crate::queues::MAX_MESSAGE_BYTES.to_string(),
            );
            all.insert("ReceiveMessageWaitTimeSeconds".into(), "0".into());
            all.extend(info.attributes.clone());
            all.insert("ApproximateNumberOfMessages".into(), counts.0.to_string());
            all.insert(
                "ApproximateNumberOfMessagesNotVisible".into(),
                counts.1.to_string(),
            );
            all.insert(
                "ApproximateNumberOfMessagesDelayed".into(),
                counts.2.to_string(),
            );
            all.insert(
                "CreatedTimestamp".into(),
                (info.created_ms / 1000).to_string(),
            );
            all.insert(
                "LastModifiedTimestamp".into(),
                (info.created_ms / 1000).to_string(),
            );
            all.insert(
                "QueueArn".into(),
                format!(
                    "arn:aws:sqs:{}:{}:{name}",
                    state.arns.region, state.arns.account_id
                ),
            );
            let names = req.attribute_names.unwrap_or_default();
            let chosen: BTreeMap<String, String> = all
                .into_iter()
                .filter(|(k, _)| names.iter().any(|n| n == "All" || n == k))
                .collect();
            Ok(json!({ "Attributes": chosen }))
        }
        "SetQueueAttributes" => set_queue_attributes(queues, body, endpoint).await,
        "TagQueue" => tag_queue(queues, body, endpoint).await,
        "UntagQueue" => untag_queue(queues, body, endpoint).await,
        "ListQueueTags" => list_queue_tags(queues, body, endpoint).await,
        other => Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "UnsupportedOperation",
            code: "AWS.SimpleQueueService.UnsupportedOperation",
            message: format!("The action {other} is not supported by this server"),
        }),
    }
}

/// SetQueueAttributes: the attributes CreateQueue accepts, checked the same way; a
/// redrive policy must name an existing queue.
async fn set_queue_attributes(
    queues: &Arc<QueueService>,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        queue_url: String,
        attributes: Option<HashMap<String, String>>,
    }
    let req: Req = parse(body)?;
    let name = endpoint.queue_name(&req.queue_url)?;
    let Some(attributes) = req.attributes else {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "MissingParameter",
            code: "MissingParameter",
            message: "The request must contain the parameter Attributes.".into(),
        });
    };
    let attrs = crate::queues::validate_attributes(&attributes)?;
    blocking(queues, move |q| q.set_attributes(&name, attrs)).await?;
    Ok(json!({}))
}

async fn tag_queue(
    queues: &Arc<QueueService>,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        queue_url: String,
        tags: Option<BTreeMap<String, String>>,
    }
    let req: Req = parse(body)?;
    let name = endpoint.queue_name(&req.queue_url)?;
    let tags = req
        .tags
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SqsError::invalid("The request must contain at least one tag."))?;
    blocking(queues, move |q| q.tag(&name, tags)).await?;
    Ok(json!({}))
}

async fn untag_queue(
    queues: &Arc<QueueService>,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        queue_url: String,
        tag_keys: Option<Vec<String>>,
    }
    let req: Req = parse(body)?;
    let name = endpoint.queue_name(&req.queue_url)?;
    let keys = req
        .tag_keys
        .filter(|k| !k.is_empty())
        .ok_or_else(|| SqsError::invalid("The request must contain at least one tag key."))?;
    blocking(queues, move |q| q.untag(&name, &keys)).await?;
    Ok(json!({}))
}

async fn list_queue_tags(
    queues: &Arc<QueueService>,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Value, SqsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        queue_url: String,
    }
    let req: Req = parse(body)?;
    let name = endpoint.queue_name(&req.queue_url)?;
    let tags = blocking(queues, move |q| q.tags(&name)).await?;
    Ok(if tags.is_empty() {
        json!({})
    } else {
        json!({ "Tags": tags })
    })
}

fn check_batch(ids: Vec<&str>) -> Result<(), SqsError> {
    if ids.is_empty() {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "EmptyBatchRequest",
            code: "AWS.SimpleQueueService.EmptyBatchRequest",
            message: "There should be at least one entry in the request.".into(),
        });
    }
    if ids.len() > BATCH_MAX {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "TooManyEntriesInBatchRequest",
            code: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            message: format!(
                "Maximum number of entries per request are {BATCH_MAX}. You have sent {}.",
                ids.len()
            ),
        });
    }
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        return Err(SqsError {
            status: StatusCode::BAD_REQUEST,
            shape: "BatchEntryIdsNotDistinct",
            code: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            message: "Two or more batch entries in the request have the same Id.".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Endpoint {
        Endpoint {
            host: "127.0.0.1:9600".into(),
            account: "000000000000".into(),
        }
    }

    #[test]
    fn queue_urls_of_this_endpoint_and_account_only() {
        let e = ours();
        assert_eq!(e.queue_name(&e.url("jobs")).unwrap(), "jobs");
        assert_eq!(
            e.queue_name("http://localhost:9600/000000000000/jobs")
                .unwrap(),
            "jobs"
        );
        assert_eq!(e.queue_name("/000000000000/jobs/").unwrap(), "jobs");
        let other_account = e
            .queue_name("http://127.0.0.1:9600/123456789012/jobs")
            .unwrap_err();
        assert_eq!(
            (other_account.status, other_account.code),
            (StatusCode::FORBIDDEN, "AccessDenied")
        );
        let other_host = e
            .queue_name("https://sqs.us-east-1.amazonaws.com/000000000000/jobs")
            .unwrap_err();
        assert_eq!(other_host.code, "InvalidAddress");
        let other_port = e
            .queue_name("http://127.0.0.1:9700/000000000000/jobs")
            .unwrap_err();
        assert_eq!(other_port.code, "InvalidAddress");
        for bad in [
            "jobs",
            "http://127.0.0.1:9600",
            "http://127.0.0.1:9600/jobs",
            "/a/b/c",
        ] {
            assert_eq!(
                e.queue_name(bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }

    #[test]
    fn message_bodies_follow_sqs_character_rules() {
        assert!(check_body("plain text\t\r\n ok \u{E000} \u{1F600}").is_ok());
        assert_eq!(check_body("").unwrap_err().code, "MissingParameter");
        for bad in ["a\u{0}b", "\u{8}", "\u{B}", "\u{1F}", "\u{FFFE}"] {
            let e = check_body(bad).unwrap_err();
            assert_eq!(e.code, "InvalidMessageContents", "{bad:?}");
        }
        assert!(check_body("\u{0}").unwrap_err().message.contains("#x0"));
    }
}
