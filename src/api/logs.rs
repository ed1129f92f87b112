//! `GET /shoal/v1/functions/{name}/logs`: a function's log events, oldest first, after a
//! cursor; what `shoal logs` (and `--follow`, by polling) reads.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::Scope;
use super::{ApiError, SharedState};

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
pub struct LogsQuery {
    after: Option<String>,
    limit: Option<String>,
}

fn number<T: std::str::FromStr>(name: &str, raw: Option<&str>, default: T) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(default),
        Some(raw) => raw.parse().map_err(|_| {
            ApiError::InvalidParameterValue(format!(
                "'{name}' must be a non-negative integer, got '{raw}'"
            ))
        }),
    }
}

pub async fn read(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = super::function_ref(&scope, &raw)?.name;
    let document = state
        .registry
        .require(&scope.key(&name), || scope.function_arn(&name))?;
    let key = document.key().into_owned();
    let after: u64 = number("after", query.after.as_deref(), 0)?;
    let limit = number("limit", query.limit.as_deref(), DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT);
    // Events still gathering in the writer are written first: a reader sees every
    // line of every invocation that has answered.
    state.logs.flush().await;
    let store = state.registry.logs();
    let events = tokio::task::spawn_blocking(move || store.read_logs(&key, after, limit))
        .await
        .map_err(|e| ApiError::Service(e.to_string()))?
        .map_err(|e| ApiError::Service(e.to_string()))?;
    let next_after = events.last().map(|e| e.seq).unwrap_or(after);
    Ok(Json(
        serde_json::json!({ "events": events, "nextAfter": next_after }),
    ))
}
