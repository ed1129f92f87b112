//! Lambda authorizers of HTTP APIs (`REQUEST` type): the identity a request carries,
//! the event the authorizer function gets, what its answer decides, and the cache of
//! answers.
//!
//! Identity sources are request parameter expressions (`$request.header.Authorization`);
//! a request without one of them is refused (401) before anything is invoked. With
//! `enableSimpleResponses` the function answers `{"isAuthorized": bool, "context": {}}`;
//! otherwise an IAM policy (`principalId`, `policyDocument`, `context`) whose statements
//! allow or deny `execute-api:Invoke` on the route's ARN. Answers are cached for the
//! authorizer's TTL, keyed by the identity's values.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::Authorizer;
use super::mapping::{RequestView, lookup};

/// The most cached answers kept (expired ones go first).
const CACHE_MAX: usize = 10_000;

/// The values of an authorizer's identity sources, or `None` when one is missing (the
/// request is then refused unauthorized).
pub fn identity(authorizer: &Authorizer, request: &RequestView<'_>) -> Option<Vec<String>> {
    authorizer
        .identity_source
        .iter()
        .map(|source| {
            let expression = source.trim().strip_prefix('$')?;
            lookup(expression, request).filter(|v| !v.is_empty())
        })
        .collect()
}

/// What an authorizer's answer says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// A simple response's `isAuthorized`; `None` for a policy.
    simple: Option<bool>,
    policy: Vec<Value>,
    pub principal_id: Option<String>,
    pub context: Map<String, Value>,
}

/// Why an authorizer's answer cannot be read (the request fails with 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAnswer {
    #[error("the authorizer's answer is not a JSON object")]
    NotObject,
    #[error("the authorizer's simple response has no boolean isAuthorized")]
    NoDecision,
    #[error("the authorizer's answer has no policyDocument with statements")]
    NoPolicy,
}

impl Verdict {
    /// Reads a function's answer; `simple` when the authorizer enables simple responses.
    pub fn read(output: &[u8], simple: bool) -> Result<Self, BadAnswer> {
        let value: Value = serde_json::from_slice(output).map_err(|_| BadAnswer::NotObject)?;
        let object = value.as_object().ok_or(BadAnswer::NotObject)?;
        let context = object
            .get("context")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let principal_id = object
            .get("principalId")
            .and_then(Value::as_str)
            .map(str::to_string);
        if simple {
            let allowed = object
                .get("isAuthorized")
                .and_then(Value::as_bool)
                .ok_or(BadAnswer::NoDecision)?;
            return Ok(Self {
                simple: Some(allowed),
                policy: Vec::new(),
                principal_id,
                context,
            });
        }
        let statements = match object
            .get("policyDocument")
            .and_then(|p| p.get("Statement"))
        {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err(BadAnswer::NoPolicy),
        };
        Ok(Self {
            simple: None,
            policy: statements,
            principal_id,
            context,
        })
    }

    /// Whether it lets the request to `route_arn` through: a simple response's decision,
    /// or a policy that allows `execute-api:Invoke` on it and denies nothing of it.
    pub fn allows(&self, route_arn: &str) -> bool {
        if let Some(allowed) = self.simple {
            return allowed;
        }
        let applies = |s: &Value| {
            let actions = strings(s.get("Action"));
            let resources = strings(s.get("Resource"));
            actions
                .iter()
                .any(|a| crate::policy::glob(a, "execute-api:Invoke"))
                && resources.iter().any(|r| crate::policy::glob(r, route_arn))
        };
        fn effect(s: &Value) -> &str {
            s.get("Effect").and_then(Value::as_str).unwrap_or("")
        }
        let denied = self
            .policy
            .iter()
            .any(|s| effect(s).eq_ignore_ascii_case("deny") && applies(s));
        let allowed = self
            .policy
            .iter()
            .any(|s| effect(s).eq_ignore_ascii_case("allow") && applies(s));
        allowed && !denied
    }

    /// `requestContext.authorizer` of the integration's event, by its payload version.
    pub fn for_integration(&self, payload_version: &str) -> Value {
        if payload_version == "1.0" {
            let mut object = self.context.clone();
            if let Some(principal) = &self.principal_id {
                object.insert("principalId".into(), json!(principal));
            }
            Value::Object(object)
        } else {
            let mut lambda = self.context.clone();
            if let Some(principal) = &self.principal_id {
                lambda.insert("principalId".into(), json!(principal));
            }
            json!({ "lambda": lambda })
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The event an authorizer function gets: the integration's event of the same payload
/// version, less the body, with `type`, the route's ARN and the identity.
pub fn event(
    mut request_event: Value,
    version: &str,
    route_arn: &str,
    identity: &[String],
) -> Value {
    if let Some(object) = request_event.as_object_mut() {
        object.remove("body");
        object.remove("isBase64Encoded");
        object.insert("type".into(), json!("REQUEST"));
        if version == "1.0" {
            object.insert("methodArn".into(), json!(route_arn));
            object.insert("identitySource".into(), json!(identity.join(",")));
        } else {
            object.insert("routeArn".into(), json!(route_arn));
            object.insert("identitySource".into(), json!(identity));
        }
    }
    request_event
}

/// Answers of authorizers, kept for their TTL.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Verdict, Instant)>>,
}

impl Cache {
    fn key(api_id: &str, authorizer_id: &str, identity: &[String]) -> String {
        let mut key = format!("{api_id}/{authorizer_id}");
        for value in identity {
            key.push('\u{1f}');
            key.push_str(value);
        }
        key
    }

    pub fn get(&self, api_id: &str, authorizer_id: &str, identity: &[String]) -> Option<Verdict> {
        let key = Self::key(api_id, authorizer_id, identity);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(verdict, _)| verdict.clone())
    }

    pub fn put(
        &self,
        api_id: &str,
        authorizer_id: &str,
        identity: &[String],
        verdict: Verdict,
        ttl: Duration,
    ) {
        let key = Self::key(api_id, authorizer_id, identity);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (verdict, now + ttl));
    }

    /// Forgets the answers of an API's authorizers (after it changes).
    pub fn forget(&self, api_id: &str) {
        let prefix = format!("{api_id}/");
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| !key.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};
    use std::collections::BTreeMap;

    const ROUTE: &str = "arn:aws:execute-api:us-east-1:000000000000:abcdefghij/$default/GET/pets";

    fn authorizer(sources: &[&str]) -> Authorizer {
        Authorizer {
            authorizer_id: "a1".into(),
            name: "auth".into(),
            authorizer_type: "REQUEST".into(),
            authorizer_uri: "arn".into(),
            authorizer_payload_format_version: "2.0".into(),
            enable_simple_responses: Some(true),
            identity_source: sources.iter().map(|s| s.to_string()).collect(),
            authorizer_result_ttl_in_seconds: 0,
            authorizer_credentials_arn: None,
        }
    }

    #[test]
    fn identity_is_read_from_the_request_and_missing_parts_refuse() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("token-1"));
        let empty = BTreeMap::new();
        let view = RequestView {
            headers: &headers,
            query: "k=v",
            path: "/",
            path_parameters: &empty,
            body: b"",
            context: &empty,
            stage_variables: &empty,
        };
        assert_eq!(
            identity(
                &authorizer(&["$request.header.Authorization", "$request.querystring.k"]),
                &view
            ),
            Some(vec!["token-1".into(), "v".into()])
        );
        assert_eq!(
            identity(&authorizer(&["$request.header.X-Missing"]), &view),
            None
        );
        assert_eq!(identity(&authorizer(&[]), &view), Some(vec![]));
    }

    #[test]
    fn simple_answers_and_policies_decide() {
        let yes =
            Verdict::read(br#"{"isAuthorized":true,"context":{"user":"ann"}}"#, true).unwrap();
        assert!(yes.allows(ROUTE));
        assert_eq!(
            yes.for_integration("2.0"),
            json!({"lambda": {"user": "ann"}})
        );
        assert!(
            !Verdict::read(br#"{"isAuthorized":false}"#, true)
                .unwrap()
                .allows(ROUTE)
        );
        assert_eq!(
            Verdict::read(br#"{"ok":1}"#, true),
            Err(BadAnswer::NoDecision)
        );
        let policy = |effect: &str, resource: &str| {
            format!(
                r#"{{"principalId":"u1","policyDocument":{{"Version":"2012-10-17","Statement":[{{"Action":"execute-api:Invoke","Effect":"{effect}","Resource":"{resource}"}}]}},"context":{{"k":"v"}}}}"#
            )
        };
        let allow = Verdict::read(
            policy("Allow", "arn:aws:execute-api:*:*:abcdefghij/*").as_bytes(),
            false,
        )
        .unwrap();
        assert!(allow.allows(ROUTE));
        assert_eq!(
            allow.for_integration("1.0"),
            json!({"k": "v", "principalId": "u1"})
        );
        let other = Verdict::read(
            policy("Allow", "arn:aws:execute-api:*:*:other/*").as_bytes(),
            false,
        )
        .unwrap();
        assert!(!other.allows(ROUTE));
        let deny = Verdict::read(policy("Deny", "*").as_bytes(), false).unwrap();
        assert!(!deny.allows(ROUTE));
        assert_eq!(Verdict::read(b"[]", false), Err(BadAnswer::NotObject));
    }

    #[test]
    fn cached_answers_last_their_ttl_and_are_keyed_by_identity() {
        let cache = Cache::default();
        let yes = Verdict::read(br#"{"isAuthorized":true}"#, true).unwrap();
        cache.put(
            "api",
            "a1",
            &["t1".into()],
            yes.clone(),
            Duration::from_secs(60),
        );
        assert_eq!(cache.get("api", "a1", &["t1".into()]), Some(yes.clone()));
        assert_eq!(cache.get("api", "a1", &["t2".into()]), None);
        cache.put("api", "a1", &["t3".into()], yes, Duration::ZERO);
        assert_eq!(cache.get("api", "a1", &["t3".into()]), None);
        cache.forget("api");
        assert_eq!(cache.get("api", "a1", &["t1".into()]), None);
    }
}
