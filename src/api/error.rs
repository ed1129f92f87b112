//! The one place where errors become Lambda's wire format.
//!
//! Every failure the API can report is an [`ApiError`] variant named after the Lambda
//! exception it stands for. [`ApiError::into_response`] sets the status code, the
//! `X-Amzn-ErrorType` header and the JSON body (`{"Type":"User","message":...}`; the
//! exceptions whose model spells it `Message` get that key) exactly as botocore parses them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceConflict(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidRequestContent(String),
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{message}")]
    TooManyRequests {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    /// A request that failed authentication: 403 with the exception SigV4 names.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Service(String),
    /// The server is shutting down: 503 `ServiceException` (AWS clients retry it).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// Lambda's exception name, sent as `X-Amzn-ErrorType`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceConflict(_) => "ResourceConflictException",
            Self::InvalidParameterValue(_) => "InvalidParameterValueException",
            Self::InvalidRequestContent(_) => "InvalidRequestContentException",
            Self::RequestTooLarge(_) => "RequestTooLargeException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::TooManyRequests { .. } => "TooManyRequestsException",
            Self::Forbidden { code, .. } => code,
            Self::ProvisionedConcurrencyConfigNotFound(_) => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
            Self::PreconditionFailed(_) => "PreconditionFailedException",
            Self::Service(_) | Self::Unavailable(_) => "ServiceException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ResourceNotFound(_)
            | Self::UnknownOperation(_)
            | Self::ProvisionedConcurrencyConfigNotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::ResourceConflict(_) => StatusCode::CONFLICT,
            Self::InvalidParameterValue(_) | Self::InvalidRequestContent(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::Service(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON body; the key of the message follows each exception's shape in the service model.
    pub fn body(&self) -> serde_json::Value {
        let message = self.to_string();
        let kind = if matches!(self, Self::Service(_) | Self::Unavailable(_)) {
            "Service"
        } else {
            "User"
        };
        match self {
            Self::ResourceNotFound(_) | Self::Service(_) | Self::Unavailable(_) => {
                serde_json::json!({ "Type": kind, "Message": message })
            }
            Self::TooManyRequests { reason, .. } => {
                serde_json::json!({ "Type": kind, "message": message, "Reason": reason })
            }
            _ => serde_json::json!({ "Type": kind, "message": message }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Service(_)) {
            tracing::error!(error = %self, "service error");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(self.code()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_key_follows_the_model() {
        let not_found = ApiError::ResourceNotFound("gone".into());
        assert_eq!(not_found.body()["Message"], "gone");
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        let invalid = ApiError::InvalidParameterValue("bad".into());
        assert_eq!(invalid.body()["message"], "bad");
        assert_eq!(invalid.body()["Type"], "User");
        let throttled = ApiError::TooManyRequests {
            reason: "ConcurrentInvocationLimitExceeded",
            message: "Rate Exceeded.".into(),
        };
        assert_eq!(
            throttled.body()["Reason"],
            "ConcurrentInvocationLimitExceeded"
        );
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        let stopping = ApiError::Unavailable("the server is shutting down".into());
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stopping.code(), "ServiceException");
        assert_eq!(stopping.body()["Type"], "Service");
        assert_eq!(stopping.body()["Message"], "the server is shutting down");
    }
}
