//! The region a request acts in: the one its SigV4 credential scope names, else the
//! server's `--region` (unsigned requests). Handlers take a [`Scope`] and find and name
//! resources through it: keys for the registry and the stores, ARNs in that region.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::{ApiError, SharedState};
use crate::function::ArnContext;
use crate::region::{signed_region, validate_region};

/// The account in the region of one request.
#[derive(Debug, Clone)]
pub struct Scope(pub ArnContext);

impl Deref for Scope {
    type Target = ArnContext;

    fn deref(&self) -> &ArnContext {
        &self.0
    }
}

impl Scope {
    /// The scope of a request with these headers and query string.
    pub fn of(
        state: &SharedState,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Self, ApiError> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        let region = match signed_region(authorization, query) {
            None => return Ok(Self(state.arns.in_region(&state.default_region))),
            Some(region) => region,
        };
        if region == state.arns.region {
            return Ok(Self(state.arns.clone()));
        }
        validate_region(&region).map_err(|e| ApiError::Forbidden {
            code: "InvalidSignatureException",
            message: format!("The credential scope names an invalid region: {e}"),
        })?;
        Ok(Self(state.arns.in_region(&region)))
    }
}

impl FromRequestParts<SharedState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        Self::of(state, &parts.headers, parts.uri.query())
    }
}
