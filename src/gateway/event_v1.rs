//! Payload format 1.0: the REST-API-shaped event an HTTP API's `1.0` Lambda integration
//! hands to a function, and the stricter rule for its answer (an object with a
//! `statusCode`; anything else is the function's fault).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::urls::event::{HttpRequest, body_field, domain_prefix};

/// Who is serving the request (1.0's `requestContext`).
pub struct ContextV1<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub domain_name: &'a str,
    pub request_id: &'a str,
    pub time_ms: u64,
    pub stage: &'a str,
    /// The route's path (`/pets/{id}`) or `$default`.
    pub resource_path: &'a str,
    pub route_key: &'a str,
    pub route_id: &'a str,
    pub path_parameters: &'a BTreeMap<String, String>,
    pub stage_variables: &'a BTreeMap<String, String>,
    pub authorizer: Option<Value>,
}

fn single_and_multi(
    pairs: impl Iterator<Item = (String, String)>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in pairs {
        single.insert(name.clone(), Value::String(value.clone()));
        match multi.get_mut(&name) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            _ => {
                multi.insert(name, json!([value]));
            }
        }
    }
    (single, multi)
}

fn map_or_null<K: AsRef<str>, V: AsRef<str>>(map: impl IntoIterator<Item = (K, V)>) -> Value {
    let object: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            (
                k.as_ref().to_string(),
                Value::String(v.as_ref().to_string()),
            )
        })
        .collect();
    if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    }
}

/// The payload format 1.0 event of `request`.
pub fn event_v1(request: &HttpRequest<'_>, context: &ContextV1<'_>) -> Value {
    let headers = request.headers.iter().map(|(name, value)| {
        (
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    });
    let (single_headers, multi_headers) = single_and_multi(headers);
    let query = form_urlencoded::parse(request.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()));
    let (single_query, multi_query) = single_and_multi(query);
    let user_agent = request.user_agent();
    let domain_prefix = domain_prefix(context.domain_name);
    let (body, encoded) = if request.body.is_empty() {
        (Value::Null, false)
    } else {
        let (text, encoded) = body_field(request.headers, request.body);
        (Value::String(text), encoded)
    };
    let object_or_null = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let mut event = json!({
        "version": "1.0",
        "resource": context.resource_path,
        "path": request.path,
        "httpMethod": request.method.as_str(),
        "headers": Value::Object(single_headers),
        "multiValueHeaders": Value::Object(multi_headers),
        "queryStringParameters": object_or_null(single_query),
        "multiValueQueryStringParameters": object_or_null(multi_query),
        "requestContext": {
            "accountId": context.account_id,
            "apiId": context.api_id,
            "domainName": context.domain_name,
            "domainPrefix": domain_prefix,
            "extendedRequestId": context.request_id,
            "httpMethod": request.method.as_str(),
            "identity": {
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": request.source_ip.to_string(),
                "user": null,
                "userAgent": user_agent,
                "userArn": null,
            },
            "path": request.path,
            "protocol": request.protocol,
            "requestId": context.request_id,
            "requestTime": crate::timefmt::clf_timestamp(context.time_ms),
            "requestTimeEpoch": context.time_ms,
            "resourceId": context.route_id,
            "resourcePath": context.resource_path,
            "routeKey": context.route_key,
            "stage": context.stage,
        },
        "pathParameters": map_or_null(context.path_parameters.iter()),
        "stageVariables": map_or_null(context.stage_variables.iter()),
        "body": body,
        "isBase64Encoded": encoded,
    });
    if let Some(authorizer) = &context.authorizer {
        event["requestContext"]["authorizer"] = authorizer.clone();
    }
    event
}

/// Whether a 1.0 answer has the shape of a response (the 2.0 rules then read it): an
/// object with a `statusCode`.
pub fn is_response(output: &[u8]) -> bool {
    serde_json::from_slice::<Value>(output)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("statusCode")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, Method};

    #[test]
    fn a_request_becomes_a_1_0_event() {
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.append("content-type", HeaderValue::from_static("application/json"));
        let params = BTreeMap::from([("id".to_string(), "7".to_string())]);
        let vars = BTreeMap::new();
        let request = HttpRequest {
            method: &Method::POST,
            path: "/pets/7",
            query: "a=1&a=2",
            headers: &headers,
            body: b"{\"x\":1}",
            source_ip: "127.0.0.1".parse().unwrap(),
            protocol: "HTTP/1.1",
        };
        let event = event_v1(
            &request,
            &ContextV1 {
                account_id: "000000000000",
                api_id: "abcdefghij",
                domain_name: "abcdefghij.execute-api.localhost",
                request_id: "rid",
                time_ms: 0,
                stage: "$default",
                resource_path: "/pets/{id}",
                route_key: "POST /pets/{id}",
                route_id: "r1",
                path_parameters: &params,
                stage_variables: &vars,
                authorizer: None,
            },
        );
        assert_eq!(event["version"], "1.0");
        assert_eq!(event["resource"], "/pets/{id}");
        assert_eq!(event["httpMethod"], "POST");
        assert_eq!(event["headers"]["x-multi"], "b");
        assert_eq!(event["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
        assert_eq!(event["queryStringParameters"]["a"], "2");
        assert_eq!(
            event["multiValueQueryStringParameters"]["a"],
            json!(["1", "2"])
        );
        assert_eq!(event["pathParameters"]["id"], "7");
        assert_eq!(event["stageVariables"], Value::Null);
        assert_eq!(event["body"], "{\"x\":1}");
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
        assert!(is_response(br#"{"statusCode":200}"#));
        assert!(!is_response(br#"{"hello":1}"#));
        assert!(!is_response(b"nope"));
    }
}
