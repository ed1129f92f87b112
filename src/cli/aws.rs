//! Requests to the SQS, EventBridge and SNS fronts, for the CLI and the benchmark: SQS's
//! and EventBridge's JSON protocols and SNS's query protocol, their errors turned into [`ClientError::Api`] with the
//! service's code and message, and the few XML reads SNS's answers need.

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use super::client::{Client, ClientError};

/// One SQS action (`client` signing for `sqs`); its JSON answer.
pub async fn sqs(client: &Client, action: &str, input: &Value) -> Result<Value, ClientError> {
    let reply = client
        .send_raw(
            Method::POST,
            "/",
            &[
                ("x-amz-target", format!("AmazonSQS.{action}")),
                ("content-type", "application/x-amz-json-1.0".to_string()),
            ],
            Some(Bytes::from(input.to_string())),
        )
        .await?;
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status.is_success() {
        return Ok(body);
    }
    let code = reply
        .headers
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("Error")
        .to_string();
    Err(ClientError::Api {
        status: reply.status,
        code,
        message: body["message"].as_str().unwrap_or_default().to_string(),
    })
}

/// One EventBridge action (`client` signing for `events`); its JSON answer.
pub async fn events(client: &Client, action: &str, input: &Value) -> Result<Value, ClientError> {
    let reply = client
        .send_raw(
            Method::POST,
            "/",
            &[
                ("x-amz-target", format!("AWSEvents.{action}")),
                ("content-type", "application/x-amz-json-1.1".to_string()),
            ],
            Some(Bytes::from(input.to_string())),
        )
        .await?;
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status.is_success() {
        return Ok(body);
    }
    Err(ClientError::Api {
        status: reply.status,
        code: body["__type"].as_str().unwrap_or("Error").to_string(),
        message: body["message"].as_str().unwrap_or_default().to_string(),
    })
}

/// One SNS action (`client` signing for `sns`); its XML answer.
pub async fn sns(client: &Client, params: &[(&str, &str)]) -> Result<String, ClientError> {
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", "2010-03-31");
        for (name, value) in params {
            form.append_pair(name, value);
        }
        Bytes::from(form.finish())
    };
    let reply = client
        .send_raw(
            Method::POST,
            "/",
            &[(
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            Some(body),
        )
        .await?;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    if reply.status.is_success() {
        return Ok(text);
    }
    Err(ClientError::Api {
        status: reply.status,
        code: xml_element(&text, "Code").unwrap_or_else(|| "Error".into()),
        message: xml_element(&text, "Message").unwrap_or(text),
    })
}

/// The text of every `<tag>` element (not nested in itself), unescaped.
pub fn xml_elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of the first `<tag>` element.
pub fn xml_element(xml: &str, tag: &str) -> Option<String> {
    xml_elements(xml, tag).into_iter().next()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xD;", "\r")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_found_in_order_and_unescaped() {
        let xml =
            "<R><member><A>1 &amp; 2</A><B>x</B></member><member><A>&lt;3&gt;</A></member></R>";
        assert_eq!(xml_elements(xml, "A"), vec!["1 & 2", "<3>"]);
        assert_eq!(xml_elements(xml, "member").len(), 2);
        assert_eq!(xml_element(xml, "B").as_deref(), Some("x"));
        assert_eq!(xml_element(xml, "C"), None);
    }
}
