//! Stages and deployments of an API: `CreateStage` (`$default`, auto-deploy),
//! `Get/Update/DeleteStage`, `CreateDeployment` (a snapshot a stage then serves),
//! `GetDeployment(s)`, `DeleteDeployment`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{PageQuery, created, input, listed, page, shown};
use crate::api::{Scope, SharedState};
use crate::gateway::service::GatewayError;
use crate::gateway::{DEFAULT_STAGE, Stage, deployment_wire, iso};

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(message.into())
}

fn wire(stage: &Stage) -> Value {
    serde_json::to_value(stage).unwrap_or_default()
}

fn check_stage_name(name: &str) -> Result<(), GatewayError> {
    let ok = name == DEFAULT_STAGE
        || ((1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "Invalid stage name {name}: $default, or 1 to 128 letters, digits, '-' and '_'"
        )))
    }
}

fn check_variables(variables: &BTreeMap<String, String>) -> Result<(), GatewayError> {
    for (name, value) in variables {
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let value_ok = value.len() <= 2048
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#&=,".contains(&b));
        if !name_ok || !value_ok {
            return Err(bad(format!(
                "Invalid stage variable {name}: names are letters, digits and '_'; values match [A-Za-z0-9-._~:/?#&=,]+"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct StageInput {
    stage_name: Option<String>,
    auto_deploy: Option<bool>,
    deployment_id: Option<String>,
    description: Option<String>,
    stage_variables: Option<BTreeMap<String, String>>,
    default_route_settings: Option<Value>,
    route_settings: Option<BTreeMap<String, Value>>,
    access_log_settings: Option<Value>,
    client_certificate_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

pub(super) async fn create_stage(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: StageInput = input(&body)?;
    let name = input
        .stage_name
        .ok_or_else(|| bad("stageName is required"))?;
    check_stage_name(&name)?;
    if input.client_certificate_id.is_some() {
        return Err(bad(
            "Client certificates are supported only for WebSocket APIs",
        ));
    }
    let variables = input.stage_variables.unwrap_or_default();
    check_variables(&variables)?;
    let now = iso(crate::timefmt::now_ms());
    let (_, stage) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if api.stages.contains_key(&name) {
                return Err(GatewayError::Conflict(format!(
                    "Stage {name} already exists"
                )));
            }
            if let Some(d) = &input.deployment_id
                && !api.deployments.contains_key(d)
            {
                return Err(bad(format!("Invalid deploymentId {d}")));
            }
            let auto = input.auto_deploy.unwrap_or(false);
            if auto && input.deployment_id.is_some() {
                return Err(bad(
                    "deploymentId can't be set on a stage that deploys automatically",
                ));
            }
            api.stages.insert(
                name.clone(),
                Stage {
                    stage_name: name.clone(),
                    auto_deploy: auto,
                    deployment_id: input.deployment_id,
                    description: input.description,
                    stage_variables: variables,
                    default_route_settings: input.default_route_settings,
                    route_settings: input.route_settings.unwrap_or_default(),
                    access_log_settings: input.access_log_settings,
                    created_date: now.clone(),
                    last_updated_date: now.clone(),
                    last_deployment_status_message: None,
                    tags: input.tags.unwrap_or_default(),
                    api_gateway_managed: false,
                },
            );
            if auto {
                api.deploy(None, Some(&name), true);
            }
            Ok(api.stages[&name].clone())
        })
        .await?;
    Ok(created(wire(&stage)))
}

pub(super) async fn update_stage(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, GatewayError> {
    let input: StageInput = input(&body)?;
    if let Some(v) = &input.stage_variables {
        check_variables(v)?;
    }
    let (_, stage) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let mut stage = api
                .stages
                .get(&name)
                .cloned()
                .ok_or_else(|| GatewayError::missing("Stage", &name))?;
            let was_auto = stage.auto_deploy;
            if let Some(a) = input.auto_deploy {
                stage.auto_deploy = a;
            }
            if let Some(d) = input.deployment_id {
                if stage.auto_deploy {
                    return Err(bad(
                        "deploymentId can't be set on a stage that deploys automatically",
                    ));
                }
                if !api.deployments.contains_key(&d) {
                    return Err(bad(format!("Invalid deploymentId {d}")));
                }
                stage.deployment_id = Some(d);
            }
            if let Some(d) = input.description {
                stage.description = Some(d);
            }
            if let Some(v) = input.stage_variables {
                stage.stage_variables = v;
            }
            if let Some(s) = input.default_route_settings {
                stage.default_route_settings = Some(s);
            }
            if let Some(s) = input.route_settings {
                stage.route_settings = s;
            }
            if let Some(s) = input.access_log_settings {
                stage.access_log_settings = Some(s);
            }
            stage.last_updated_date = iso(crate::timefmt::now_ms());
            let deploy_now = stage.auto_deploy && !was_auto;
            api.stages.insert(name.clone(), stage);
            if deploy_now {
                api.deploy(None, Some(&name), true);
            }
            Ok(api.stages[&name].clone())
        })
        .await?;
    Ok(axum::Json(wire(&stage)))
}

pub(super) async fn get_stage(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, name)): Path<(String, String)>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    shown(&api.stages, "Stage", &name)
}

pub(super) async fn list_stages(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    listed(
        state.gateway.find(&scope.region, &api_id)?.stages.values(),
        &query,
    )
}

pub(super) async fn delete_stage(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, name)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            api.stages
                .remove(&name)
                .ok_or_else(|| GatewayError::missing("Stage", &name))?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeploymentInput {
    description: Option<String>,
    stage_name: Option<String>,
}

pub(super) async fn create_deployment(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: DeploymentInput = input(&body)?;
    let (_, deployment) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if let Some(stage) = &input.stage_name {
                let s = api
                    .stages
                    .get(stage)
                    .ok_or_else(|| GatewayError::missing("Stage", stage))?;
                if s.auto_deploy {
                    return Err(bad(format!(
                        "Stage {stage} deploys automatically; it takes no deployment by hand"
                    )));
                }
            }
            let id = api.deploy(input.description, input.stage_name.as_deref(), false);
            Ok(api.deployments[&id].clone())
        })
        .await?;
    Ok(created(deployment_wire(&deployment)))
}

pub(super) async fn get_deployment(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    let deployment = api
        .deployments
        .get(&id)
        .ok_or_else(|| GatewayError::missing("Deployment", &id))?;
    Ok(axum::Json(deployment_wire(deployment)))
}

pub(super) async fn list_deployments(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    let mut deployments: Vec<_> = api.deployments.values().collect();
    deployments.sort_by_key(|d| d.created_ms);
    let items = deployments.into_iter().map(deployment_wire).collect();
    Ok(axum::Json(page(items, &query)?))
}

pub(super) async fn delete_deployment(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if !api.deployments.contains_key(&id) {
                return Err(GatewayError::missing("Deployment", &id));
            }
            if let Some(stage) = api
                .stages
                .values()
                .find(|s| s.deployment_id.as_deref() == Some(id.as_str()))
            {
                return Err(GatewayError::Conflict(format!(
                    "Deployment {id} is served by stage {}",
                    stage.stage_name
                )));
            }
            api.deployments.remove(&id);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
