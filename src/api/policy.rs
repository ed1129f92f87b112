//! Resource-policy operations: AddPermission, RemovePermission, GetPolicy
//! (`/2015-03-31/functions/{name}/policy`). The statements themselves are
//! `crate::policy`'s.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Scope;
use super::{ApiError, SharedState, parse_json, read_body};
use crate::document::{FunctionDocument, Target};
use crate::policy::{POLICY_MAX_BYTES, Permission, document};
use crate::registry::RegistryError;

const BODY_MAX: usize = 64 * 1024;

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

#[derive(Deserialize)]
pub struct PolicyQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

/// The function a request names and the qualifier of the policy (`None`: the function's
/// own, unqualified policy).
fn target(
    scope: &Scope,
    raw: &str,
    qualifier: Option<String>,
) -> Result<(String, Option<String>), ApiError> {
    let reference = super::function_ref(scope, raw)?;
    let qualifier = qualifier.filter(|q| !q.is_empty()).or(reference.qualifier);
    if let Some(q) = &qualifier {
        crate::function::validate_qualifier(q)?;
    }
    Ok((reference.name, qualifier))
}

/// The key of a qualifier's statements in the document.
fn key_of(qualifier: Option<&str>) -> String {
    qualifier.unwrap_or("").to_string()
}

/// The revision id of what the policy is on (the function's `$LATEST`, a version or an
/// alias); a missing version or alias is a `ResourceNotFoundException`.
fn revision_of(
    doc: &FunctionDocument,
    scope: &Scope,
    qualifier: Option<&str>,
) -> Result<String, RegistryError> {
    let missing = |q: &str| {
        RegistryError::Missing(format!(
            "Function not found: {}",
            scope.qualified_arn(doc.name(), q)
        ))
    };
    match qualifier.map(FunctionDocument::target_of) {
        None => Ok(doc.latest.revision_id.clone()),
        Some(Target::Version(v)) => doc
            .version(&v)
            .map(|r| r.revision_id.clone())
            .ok_or_else(|| missing(&v)),
        Some(Target::Alias(a)) => doc
            .aliases
            .get(&a)
            .map(|alias| alias.revision_id.clone())
            .ok_or_else(|| missing(&a)),
    }
}

fn check_revision(expected: Option<&str>, actual: &str) -> Result<(), RegistryError> {
    match expected {
        Some(expected) if expected != actual => Err(RegistryError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. \
             Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn resource(scope: &Scope, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        None => scope.function_arn(name),
        Some(q) => scope.qualified_arn(name, q),
    }
}

pub async fn add(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<PolicyQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query.qualifier)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let permission: Permission = parse_json(&body)?;
    let statement = permission
        .statement(&resource(&scope, &name, qualifier.as_deref()))
        .map_err(ApiError::InvalidParameterValue)?;
    let key = key_of(qualifier.as_deref());
    let (_, statement) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            let revision = revision_of(doc, &scope, qualifier.as_deref())?;
            check_revision(permission.revision_id.as_deref(), &revision)?;
            let statements = doc.policies.entry(key.clone()).or_default();
            if statements.iter().any(|s| s.sid() == permission.statement_id) {
                return Err(RegistryError::Conflict(format!(
                    "The statement id ({}) provided already exists. Please provide a new statement id, \
                     or remove the existing statement.",
                    permission.statement_id
                )));
            }
            statements.push(statement.clone());
            let size = document(statements).len();
            if size > POLICY_MAX_BYTES {
                return Err(RegistryError::PolicyTooLarge(format!(
                    "The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )));
            }
            Ok(statement)
        })
        .await?;
    tracing::info!(function = %name, sid = %permission.statement_id, action = %permission.action, principal = %permission.principal, "permission added");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.0.to_string() })),
    )
        .into_response())
}

pub async fn remove(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, sid)): Path<(String, String)>,
    Query(query): Query<PolicyQuery>,
) -> Result<StatusCode, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query.qualifier)?;
    let key = key_of(qualifier.as_deref());
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            let revision = revision_of(doc, &scope, qualifier.as_deref())?;
            check_revision(query.revision_id.as_deref(), &revision)?;
            let statements = doc.policies.entry(key.clone()).or_default();
            let before = statements.len();
            statements.retain(|s| s.sid() != sid);
            let removed = statements.len() < before;
            if statements.is_empty() {
                doc.policies.remove(&key);
            }
            if removed {
                Ok(())
            } else {
                Err(RegistryError::Missing(format!(
                    "Statement {sid} is not found in resource policy."
                )))
            }
        })
        .await?;
    tracing::info!(function = %name, %sid, "permission removed");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<PolicyQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query.qualifier)?;
    let (_, doc) = super::named_function(&state, &scope, &name)?;
    let revision = revision_of(&doc, &scope, qualifier.as_deref())?;
    let statements = doc
        .policies
        .get(&key_of(qualifier.as_deref()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::ResourceNotFound("The resource you requested does not exist.".into())
        })?;
    Ok(Json(json!({
        "Policy": document(statements),
        "RevisionId": revision,
    })))
}

/// The statements that govern a function URL serving `qualifier` (`$LATEST`: the
/// function's own policy).
pub fn statements_for_url<'a>(
    doc: &'a FunctionDocument,
    qualifier: &str,
) -> &'a [crate::policy::Statement] {
    doc.statements(Some(qualifier))
}
