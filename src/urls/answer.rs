//! A function's output as the HTTP answer of a function URL (payload format 2.0's
//! response rules).
//!
//! An object with a `statusCode` is a response: its status, `headers`, `cookies` (each a
//! `set-cookie` header) and `body` (base64-decoded when `isBase64Encoded`). Any other JSON
//! value is the body itself, answered with 200 and `content-type: application/json`.
//! Output that is not JSON, or a response that is malformed, is the function's fault:
//! 502, as Lambda answers.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

/// The HTTP answer a function's output makes.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an output cannot be answered (the function's fault).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadOutput {
    #[error("the function's output is not JSON")]
    NotJson,
    #[error("statusCode {0} is not an HTTP status")]
    Status(String),
    #[error("the body is marked base64 but is not")]
    Base64,
    #[error("header '{0}' is not a valid HTTP header")]
    Header(String),
}

impl HttpAnswer {
    /// The answer Lambda gives when the function failed or answered wrongly.
    pub fn bad_gateway() -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Self {
            status: StatusCode::BAD_GATEWAY,
            headers,
            body: Bytes::from_static(b"Internal Server Error"),
        }
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn header(headers: &mut HeaderMap, name: &str, value: &str, append: bool) -> Result<(), BadOutput> {
    let invalid = || BadOutput::Header(name.to_string());
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
    if append {
        headers.append(name, value);
    } else {
        headers.insert(name, value);
    }
    Ok(())
}

/// The answer to send for a function's `output`.
pub fn from_output(output: &[u8]) -> Result<HttpAnswer, BadOutput> {
    let value: Value = serde_json::from_slice(output).map_err(|_| BadOutput::NotJson)?;
    let Some(status) = value.as_object().and_then(|o| o.get("statusCode")) else {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        return Ok(HttpAnswer {
            status: StatusCode::OK,
            headers,
            body: Bytes::copy_from_slice(output),
        });
    };
    let status = status
        .as_u64()
        .or_else(|| status.as_str().and_then(|s| s.parse().ok()))
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|code| code.as_u16() >= 100)
        .ok_or_else(|| BadOutput::Status(status.to_string()))?;
    let mut headers = HeaderMap::new();
    if let Some(map) = value.get("headers").and_then(Value::as_object) {
        for (name, v) in map {
            header(&mut headers, name, &text_of(v), false)?;
        }
    }
    // Format 1.0's multi-value headers, which some frameworks send to 2.0 too.
    if let Some(map) = value.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in map {
            for v in values.as_array().into_iter().flatten() {
                header(&mut headers, name, &text_of(v), true)?;
            }
        }
    }
    if let Some(cookies) = value.get("cookies").and_then(Value::as_array) {
        for cookie in cookies {
            header(&mut headers, "set-cookie", &text_of(cookie), true)?;
        }
    }
    let encoded = value
        .get("isBase64Encoded")
        .is_some_and(|v| v.as_bool() == Some(true));
    let body = match value.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(body) if encoded => {
            let text = text_of(body);
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| BadOutput::Base64)?,
            )
        }
        Some(body) => Bytes::from(text_of(body)),
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_without_a_status_is_the_body() {
        let answer = from_output(br#""Hello, world!""#).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["content-type"], "application/json");
        assert_eq!(&answer.body[..], br#""Hello, world!""#);
        let answer = from_output(br#"{"message":"hi"}"#).unwrap();
        assert_eq!(&answer.body[..], br#"{"message":"hi"}"#);
    }

    #[test]
    fn a_response_object_sets_status_headers_cookies_and_body() {
        let answer = from_output(
            br#"{"statusCode":201,"headers":{"Content-Type":"text/plain","X-N":5},
                "cookies":["a=1; Max-Age=60","b=2"],"body":"made"}"#,
        )
        .unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.headers["content-type"], "text/plain");
        assert_eq!(answer.headers["x-n"], "5");
        let cookies: Vec<_> = answer.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Max-Age=60", "b=2"]);
        assert_eq!(&answer.body[..], b"made");
    }

    #[test]
    fn base64_bodies_are_decoded() {
        let answer =
            from_output(br#"{"statusCode":200,"body":"AJ+Slg==","isBase64Encoded":true}"#).unwrap();
        assert_eq!(&answer.body[..], &[0u8, 159, 146, 150]);
        assert_eq!(
            from_output(br#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#).unwrap_err(),
            BadOutput::Base64
        );
    }

    #[test]
    fn malformed_outputs_are_the_functions_fault() {
        assert_eq!(from_output(b"not json").unwrap_err(), BadOutput::NotJson);
        assert!(matches!(
            from_output(br#"{"statusCode":"teapot"}"#).unwrap_err(),
            BadOutput::Status(_)
        ));
        assert!(matches!(
            from_output(br#"{"statusCode":99}"#).unwrap_err(),
            BadOutput::Status(_)
        ));
        assert!(matches!(
            from_output(br#"{"statusCode":200,"headers":{"bad name":"x"}}"#).unwrap_err(),
            BadOutput::Header(_)
        ));
    }
}
