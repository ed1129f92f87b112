//! SQS's query protocol: `POST /` (or `POST /<account>/<queue>`, a queue's URL, as older
//! SDKs send) with a form `Action=<Action>&...`, answered in XML. Older SDKs and tools
//! still speak it.
//!
//! The form is translated into the JSON protocol's input (the flattened lists and maps,
//! `Attribute.1.Name`, `MessageAttribute.1.Value.StringValue`,
//! `SendMessageBatchRequestEntry.1.Id`, ..., become the JSON members they stand for), the
//! action runs as it does for a JSON request, and its output is written back as the
//! query protocol's XML (`<Attribute><Name/><Value/></Attribute>`, `<QueueUrl>` repeated,
//! `<SendMessageBatchResultEntry>`, ...). Errors are `<ErrorResponse>` documents with the
//! same codes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::action::SqsAction;
use super::{BODY_MAX, Call, request_place, run_traced};
use crate::api::fronts::Answer;
use crate::api::query::{Form, Xml};
use crate::api::{ApiError, SharedState, read_body};

/// The XML namespace of SQS's answers.
const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// Form fields that are not the action's input (the action, and signature version 2's
/// parameters).
const NOT_INPUT: &[&str] = &[
    "Action",
    "Version",
    "AWSAccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "Timestamp",
    "Expires",
];

/// Scalars that are numbers in the JSON protocol.
const INTEGERS: &[&str] = &[
    "DelaySeconds",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "MaxResults",
    "MaxNumberOfMessagesPerSecond",
];

/// How a flattened field of the form is read.
#[derive(Clone, Copy)]
enum Shape {
    /// `X.1=a&X.2=b`: a list of strings.
    List,
    /// `X.1.Name=k&X.1.Value=v`: a map.
    NameValue,
    /// `X.1.Key=k&X.1.Value=v`: a map (tags).
    KeyValue,
    /// `X.1.Name=k&X.1.Value.DataType=..`: message attributes.
    Attributes,
    /// `X.1.Id=..&X.1.MessageBody=..`: batch entries, each read like a request.
    Entries,
}

/// The flattened fields: their name on the form, in the JSON input, and shape.
const FLATTENED: &[(&str, &str, Shape)] = &[
    ("Attribute", "Attributes", Shape::NameValue),
    ("AttributeName", "AttributeNames", Shape::List),
    ("MessageAttributeName", "MessageAttributeNames", Shape::List),
    (
        "MessageSystemAttributeName",
        "MessageSystemAttributeNames",
        Shape::List,
    ),
    ("MessageAttribute", "MessageAttributes", Shape::Attributes),
    (
        "MessageSystemAttribute",
        "MessageSystemAttributes",
        Shape::Attributes,
    ),
    ("Tag", "Tags", Shape::KeyValue),
    ("TagKey", "TagKeys", Shape::List),
    ("AWSAccountId", "AWSAccountIds", Shape::List),
    ("ActionName", "Actions", Shape::List),
    ("SendMessageBatchRequestEntry", "Entries", Shape::Entries),
    ("DeleteMessageBatchRequestEntry", "Entries", Shape::Entries),
    (
        "ChangeMessageVisibilityBatchRequestEntry",
        "Entries",
        Shape::Entries,
    ),
];

/// The front's entry in the table of fronts: a query request to `POST /`.
pub(in crate::api) fn serve(state: SharedState, headers: HeaderMap, body: Body) -> Answer {
    Box::pin(handle(state, headers, body, None))
}

/// `POST /<account>/<queue>`: a query request sent to a queue's URL (the queue is the one
/// the request is for when it names none).
pub(in crate::api) async fn serve_at_queue(
    State(state): State<SharedState>,
    Path((account, queue)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, headers, body, Some(format!("/{account}/{queue}"))).await
}

async fn handle(
    state: SharedState,
    headers: HeaderMap,
    body: Body,
    queue_path: Option<String>,
) -> Response {
    let body = match read_body(body, BODY_MAX, || {
        ApiError::RequestTooLarge("Request is too large".into())
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let form = Form::parse(&body);
    let name = form.get("Action").unwrap_or_default();
    let Some(action) = SqsAction::from_name(name) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("The action {name} is not valid for this web service."),
        );
    };
    let mut input = to_input(action, &form);
    if let Some(path) = queue_path {
        input.entry("QueueUrl").or_insert(Value::String(path));
    }
    let json = Value::Object(input).to_string();
    let (scope, endpoint) = match request_place(&state, &headers) {
        Ok(place) => place,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        state: &state,
        scope,
        endpoint,
        body: json.as_bytes(),
    };
    match run_traced(action, &call).await {
        Ok(output) => ok(action, &output),
        Err(e) => error_response(e.status, e.code, &e.message),
    }
}

/// The JSON input a form stands for.
fn to_input(action: SqsAction, form: &Form) -> Map<String, Value> {
    let mut input = Map::new();
    for (name, value) in form.scalars() {
        if NOT_INPUT.contains(&name) {
            continue;
        }
        let value = match value.parse::<i64>() {
            Ok(n) if INTEGERS.contains(&name) => Value::from(n),
            _ => Value::String(value.to_string()),
        };
        input.insert(name.to_string(), value);
    }
    for &(wire, json, shape) in FLATTENED {
        let items = form.indexed(wire);
        if items.is_empty() {
            continue;
        }
        let value = match shape {
            Shape::List => items
                .iter()
                .filter_map(|(_, item)| item.get(""))
                .map(|v| Value::String(v.to_string()))
                .collect(),
            Shape::NameValue | Shape::KeyValue => {
                let key = if matches!(shape, Shape::KeyValue) {
                    "Key"
                } else {
                    "Name"
                };
                Value::Object(
                    items
                        .iter()
                        .filter_map(|(_, item)| {
                            Some((
                                item.get(key)?.to_string(),
                                Value::String(item.get("Value").unwrap_or_default().to_string()),
                            ))
                        })
                        .collect(),
                )
            }
            Shape::Attributes => Value::Object(
                items
                    .iter()
                    .filter_map(|(_, item)| {
                        Some((
                            item.get("Name")?.to_string(),
                            attribute_value(&item.nested("Value")),
                        ))
                    })
                    .collect(),
            ),
            Shape::Entries => items
                .iter()
                .map(|(_, item)| Value::Object(to_input(action, item)))
                .collect(),
        };
        // CreateQueue names its tags in lower case.
        let json = if json == "Tags" && action == SqsAction::CreateQueue {
            "tags"
        } else {
            json
        };
        input.insert(json.to_string(), value);
    }
    input
}

/// A message attribute's value: `DataType`, `StringValue`, `BinaryValue` and the lists.
fn attribute_value(value: &Form) -> Value {
    let mut out = Map::new();
    for field in ["DataType", "StringValue", "BinaryValue"] {
        if let Some(v) = value.get(field) {
            out.insert(field.to_string(), Value::String(v.to_string()));
        }
    }
    for (wire, json) in [
        ("StringListValue", "StringListValues"),
        ("BinaryListValue", "BinaryListValues"),
    ] {
        let list = value.strings(wire);
        if !list.is_empty() {
            out.insert(
                json.to_string(),
                list.into_iter().map(Value::String).collect(),
            );
        }
    }
    Value::Object(out)
}

/// A successful answer: the action's output as the query protocol's XML.
fn ok(action: SqsAction, output: &Value) -> Response {
    let mut result = Xml::default();
    if let Value::Object(members) = output {
        for (key, value) in members {
            write_member(&mut result, action, key, value);
        }
    }
    let request_id = crate::invoke::new_request_id().to_string();
    let body = Xml::response(action.name(), NAMESPACE, &request_id, Some(&result));
    xml_response(StatusCode::OK, body, &request_id, None)
}

/// One member of an output, as the query protocol writes it (its lists and maps
/// flattened).
fn write_member(xml: &mut Xml, action: SqsAction, key: &str, value: &Value) {
    match (key, value) {
        ("Attributes", Value::Object(map)) => {
            for (name, v) in map {
                xml.element("Attribute", |xml| {
                    xml.leaf("Name", name);
                    xml.leaf("Value", &scalar(v));
                });
            }
        }
        ("Tags", Value::Object(map)) => {
            for (name, v) in map {
                xml.element("Tag", |xml| {
                    xml.leaf("Key", name);
                    xml.leaf("Value", &scalar(v));
                });
            }
        }
        ("MessageAttributes", Value::Object(map)) => {
            for (name, v) in map {
                xml.element("MessageAttribute", |xml| {
                    xml.leaf("Name", name);
                    xml.element("Value", |xml| {
                        for field in ["StringValue", "BinaryValue", "DataType"] {
                            if let Some(s) = v.get(field).and_then(Value::as_str) {
                                xml.leaf(field, s);
                            }
                        }
                    });
                });
            }
        }
        (_, Value::Array(items)) => {
            let tag = match key {
                "QueueUrls" | "queueUrls" => "QueueUrl".to_string(),
                "Messages" => "Message".to_string(),
                "Failed" => "BatchResultErrorEntry".to_string(),
                "Successful" => format!("{}ResultEntry", action.name()),
                "Results" => format!("{}ResultEntry", action.name()),
                other => other.to_string(),
            };
            for item in items {
                write_member(xml, action, &tag, item);
            }
        }
        (_, Value::Object(members)) => xml.element(key, |xml| {
            for (k, v) in members {
                write_member(xml, action, k, v);
            }
        }),
        (_, Value::Null) => {}
        (_, v) => xml.leaf(key, &scalar(v)),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn xml_response(
    status: StatusCode,
    body: String,
    request_id: &str,
    code: Option<&str>,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    if let Some(code) = code {
        let fault = if status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault}")) {
            headers.insert("x-amzn-query-error", v);
        }
    }
    response
}

/// An `<ErrorResponse>`.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let request_id = crate::invoke::new_request_id().to_string();
    let body = Xml::error(NAMESPACE, fault, code, message, &request_id);
    xml_response(status, body, &request_id, Some(code))
}

/// An error made outside the front (authentication, limits) in the query protocol's
/// format.
pub(in crate::api) fn foreign_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    error_response(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_become_the_json_input() {
        let form = Form::parse(
            b"Action=SendMessageBatch&Version=2012-11-05&QueueUrl=%2F1%2Fq\
              &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=hi\
              &SendMessageBatchRequestEntry.1.DelaySeconds=5\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=color\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=red\
              &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=yo",
        );
        let input = Value::Object(to_input(SqsAction::SendMessageBatch, &form));
        assert_eq!(input["QueueUrl"], "/1/q");
        assert!(input.get("Action").is_none());
        let entries = input["Entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["DelaySeconds"], 5);
        assert_eq!(
            entries[0]["MessageAttributes"]["color"],
            serde_json::json!({"DataType": "String", "StringValue": "red"})
        );
        let create = Form::parse(
            b"Action=CreateQueue&QueueName=q&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=5\
              &Tag.1.Key=team&Tag.1.Value=a",
        );
        let input = Value::Object(to_input(SqsAction::CreateQueue, &create));
        assert_eq!(input["Attributes"]["VisibilityTimeout"], "5");
        assert_eq!(input["tags"]["team"], "a");
        let receive =
            Form::parse(b"Action=ReceiveMessage&AttributeName.1=All&MaxNumberOfMessages=10");
        let input = Value::Object(to_input(SqsAction::ReceiveMessage, &receive));
        assert_eq!(input["AttributeNames"], serde_json::json!(["All"]));
        assert_eq!(input["MaxNumberOfMessages"], 10);
    }

    #[tokio::test]
    async fn outputs_become_flattened_xml() {
        let output = serde_json::json!({
            "Messages": [{
                "MessageId": "m", "Body": "a<b", "Attributes": {"SenderId": "1"},
                "MessageAttributes": {"color": {"DataType": "String", "StringValue": "red"}},
            }],
        });
        let response = ok(SqsAction::ReceiveMessage, &output);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<ReceiveMessageResult><Message><Attribute><Name>SenderId</Name><Value>1</Value></Attribute>"), "{text}");
        assert!(text.contains("<Body>a&lt;b</Body>"), "{text}");
        assert!(text.contains("<MessageAttribute><Name>color</Name><Value><StringValue>red</StringValue><DataType>String</DataType></Value></MessageAttribute>"), "{text}");
        let batch = serde_json::json!({
            "Successful": [{"Id": "a", "MessageId": "m"}],
            "Failed": [{"Id": "b", "SenderFault": true, "Code": "X", "Message": "no"}],
        });
        let response = ok(SqsAction::SendMessageBatch, &batch);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<SendMessageBatchResultEntry><Id>a</Id><MessageId>m</MessageId></SendMessageBatchResultEntry>"), "{text}");
        assert!(
            text.contains(
                "<BatchResultErrorEntry><Code>X</Code><Id>b</Id><Message>no</Message><SenderFault>true</SenderFault></BatchResultErrorEntry>"
            ),
            "{text}"
        );
        let urls = ok(
            SqsAction::ListQueues,
            &serde_json::json!({"QueueUrls": ["u1", "u2"]}),
        );
        let body = axum::body::to_bytes(urls.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&body)
                .contains("<QueueUrl>u1</QueueUrl><QueueUrl>u2</QueueUrl>")
        );
    }
}
