//! HTTP APIs: API Gateway's HTTP API model (APIs, routes, integrations, authorizers,
//! stages and deployments) and the pure pieces a request to one goes through.
//!
//! Owns what an API is as persisted (one document per API, [`HttpApi`], whose parts are
//! stored in their wire shape: `apigatewayv2` speaks camelCase JSON), the choice of a
//! route ([`route_key`]), request parameter expressions ([`mapping`]), payload format 1.0
//! ([`event_v1`]; 2.0 is `crate::urls::event`'s), Lambda authorizers ([`authorizer`]) and
//! the service that keeps the documents ([`service`]). The operations that configure APIs
//! are `api::apigw`; the front that serves their requests is `api::gateway_front`.
//!
//! A stage serves a deployment: a snapshot of the routes, integrations and authorizers
//! taken when it was made. A stage with `autoDeploy` gets a new deployment after every
//! change. The `$default` stage is served at the API's root, any other at `/<stage>/`.
//! An API is served at `http://<api-id>.execute-api.localhost:<port>/` (every
//! `*.localhost` name resolves to loopback) and, for clients that cannot choose the host,
//! at `http://<host>:<port>/execute-api/<api-id>/`.

pub mod authorizer;
pub mod event_v1;
pub mod mapping;
pub mod route_key;
pub mod service;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use service::Gateway;

/// The default route selection expression of HTTP APIs.
pub const ROUTE_SELECTION: &str = "$request.method $request.path";
/// The default API key selection expression.
pub const API_KEY_SELECTION: &str = "$request.header.x-api-key";
/// The stage served at the API's root.
pub const DEFAULT_STAGE: &str = "$default";
/// Deployments kept besides those stages serve.
const DEPLOYMENTS_KEPT: usize = 10;

fn is_false(b: &bool) -> bool {
    !*b
}

/// CORS settings of an API (`apigatewayv2`'s `Cors`, camelCase on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCors {
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

impl ApiCors {
    /// The same settings in the shape function URLs use (which carries the behaviour).
    pub fn as_cors(&self) -> crate::urls::Cors {
        crate::urls::Cors {
            allow_credentials: self.allow_credentials,
            allow_headers: self.allow_headers.clone(),
            allow_methods: self.allow_methods.clone(),
            allow_origins: self.allow_origins.clone(),
            expose_headers: self.expose_headers.clone(),
            max_age: self.max_age,
        }
    }
}

/// A route: its key, the integration it targets (`integrations/<id>`) and how callers are
/// authorized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub route_id: String,
    pub route_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `NONE`, `AWS_IAM` or `CUSTOM`.
    pub authorization_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
    #[serde(default)]
    pub api_key_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub api_gateway_managed: bool,
}

impl Route {
    /// The integration id its target names.
    pub fn integration_id(&self) -> Option<&str> {
        self.target.as_deref()?.strip_prefix("integrations/")
    }
}

/// An integration: where a route's requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub integration_id: String,
    /// `AWS_PROXY`.
    pub integration_type: String,
    /// A first-class integration (`SQS-SendMessage`, ...); none for Lambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_method: Option<String>,
    pub payload_format_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
    pub timeout_in_millis: u64,
    pub connection_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_arn: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub api_gateway_managed: bool,
}

/// A Lambda authorizer (`REQUEST`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorizer {
    pub authorizer_id: String,
    pub name: String,
    pub authorizer_type: String,
    pub authorizer_uri: String,
    /// `1.0` or `2.0`.
    pub authorizer_payload_format_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_simple_responses: Option<bool>,
    #[serde(default)]
    pub identity_source: Vec<String>,
    #[serde(default)]
    pub authorizer_result_ttl_in_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_credentials_arn: Option<String>,
}

/// What a deployment serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub routes: BTreeMap<String, Route>,
    pub integrations: BTreeMap<String, Integration>,
    pub authorizers: BTreeMap<String, Authorizer>,
}

/// A deployment: a snapshot stages serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub deployment_id: String,
    pub created_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub auto_deployed: bool,
    pub deployment_status: String,
    /// Kept, not shown on the wire.
    #[serde(default)]
    pub snapshot: Snapshot,
    #[serde(default)]
    pub created_ms: u64,
}

/// A stage: a name callers address, and the deployment it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub stage_name: String,
    #[serde(default)]
    pub auto_deploy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route_settings: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_settings: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_settings: Option<Value>,
    pub created_date: String,
    pub last_updated_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_status_message: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub api_gateway_managed: bool,
}

/// One HTTP API, as stored: its settings, and every part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpApi {
    pub api_id: String,
    pub name: String,
    pub protocol_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub route_selection_expression: String,
    pub api_key_selection_expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_configuration: Option<ApiCors>,
    #[serde(default)]
    pub disable_execute_api_endpoint: bool,
    #[serde(default)]
    pub disable_schema_validation: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub ip_address_type: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub created_date: String,
    /// The region it is in (its requests act there).
    pub region: String,
    #[serde(default)]
    pub routes: BTreeMap<String, Route>,
    #[serde(default)]
    pub integrations: BTreeMap<String, Integration>,
    #[serde(default)]
    pub authorizers: BTreeMap<String, Authorizer>,
    #[serde(default)]
    pub stages: BTreeMap<String, Stage>,
    #[serde(default)]
    pub deployments: BTreeMap<String, Deployment>,
}

/// Keys of [`HttpApi`]'s document that are not on the wire's `Api`.
const INNER_FIELDS: &[&str] = &[
    "region",
    "routes",
    "integrations",
    "authorizers",
    "stages",
    "deployments",
];

impl HttpApi {
    /// The API as `GetApi` shows it, with its endpoint.
    pub fn wire(&self, endpoint: &str) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            for field in INNER_FIELDS {
                object.remove(*field);
            }
            object.insert("apiEndpoint".into(), Value::String(endpoint.to_string()));
        }
        value
    }

    /// What the routes, integrations and authorizers are now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            routes: self.routes.clone(),
            integrations: self.integrations.clone(),
            authorizers: self.authorizers.clone(),
        }
    }

    /// Deploys the current snapshot: a new deployment, which `stage` (when named) and
    /// every auto-deploying stage then serve. Returns its id.
    pub fn deploy(
        &mut self,
        description: Option<String>,
        stage: Option<&str>,
        auto: bool,
    ) -> String {
        let now = crate::timefmt::now_ms();
        let id = new_id(7);
        self.deployments.insert(
            id.clone(),
            Deployment {
                deployment_id: id.clone(),
                created_date: iso(now),
                description,
                auto_deployed: auto,
                deployment_status: "DEPLOYED".into(),
                snapshot: self.snapshot(),
                created_ms: now,
            },
        );
        for s in self.stages.values_mut() {
            if s.auto_deploy || Some(s.stage_name.as_str()) == stage {
                s.deployment_id = Some(id.clone());
                s.last_updated_date = iso(now);
                if s.auto_deploy {
                    s.last_deployment_status_message = Some(format!(
                        "Successfully deployed stage with deployment ID '{id}'"
                    ));
                }
            }
        }
        self.prune_deployments();
        id
    }

    /// After a change to routes, integrations or authorizers: a new deployment when a
    /// stage deploys automatically.
    pub fn changed(&mut self) {
        if self.stages.values().any(|s| s.auto_deploy) {
            self.deploy(None, None, true);
        }
    }

    /// Drops the oldest deployments no stage serves, past [`DEPLOYMENTS_KEPT`].
    fn prune_deployments(&mut self) {
        let served: std::collections::BTreeSet<String> = self
            .stages
            .values()
            .filter_map(|s| s.deployment_id.clone())
            .collect();
        let mut idle: Vec<(u64, String)> = self
            .deployments
            .values()
            .filter(|d| !served.contains(&d.deployment_id))
            .map(|d| (d.created_ms, d.deployment_id.clone()))
            .collect();
        if idle.len() <= DEPLOYMENTS_KEPT {
            return;
        }
        idle.sort();
        for (_, id) in &idle[..idle.len() - DEPLOYMENTS_KEPT] {
            self.deployments.remove(id);
        }
    }

    /// The snapshot `stage` serves, if it has one.
    pub fn served(&self, stage: &str) -> Option<&Snapshot> {
        let id = self.stages.get(stage)?.deployment_id.as_ref()?;
        self.deployments.get(id).map(|d| &d.snapshot)
    }
}

/// A deployment as `GetDeployment` shows it.
pub fn deployment_wire(d: &Deployment) -> Value {
    let mut value = serde_json::to_value(d).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("snapshot");
        object.remove("createdMs");
    }
    value
}

/// `2024-01-01T00:00:00Z`, the timestamps of `apigatewayv2`.
pub fn iso(ms: u64) -> String {
    let full = crate::timefmt::iso_timestamp(ms);
    // Whole seconds, as the service answers.
    format!("{}Z", &full[..19])
}

/// A new id of `len` lowercase letters and digits (APIs 10, their parts 7).
pub fn new_id(len: usize) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..36)] as char)
        .collect()
}

/// Length of an API id.
pub const API_ID_LEN: usize = 10;

fn is_api_id(id: &str) -> bool {
    id.len() == API_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The host-name form of an API's endpoint: `http://<id>.execute-api.localhost:<port>`.
pub fn endpoint_of(api_id: &str, port: u16) -> String {
    format!("http://{api_id}.execute-api.localhost:{port}")
}

/// `arn:aws:execute-api:<region>:<account>:<api-id>`: what `source_arn` conditions of
/// permissions start with.
pub fn execution_arn(region: &str, account: &str, api_id: &str) -> String {
    format!("arn:aws:execute-api:{region}:{account}:{api_id}")
}

/// The function a Lambda integration or authorizer names: its ARN, or API Gateway's
/// invocation URI of it (`arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/
/// <function-arn>/invocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionTarget {
    pub region: String,
    pub account: String,
    pub name: String,
    pub qualifier: Option<String>,
}

impl FunctionTarget {
    pub fn parse(uri: &str) -> Option<Self> {
        let arn = match uri.strip_prefix("arn:aws:apigateway:") {
            Some(rest) => {
                let at = rest.find("/functions/")?;
                rest[at + "/functions/".len()..].strip_suffix("/invocations")?
            }
            None => uri,
        };
        let arn = crate::arn::Arn::parse(arn).ok()?;
        let (name, qualifier) = arn.function_parts().ok()?;
        Some(Self {
            region: arn.region.clone(),
            account: arn.account.clone(),
            name: name.to_string(),
            qualifier: qualifier.map(str::to_string),
        })
    }
}

/// The first-class integrations API Gateway knows, and whether this server has each.
pub const SUBTYPES: &[(&str, Option<&str>)] = &[
    ("SQS-SendMessage", None),
    (
        "SQS-ReceiveMessage",
        Some("only SQS-SendMessage of the queue integrations is served here"),
    ),
    (
        "SQS-DeleteMessage",
        Some("only SQS-SendMessage of the queue integrations is served here"),
    ),
    (
        "SQS-PurgeQueue",
        Some("only SQS-SendMessage of the queue integrations is served here"),
    ),
    ("EventBridge-PutEvents", None),
    ("Kinesis-PutRecord", Some("this server has no streams yet")),
    (
        "StepFunctions-StartExecution",
        Some("this server has no workflows yet"),
    ),
    (
        "StepFunctions-StartSyncExecution",
        Some("this server has no workflows yet"),
    ),
    (
        "StepFunctions-StopExecution",
        Some("this server has no workflows yet"),
    ),
    (
        "AppConfig-GetConfiguration",
        Some("this server has no AppConfig"),
    ),
];

/// The request parameters `SQS-SendMessage` takes, and which it needs.
pub const SQS_SEND_PARAMETERS: &[(&str, bool)] = &[
    ("QueueUrl", true),
    ("MessageBody", true),
    ("DelaySeconds", false),
    ("MessageAttributes", false),
    ("MessageDeduplicationId", false),
    ("MessageGroupId", false),
    ("Region", false),
];

/// The request parameters `EventBridge-PutEvents` takes, and which it needs.
pub const PUT_EVENTS_PARAMETERS: &[(&str, bool)] = &[
    ("Detail", true),
    ("DetailType", true),
    ("Source", true),
    ("EventBusName", false),
    ("Region", false),
    ("Resources", false),
    ("Time", false),
    ("TraceHeader", false),
];

/// The request parameters a first-class integration takes (`None`: not one served here).
pub fn parameters_of(subtype: &str) -> Option<&'static [(&'static str, bool)]> {
    match subtype {
        "SQS-SendMessage" => Some(SQS_SEND_PARAMETERS),
        "EventBridge-PutEvents" => Some(PUT_EVENTS_PARAMETERS),
        _ => None,
    }
}

/// The prefix of the path form.
pub const PATH_PREFIX: &str = "/execute-api/";

/// A request addressed to an HTTP API: its id, and the path within the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed<'a> {
    pub api_id: &'a str,
    pub path: &'a str,
    /// The host name the request named, or, in the path form, none.
    pub domain: Option<&'a str>,
}

/// Whether a request (its `Host` header and path) is for an HTTP API, and which.
pub fn addressed<'a>(host: Option<&'a str>, path: &'a str) -> Option<Addressed<'a>> {
    let (api_id, path, domain) = crate::urls::address(
        host,
        path,
        |rest| {
            rest == "execute-api.localhost"
                || (rest.starts_with("execute-api.") && rest.ends_with(".localhost"))
        },
        PATH_PREFIX,
        is_api_id,
    )?;
    Some(Addressed {
        api_id,
        path,
        domain,
    })
}

/// The stage a request path names, and the path within it: the first segment when a
/// stage of that name exists (other than `$default`), else the `$default` stage.
pub fn stage_of<'p>(api: &HttpApi, path: &'p str) -> Option<(String, &'p str)> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = match trimmed.find('/') {
        Some(at) => (&trimmed[..at], &trimmed[at..]),
        None => (trimmed, "/"),
    };
    if !first.is_empty() && first != DEFAULT_STAGE && api.stages.contains_key(first) {
        return Some((first.to_string(), rest));
    }
    api.stages
        .contains_key(DEFAULT_STAGE)
        .then(|| (DEFAULT_STAGE.to_string(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> HttpApi {
        HttpApi {
            api_id: "abcdefghij".into(),
            name: "a".into(),
            protocol_type: "HTTP".into(),
            description: None,
            route_selection_expression: ROUTE_SELECTION.into(),
            api_key_selection_expression: API_KEY_SELECTION.into(),
            cors_configuration: None,
            disable_execute_api_endpoint: false,
            disable_schema_validation: false,
            version: None,
            ip_address_type: "ipv4".into(),
            tags: BTreeMap::new(),
            created_date: iso(0),
            region: "us-east-1".into(),
            routes: BTreeMap::new(),
            integrations: BTreeMap::new(),
            authorizers: BTreeMap::new(),
            stages: BTreeMap::new(),
            deployments: BTreeMap::new(),
        }
    }

    fn stage(name: &str, auto: bool) -> Stage {
        Stage {
            stage_name: name.into(),
            auto_deploy: auto,
            deployment_id: None,
            description: None,
            stage_variables: BTreeMap::new(),
            default_route_settings: None,
            route_settings: BTreeMap::new(),
            access_log_settings: None,
            created_date: iso(0),
            last_updated_date: iso(0),
            last_deployment_status_message: None,
            tags: BTreeMap::new(),
            api_gateway_managed: false,
        }
    }

    #[test]
    fn requests_are_addressed_by_host_or_by_path() {
        let found = addressed(Some("abcdefghij.execute-api.localhost:9000"), "/x").unwrap();
        assert_eq!((found.api_id, found.path), ("abcdefghij", "/x"));
        assert_eq!(found.domain, Some("abcdefghij.execute-api.localhost"));
        let found = addressed(Some("abcdefghij.execute-api.us-east-1.localhost"), "/").unwrap();
        assert_eq!(found.api_id, "abcdefghij");
        let found = addressed(Some("127.0.0.1:9000"), "/execute-api/abcdefghij/a/b").unwrap();
        assert_eq!(
            (found.api_id, found.path, found.domain),
            ("abcdefghij", "/a/b", None)
        );
        assert_eq!(
            addressed(Some("127.0.0.1"), "/execute-api/abcdefghij")
                .unwrap()
                .path,
            "/"
        );
        assert_eq!(addressed(Some("127.0.0.1"), "/2015-03-31/functions"), None);
        assert_eq!(addressed(Some("short.execute-api.localhost"), "/"), None);
    }

    #[test]
    fn stages_are_found_by_the_first_segment_else_default() {
        let mut a = api();
        a.stages.insert("prod".into(), stage("prod", false));
        assert_eq!(stage_of(&a, "/prod/pets"), Some(("prod".into(), "/pets")));
        assert_eq!(stage_of(&a, "/prod"), Some(("prod".into(), "/")));
        assert_eq!(stage_of(&a, "/pets"), None);
        a.stages
            .insert(DEFAULT_STAGE.into(), stage(DEFAULT_STAGE, true));
        assert_eq!(stage_of(&a, "/pets"), Some((DEFAULT_STAGE.into(), "/pets")));
    }

    #[test]
    fn auto_deploying_stages_serve_every_change_and_others_what_was_deployed() {
        let mut a = api();
        a.stages
            .insert(DEFAULT_STAGE.into(), stage(DEFAULT_STAGE, true));
        a.stages.insert("fixed".into(), stage("fixed", false));
        a.routes.insert(
            "r1".into(),
            Route {
                route_id: "r1".into(),
                route_key: "GET /a".into(),
                target: None,
                authorization_type: "NONE".into(),
                authorizer_id: None,
                authorization_scopes: vec![],
                api_key_required: false,
                operation_name: None,
                api_gateway_managed: false,
            },
        );
        a.changed();
        assert_eq!(a.served(DEFAULT_STAGE).unwrap().routes.len(), 1);
        assert!(a.served("fixed").is_none());
        a.deploy(None, Some("fixed"), false);
        a.routes.clear();
        a.changed();
        assert_eq!(a.served(DEFAULT_STAGE).unwrap().routes.len(), 0);
        assert_eq!(a.served("fixed").unwrap().routes.len(), 1);
        for _ in 0..30 {
            a.changed();
        }
        assert!(a.deployments.len() <= DEPLOYMENTS_KEPT + 2);
        let wire = a.wire("http://x");
        assert!(wire.get("routes").is_none());
        assert_eq!(wire["apiEndpoint"], "http://x");
    }
}
