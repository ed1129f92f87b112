//! Request parameter expressions of HTTP APIs: what `RequestParameters` of first-class
//! integrations and an authorizer's identity sources name, evaluated on one request.
//!
//! A value is a static string, one expression (`$request.header.name`,
//! `$request.querystring.name`, `$request.path.name`, `$request.path`, `$request.body`,
//! `$request.body.a.b[0]`, `$context.requestId`, `$stageVariables.name`), or a string with
//! expressions in `${...}` (`order-${request.path.id}`). An expression that names nothing
//! is empty.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::Value;

/// A request as expressions see it.
pub struct RequestView<'a> {
    pub headers: &'a HeaderMap,
    /// The query string (without `?`).
    pub query: &'a str,
    /// The path within the stage, undecoded.
    pub path: &'a str,
    pub path_parameters: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
    /// `$context` variables by name (`requestId`, `identity.sourceIp`, ...).
    pub context: &'a BTreeMap<String, String>,
    pub stage_variables: &'a BTreeMap<String, String>,
}

/// Why a mapping expression is refused when it is configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid mapping expression specified: {0}")]
pub struct BadExpression(pub String);

/// Checks that `value` (static, an expression, or a string with `${...}`) is one this
/// server evaluates.
pub fn validate(value: &str) -> Result<(), BadExpression> {
    for expression in expressions(value) {
        let known = expression == "request.path"
            || expression == "request.body"
            || [
                "request.header.",
                "request.querystring.",
                "request.path.",
                "request.body.",
                "context.",
                "stageVariables.",
            ]
            .iter()
            .any(|p| {
                expression
                    .strip_prefix(p)
                    .is_some_and(|rest| !rest.is_empty())
            });
        if !known {
            return Err(BadExpression(format!("${expression}")));
        }
    }
    Ok(())
}

/// The expressions (without `$`) a value holds.
fn expressions(value: &str) -> Vec<&str> {
    if let Some(whole) = value.strip_prefix('$')
        && !whole.starts_with('{')
    {
        return vec![whole];
    }
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// `value` evaluated on `request`.
pub fn evaluate(value: &str, request: &RequestView<'_>) -> String {
    if let Some(whole) = value.strip_prefix('$')
        && !whole.starts_with('{')
    {
        return lookup(whole, request).unwrap_or_default();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..at]);
        out.push_str(&lookup(&after[..end], request).unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One expression's value (`None` when it names nothing).
pub fn lookup(expression: &str, request: &RequestView<'_>) -> Option<String> {
    if let Some(name) = expression.strip_prefix("request.header.") {
        let values: Vec<String> = request
            .headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        return (!values.is_empty()).then(|| values.join(","));
    }
    if let Some(name) = expression.strip_prefix("request.querystring.") {
        let values: Vec<String> = form_urlencoded::parse(request.query.as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect();
        return (!values.is_empty()).then(|| values.join(","));
    }
    if expression == "request.path" {
        return Some(request.path.to_string());
    }
    if let Some(name) = expression.strip_prefix("request.path.") {
        return request.path_parameters.get(name).cloned();
    }
    if expression == "request.body" {
        return Some(String::from_utf8_lossy(request.body).into_owned());
    }
    if let Some(path) = expression.strip_prefix("request.body.") {
        let document: Value = serde_json::from_slice(request.body).ok()?;
        return json_path(&document, path).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    if let Some(name) = expression.strip_prefix("context.") {
        return request.context.get(name).cloned();
    }
    if let Some(name) = expression.strip_prefix("stageVariables.") {
        return request.stage_variables.get(name).cloned();
    }
    None
}

/// `a.b[0].c` in `document`.
fn json_path<'v>(document: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = document;
    for part in path.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        while let Some(inner) = indexes.strip_prefix('[') {
            let end = inner.find(']')?;
            let index: usize = inner[..end].parse().ok()?;
            current = current.get(index)?;
            indexes = &inner[end + 1..];
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn expressions_name_the_request_its_context_and_stage() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static("acme"));
        let params = BTreeMap::from([("id".to_string(), "42".to_string())]);
        let context = BTreeMap::from([("requestId".to_string(), "rid".to_string())]);
        let vars = BTreeMap::from([("queue".to_string(), "orders".to_string())]);
        let body = br#"{"order":{"items":[{"sku":"a1"}],"total":9.5}}"#;
        let request = RequestView {
            headers: &headers,
            query: "q=one&q=two&x=%20y",
            path: "/orders/42",
            path_parameters: &params,
            body,
            context: &context,
            stage_variables: &vars,
        };
        assert_eq!(evaluate("$request.header.X-Tenant", &request), "acme");
        assert_eq!(evaluate("$request.querystring.q", &request), "one,two");
        assert_eq!(evaluate("$request.querystring.x", &request), " y");
        assert_eq!(evaluate("$request.path.id", &request), "42");
        assert_eq!(evaluate("$request.path", &request), "/orders/42");
        assert_eq!(evaluate("$request.body.order.items[0].sku", &request), "a1");
        assert_eq!(evaluate("$request.body.order.total", &request), "9.5");
        assert_eq!(
            evaluate("$request.body", &request),
            String::from_utf8_lossy(body)
        );
        assert_eq!(evaluate("$context.requestId", &request), "rid");
        assert_eq!(evaluate("$stageVariables.queue", &request), "orders");
        assert_eq!(evaluate("static", &request), "static");
        assert_eq!(
            evaluate("order-${request.path.id}-${context.requestId}", &request),
            "order-42-rid"
        );
        assert_eq!(evaluate("$request.header.missing", &request), "");
    }

    #[test]
    fn unknown_expressions_are_refused() {
        assert!(validate("$request.body.x").is_ok());
        assert!(validate("plain").is_ok());
        assert!(validate("a-${context.requestId}").is_ok());
        assert!(validate("$request.cookie.x").is_err());
        assert!(validate("${request.header.}").is_err());
        assert!(validate("$nonsense").is_err());
    }
}
