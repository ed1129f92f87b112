//! A function URL's CORS settings: their validation, the preflight answer the platform
//! gives without invoking the function, and the headers it puts on every answer.
//!
//! As on Lambda, once a URL has CORS settings they are the only source of CORS headers:
//! the `access-control-*` headers a function returns are dropped, and an origin the
//! settings do not allow gets no CORS header at all (the browser then blocks the
//! answer). A URL without CORS settings passes `OPTIONS` requests to the function and
//! its headers through as they are.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Lambda's `Cors` shape; the field names are the wire's and the document's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// Methods `AllowMethods` may name (besides `*`).
const METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"];

fn too_many(field: &str, values: &[String], max: usize) -> Option<String> {
    (values.len() > max).then(|| {
        format!(
            "1 validation error detected: Value at 'cors.{field}' failed to satisfy constraint: \
             Member must have length less than or equal to {max}"
        )
    })
}

fn member_too_long(field: &str, values: &[String], min: usize, max: usize) -> Option<String> {
    values
        .iter()
        .find(|v| v.len() < min || v.len() > max)
        .map(|v| {
            format!(
                "1 validation error detected: Value '[{v}]' at 'cors.{field}' failed to satisfy constraint: \
                 Member must satisfy constraint: [Member must have length less than or equal to {max}, \
                 Member must have length greater than or equal to {min}]"
            )
        })
}

impl Cors {
    /// Checks the settings as Lambda does: list and member lengths, methods that are
    /// HTTP methods, origins that are `*` or `scheme://host[:port]`, header names that are
    /// tokens, and a `MaxAge` within a day. The message is the error's.
    pub fn validate(&self) -> Result<(), String> {
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let (headers, methods) = (list(&self.allow_headers), list(&self.allow_methods));
        let (origins, exposed) = (list(&self.allow_origins), list(&self.expose_headers));
        let checks = [
            too_many("allowHeaders", &headers, 100),
            member_too_long("allowHeaders", &headers, 0, 1024),
            too_many("allowMethods", &methods, 6),
            member_too_long("allowMethods", &methods, 0, 6),
            too_many("allowOrigins", &origins, 100),
            member_too_long("allowOrigins", &origins, 1, 253),
            too_many("exposeHeaders", &exposed, 100),
            member_too_long("exposeHeaders", &exposed, 0, 1024),
        ];
        if let Some(message) = checks.into_iter().flatten().next() {
            return Err(message);
        }
        if let Some(age) = self.max_age
            && !(0..=86_400).contains(&age)
        {
            return Err(format!(
                "1 validation error detected: Value '{age}' at 'cors.maxAge' failed to satisfy constraint: \
                 Member must have value less than or equal to 86400, and greater than or equal to 0"
            ));
        }
        if let Some(bad) = methods
            .iter()
            .find(|m| m.as_str() != "*" && !METHODS.contains(&m.to_ascii_uppercase().as_str()))
        {
            return Err(format!(
                "Invalid CORS configuration: '{bad}' in AllowMethods is not an HTTP method \
                 (one of {} or *)",
                METHODS.join(", ")
            ));
        }
        if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "Invalid CORS configuration: '{bad}' in AllowOrigins is not an origin \
                 (scheme://host[:port]) or *"
            ));
        }
        if let Some(bad) = headers
            .iter()
            .chain(&exposed)
            .find(|h| h.as_str() != "*" && HeaderName::from_bytes(h.as_bytes()).is_err())
        {
            return Err(format!(
                "Invalid CORS configuration: '{bad}' is not an HTTP header name"
            ));
        }
        Ok(())
    }

    fn origins(&self) -> &[String] {
        self.allow_origins.as_deref().unwrap_or_default()
    }

    fn credentials(&self) -> bool {
        self.allow_credentials.unwrap_or(false)
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if the
    /// settings allow it: `*` when every origin is allowed without credentials, else the
    /// origin itself.
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        let origins = self.origins();
        if origins.iter().any(|o| o == "*") {
            return Some(if self.credentials() {
                origin.to_string()
            } else {
                "*".to_string()
            });
        }
        origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
            .then(|| origin.to_string())
    }

    fn method_allowed(&self, method: &str) -> bool {
        self.allow_methods
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }

    /// The answer to a preflight request (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): its headers, empty when the origin or method is
    /// not allowed (so the browser refuses the request).
    pub fn preflight(&self, request: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        let header = |name: &str| request.get(name).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) =
            (header("origin"), header("access-control-request-method"))
        else {
            return out;
        };
        let Some(allowed) = self.allowed_origin(origin) else {
            return out;
        };
        if !self.method_allowed(method.trim()) {
            return out;
        }
        insert(&mut out, "access-control-allow-origin", &allowed);
        let methods = self.allow_methods.as_deref().unwrap_or_default();
        if methods.iter().any(|m| m == "*") {
            insert(&mut out, "access-control-allow-methods", method.trim());
        } else {
            insert(&mut out, "access-control-allow-methods", &methods.join(","));
        }
        let headers = self.allow_headers.as_deref().unwrap_or_default();
        if headers.iter().any(|h| h == "*") {
            if let Some(asked) = header("access-control-request-headers") {
                insert(&mut out, "access-control-allow-headers", asked);
            }
        } else if !headers.is_empty() {
            insert(&mut out, "access-control-allow-headers", &headers.join(","));
        }
        if let Some(age) = self.max_age {
            insert(&mut out, "access-control-max-age", &age.to_string());
        }
        if self.credentials() {
            insert(&mut out, "access-control-allow-credentials", "true");
        }
        if allowed != "*" {
            insert(&mut out, "vary", "Origin");
        }
        out
    }

    /// Puts the CORS headers of a request from `origin` (if any) on an answer, in place
    /// of any the function set.
    pub fn decorate(&self, origin: Option<&str>, answer: &mut HeaderMap) {
        let theirs: Vec<HeaderName> = answer
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in theirs {
            answer.remove(name);
        }
        let Some(allowed) = origin.and_then(|o| self.allowed_origin(o)) else {
            return;
        };
        if allowed != "*" {
            answer.append("vary", HeaderValue::from_static("Origin"));
        }
        insert(answer, "access-control-allow-origin", &allowed);
        let exposed = self.expose_headers.as_deref().unwrap_or_default();
        if !exposed.is_empty() {
            insert(answer, "access-control-expose-headers", &exposed.join(","));
        }
        if self.credentials() {
            insert(answer, "access-control-allow-credentials", "true");
        }
    }
}

fn insert(map: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        map.insert(name, value);
    }
}

/// `*`, or `scheme://host[:port]` with no path.
fn is_origin(raw: &str) -> bool {
    if raw == "*" {
        return true;
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b'[' | b']' | b':' | b'_')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    scheme_ok && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], methods: &[&str]) -> Cors {
        Cors {
            allow_origins: Some(origins.iter().map(|s| s.to_string()).collect()),
            allow_methods: Some(methods.iter().map(|s| s.to_string()).collect()),
            allow_headers: Some(vec!["content-type".into(), "x-trace".into()]),
            expose_headers: Some(vec!["x-answer".into()]),
            max_age: Some(300),
            allow_credentials: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn settings_are_validated_as_lambda_does() {
        assert!(
            cors(
                &["https://a.example", "http://localhost:8080"],
                &["GET", "*"]
            )
            .validate()
            .is_ok()
        );
        assert!(
            cors(&["*"], &["FETCH"])
                .validate()
                .unwrap_err()
                .contains("FETCH")
        );
        assert!(
            cors(&["a.example"], &["GET"])
                .validate()
                .unwrap_err()
                .contains("a.example")
        );
        assert!(
            cors(&["https://a.example/path"], &["GET"])
                .validate()
                .is_err()
        );
        let mut long = cors(&["*"], &["GET"]);
        long.allow_methods = Some(vec!["GET".into(); 7]);
        assert!(
            long.validate()
                .unwrap_err()
                .contains("less than or equal to 6")
        );
        let mut age = cors(&["*"], &["GET"]);
        age.max_age = Some(86_401);
        assert!(age.validate().unwrap_err().contains("maxAge"));
        let mut bad_header = cors(&["*"], &["GET"]);
        bad_header.allow_headers = Some(vec!["not a header".into()]);
        assert!(bad_header.validate().is_err());
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_gets_the_settings() {
        let c = cors(&["https://app.example"], &["GET", "POST"]);
        let out = c.preflight(&headers(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ]));
        assert_eq!(out["access-control-allow-origin"], "https://app.example");
        assert_eq!(out["access-control-allow-methods"], "GET,POST");
        assert_eq!(out["access-control-allow-headers"], "content-type,x-trace");
        assert_eq!(out["access-control-max-age"], "300");
        // Another origin, or a method not allowed: nothing.
        assert!(
            c.preflight(&headers(&[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ]))
            .is_empty()
        );
        assert!(
            c.preflight(&headers(&[
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
            ]))
            .is_empty()
        );
    }

    #[test]
    fn answers_carry_the_settings_headers_not_the_functions() {
        let c = cors(&["*"], &["*"]);
        let mut out = headers(&[
            ("access-control-allow-origin", "https://mine.example"),
            ("content-type", "text/plain"),
        ]);
        c.decorate(Some("https://app.example"), &mut out);
        assert_eq!(out["access-control-allow-origin"], "*");
        assert_eq!(out["access-control-expose-headers"], "x-answer");
        assert_eq!(out["content-type"], "text/plain");
        let mut with_credentials = c.clone();
        with_credentials.allow_credentials = Some(true);
        let mut out = HeaderMap::new();
        with_credentials.decorate(Some("https://app.example"), &mut out);
        assert_eq!(out["access-control-allow-origin"], "https://app.example");
        assert_eq!(out["access-control-allow-credentials"], "true");
        // No origin header: no CORS headers.
        let mut out = headers(&[("access-control-allow-origin", "*")]);
        cors(&["https://app.example"], &["GET"]).decorate(None, &mut out);
        assert!(out.is_empty());
    }
}
