//! An HTTP request as Lambda's payload format 2.0 event, the shape function URLs (and
//! HTTP APIs' 2.0 integrations) hand to a function.
//!
//! Headers are lower-cased, repeated ones joined with commas; `cookie` headers become the
//! `cookies` list and leave `headers`; query parameters are decoded, repeated ones joined
//! with commas; a body whose content type is text (`text/*`, JSON, XML, JavaScript, form
//! data) is passed as it is, any other body base64-encoded with `isBase64Encoded: true`.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method};
use base64::Engine;
use serde_json::{Map, Value, json};

/// The request, as the front read it.
pub struct HttpRequest<'a> {
    pub method: &'a Method,
    /// The path as the URL's own (`/` at least), undecoded.
    pub path: &'a str,
    /// The query string without `?` (empty when none).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: IpAddr,
    /// `HTTP/1.1`.
    pub protocol: &'a str,
}

impl HttpRequest<'_> {
    /// The `User-Agent` header's value (empty when none).
    pub fn user_agent(&self) -> &str {
        self.headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The first label of a host name (`requestContext.domainPrefix`).
pub fn domain_prefix(domain: &str) -> &str {
    domain.split('.').next().unwrap_or(domain)
}

/// Who is serving the request.
pub struct RequestContext<'a> {
    pub account_id: &'a str,
    /// The URL id (function URLs) or API id (HTTP APIs).
    pub api_id: &'a str,
    /// The host name (`<url-id>.lambda-url.<region>.localhost`).
    pub domain_name: &'a str,
    pub request_id: &'a str,
    pub time_ms: u64,
    /// `$default` for function URLs; the matched route's key for HTTP APIs.
    pub route_key: &'a str,
    pub stage: &'a str,
    /// `requestContext.authorizer`, when the request was authorized by someone.
    pub authorizer: Option<Value>,
}

/// Whether a body of this content type is passed as text.
pub fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        // No content type: text when it is UTF-8 (decided by the caller on the bytes).
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
}

/// `(text, isBase64Encoded)` of a request body.
pub fn body_field(headers: &HeaderMap, body: &[u8]) -> (String, bool) {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if is_text(content_type)
        && let Ok(text) = std::str::from_utf8(body)
    {
        return (text.to_string(), false);
    }
    (base64::engine::general_purpose::STANDARD.encode(body), true)
}

/// Lower-cased headers, repeated ones joined with `,`; the `cookie` headers apart, split
/// into single cookies.
pub fn headers_and_cookies(headers: &HeaderMap) -> (Map<String, Value>, Vec<String>) {
    let mut joined: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == "cookie" {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            );
            continue;
        }
        joined.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    (joined, cookies)
}

/// Decoded query parameters, repeated names' values joined with `,`, in first-seen order.
pub fn query_parameters(query: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match out.get_mut(name.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    out
}

/// The payload format 2.0 event of `request`.
pub fn event_v2(request: &HttpRequest<'_>, context: &RequestContext<'_>) -> Value {
    let (headers, cookies) = headers_and_cookies(request.headers);
    let user_agent = request.user_agent();
    let domain_prefix = domain_prefix(context.domain_name);
    let mut event = json!({
        "version": "2.0",
        "routeKey": context.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": {
            "accountId": context.account_id,
            "apiId": context.api_id,
            "domainName": context.domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": request.method.as_str(),
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip.to_string(),
                "userAgent": user_agent,
            },
            "requestId": context.request_id,
            "routeKey": context.route_key,
            "stage": context.stage,
            "time": crate::timefmt::clf_timestamp(context.time_ms),
            "timeEpoch": context.time_ms,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    let query = query_parameters(request.query);
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if let Some(authorizer) = &context.authorizer {
        event["requestContext"]["authorizer"] = authorizer.clone();
    }
    if !request.body.is_empty() {
        let (body, encoded) = body_field(request.headers, request.body);
        event["body"] = Value::String(body);
        event["isBase64Encoded"] = Value::Bool(encoded);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("X-Multi", HeaderValue::from_static("a"));
        h.append("X-Multi", HeaderValue::from_static("b"));
        h.append("Cookie", HeaderValue::from_static("s=1; theme=dark"));
        h.append("Cookie", HeaderValue::from_static("lang=en"));
        h.append("User-Agent", HeaderValue::from_static("curl/8"));
        h.append(
            "Content-Type",
            HeaderValue::from_static("application/octet-stream"),
        );
        h
    }

    #[test]
    fn a_request_becomes_a_2_0_event() {
        let headers = request_headers();
        let body = [0u8, 159, 146, 150];
        let request = HttpRequest {
            method: &Method::POST,
            path: "/a/b%20c",
            query: "x=1&y=two%20words&x=3",
            headers: &headers,
            body: &body,
            source_ip: "127.0.0.1".parse().unwrap(),
            protocol: "HTTP/1.1",
        };
        let context = RequestContext {
            account_id: "000000000000",
            api_id: "abc",
            domain_name: "abc.lambda-url.us-east-1.localhost",
            request_id: "rid",
            time_ms: 1_631_055_022_677,
            route_key: "$default",
            stage: "$default",
            authorizer: None,
        };
        let event = event_v2(&request, &context);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/a/b%20c");
        assert_eq!(event["rawQueryString"], "x=1&y=two%20words&x=3");
        assert_eq!(event["queryStringParameters"]["x"], "1,3");
        assert_eq!(event["queryStringParameters"]["y"], "two words");
        assert_eq!(event["headers"]["x-multi"], "a,b");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], json!(["s=1", "theme=dark", "lang=en"]));
        assert_eq!(event["requestContext"]["domainPrefix"], "abc");
        assert_eq!(event["requestContext"]["http"]["userAgent"], "curl/8");
        assert_eq!(
            event["requestContext"]["time"],
            "07/Sep/2021:22:50:22 +0000"
        );
        assert_eq!(event["requestContext"]["timeEpoch"], 1_631_055_022_677u64);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "AJ+Slg==");
    }

    #[test]
    fn text_bodies_are_passed_as_text_and_empty_ones_not_at_all() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(
            body_field(&headers, b"{\"a\":1}"),
            ("{\"a\":1}".into(), false)
        );
        assert_eq!(
            body_field(&HeaderMap::new(), b"plain"),
            ("plain".into(), false)
        );
        assert_eq!(body_field(&HeaderMap::new(), &[0xff]).1, true);
        let request = HttpRequest {
            method: &Method::GET,
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
            source_ip: "127.0.0.1".parse().unwrap(),
            protocol: "HTTP/1.1",
        };
        let context = RequestContext {
            account_id: "1",
            api_id: "a",
            domain_name: "a",
            request_id: "r",
            time_ms: 0,
            route_key: "$default",
            stage: "$default",
            authorizer: None,
        };
        let event = event_v2(&request, &context);
        assert!(event.get("body").is_none());
        assert!(event.get("queryStringParameters").is_none());
        assert!(event.get("cookies").is_none());
        assert_eq!(event["isBase64Encoded"], false);
    }
}
