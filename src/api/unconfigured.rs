//! Reads of function settings Shoal has no notion of, answered as AWS answers for a
//! function where nothing is configured: no code signing config
//! (GetFunctionCodeSigningConfig). Deploy tools (the Terraform AWS provider) read it
//! after every create and on every refresh; the function must exist.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::Scope;
use super::{ApiError, SharedState};

/// `GET /2020-06-30/functions/{name}/code-signing-config`: no config, as Lambda answers
/// for a function without one (`CodeSigningConfigArn` empty).
pub async fn code_signing_config(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (name, _) = super::named_function(&state, &scope, &raw)?;
    tracing::debug!(function = %name, "no code signing config");
    Ok(Json(
        json!({ "CodeSigningConfigArn": "", "FunctionName": name }),
    ))
}
