//! `shoal routes`: what answers HTTP on a server. Every HTTP API's routes (its endpoint,
//! each route key, what it runs and who may call it), then every function URL, through
//! the same public API any client uses (`apigatewayv2` and Lambda's URL operations).

use hyper::Method;
use serde_json::Value;

use super::client::Client;
use super::{Endpoint, FUNCTIONS};

#[derive(Debug, clap::Args)]
pub struct RoutesArgs {
    /// Only this HTTP API's routes.
    pub api_id: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// Every item of a paged `apigatewayv2` listing.
async fn items(client: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{path}?nextToken={t}"),
            None => path.to_string(),
        };
        let page = client.get_json(&url).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(out),
        }
    }
}

/// What an integration runs, in a few words.
fn target_of(integration: Option<&Value>) -> String {
    let Some(i) = integration else {
        return "(no integration)".into();
    };
    if let Some(subtype) = i["integrationSubtype"].as_str() {
        let queue = i["requestParameters"]["QueueUrl"].as_str().unwrap_or("");
        return format!("{subtype} {queue}");
    }
    let uri = i["integrationUri"].as_str().unwrap_or("");
    let function = crate::gateway::FunctionTarget::parse(uri)
        .map(|t| match t.qualifier {
            Some(q) => format!("{}:{q}", t.name),
            None => t.name,
        })
        .unwrap_or_else(|| uri.to_string());
    format!(
        "λ {function} (payload {})",
        i["payloadFormatVersion"].as_str().unwrap_or("1.0")
    )
}

pub async fn run(args: RoutesArgs) -> anyhow::Result<()> {
    let lambda = args.endpoint.client();
    let client = lambda.for_service("apigateway");
    let apis = match &args.api_id {
        Some(id) => vec![client.get_json(&format!("/v2/apis/{id}")).await?],
        None => items(&client, "/v2/apis").await?,
    };
    say!("{:<44} {:<34} {:<14} TARGET", "API / URL", "ROUTE", "AUTH");
    for api in &apis {
        let id = api["apiId"].as_str().unwrap_or_default();
        let endpoint = api["apiEndpoint"].as_str().unwrap_or_default();
        let integrations = items(&client, &format!("/v2/apis/{id}/integrations")).await?;
        let stages = items(&client, &format!("/v2/apis/{id}/stages")).await?;
        let mut routes = items(&client, &format!("/v2/apis/{id}/routes")).await?;
        routes.sort_by(|a, b| a["routeKey"].as_str().cmp(&b["routeKey"].as_str()));
        let stage_names: Vec<&str> = stages
            .iter()
            .filter_map(|s| s["stageName"].as_str())
            .collect();
        say!(
            "{} ({}; stages: {})",
            api["name"].as_str().unwrap_or_default(),
            endpoint,
            if stage_names.is_empty() {
                "none: nothing is served".to_string()
            } else {
                stage_names.join(", ")
            }
        );
        for route in &routes {
            let integration = route["target"]
                .as_str()
                .and_then(|t| t.strip_prefix("integrations/"))
                .and_then(|iid| {
                    integrations
                        .iter()
                        .find(|i| i["integrationId"].as_str() == Some(iid))
                });
            let auth = match route["authorizationType"].as_str().unwrap_or("NONE") {
                "CUSTOM" => format!(
                    "λ-authorizer {}",
                    route["authorizerId"].as_str().unwrap_or_default()
                ),
                other => other.to_string(),
            };
            say!(
                "  {:<42} {:<34} {:<14} {}",
                id,
                route["routeKey"].as_str().unwrap_or_default(),
                auth,
                target_of(integration)
            );
        }
    }
    if args.api_id.is_some() {
        return Ok(());
    }
    // Function URLs.
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("{FUNCTIONS}/?MaxItems=50&Marker={m}"),
            None => format!("{FUNCTIONS}/?MaxItems=50"),
        };
        let page = lambda.get_json(&path).await?;
        for f in page["Functions"].as_array().cloned().unwrap_or_default() {
            let name = f["FunctionName"].as_str().unwrap_or_default();
            let urls = lambda
                .send(
                    Method::GET,
                    &format!("/2021-10-31/functions/{name}/urls"),
                    &[],
                    None,
                )
                .await?;
            let urls: Value = serde_json::from_slice(&urls.body).unwrap_or_default();
            for url in urls["FunctionUrlConfigs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let arn = url["FunctionArn"].as_str().unwrap_or_default();
                let qualified = arn.rsplit(':').next().filter(|q| *q != name);
                say!(
                    "{:<44} {:<34} {:<14} λ {}{} ({})",
                    url["FunctionUrl"].as_str().unwrap_or_default(),
                    "(function URL)",
                    url["AuthType"].as_str().unwrap_or_default(),
                    name,
                    qualified.map(|q| format!(":{q}")).unwrap_or_default(),
                    url["InvokeMode"].as_str().unwrap_or("BUFFERED")
                );
            }
        }
        match page["NextMarker"].as_str() {
            Some(next) => marker = Some(next.to_string()),
            None => return Ok(()),
        }
    }
}
