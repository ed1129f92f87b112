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
    AccessDenied(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PolicyLengthExceeded(String),
    #[error("{0}")]
    Service(String),
    /// The server cannot take the request for now (its data disk is full, or it is
    /// shutting down): 503 `ServiceException`, which clients retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::disk::DiskFull> for ApiError {
    fn from(e: crate::disk::DiskFull) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::invoke::InvokeError> for ApiError {
    fn from(e: crate::invoke::InvokeError) -> Self {
        use crate::invoke::InvokeError as E;
        match e {
            E::NotFound(arn) => Self::ResourceNotFound(format!("Function not found: {arn}")),
            E::InvalidPayload(_) => Self::InvalidRequestContent(e.to_string()),
            E::Throttled(throttle) => Self::TooManyRequests {
                reason: throttle.reason(),
                message: throttle.message().to_string(),
            },
            // A full store is the disk's fault too: a clear 503 that clients retry.
            E::DiskFull(_)
            | E::ShuttingDown
            | E::Queue(crate::dispatcher::AcceptError::Stopped) => Self::Unavailable(e.to_string()),
            E::Queue(crate::dispatcher::AcceptError::Store(ref store)) if store.is_disk_full() => {
                Self::Unavailable(e.to_string())
            }
            E::Start(_) | E::Task(_) | E::Queue(_) => Self::Service(e.to_string()),
        }
    }
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
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::PreconditionFailed(_) => "PreconditionFailedException",
            Self::PolicyLengthExceeded(_) => "PolicyLengthExceededException",
            Self::Service(_) | Self::Unavailable(_) => "ServiceException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ResourceNotFound(_)
            | Self::UnknownOperation(_)
            | Self::ProvisionedConcurrencyConfigNotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden { .. } | Self::AccessDenied(_) => StatusCode::FORBIDDEN,
            Self::ResourceConflict(_) => StatusCode::CONFLICT,
            Self::InvalidParameterValue(_)
            | Self::InvalidRequestContent(_)
            | Self::PolicyLengthExceeded(_) => StatusCode::BAD_REQUEST,
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

impl ApiError {
    /// The error standing for an answer axum made by itself (an extractor's rejection, a
    /// 405, a body limit), from its status and plain-text message.
    pub fn from_bare_answer(status: StatusCode, text: &str) -> Self {
        let text = text.trim();
        let message = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("Invalid request")
                .to_string()
        } else {
            text.to_string()
        };
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::RequestTooLarge(message),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                Self::UnknownOperation(message)
            }
            StatusCode::BAD_REQUEST => Self::InvalidParameterValue(message),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests {
                reason: "CallerRateLimitExceeded",
                message,
            },
            s if s.is_client_error() => Self::InvalidRequestContent(message),
            _ => Self::Service(message),
        }
    }

    /// The whole HTTP/1.1 response, ending the connection, as bytes: for answers written
    /// straight to a socket, outside any request (a connection over the cap).
    pub fn http1_close_response(&self) -> Vec<u8> {
        let body = self.body().to_string();
        let status = self.status();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nx-amzn-errortype: {}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.code(),
            body.len()
        )
        .into_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Service(_)) {
            tracing::error!(error = %self, "service error");
        } else if matches!(self, Self::Unavailable(_)) {
            tracing::warn!(error = %self, "request refused");
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
        let full = ApiError::Unavailable("Shoal's data disk is full".into());
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.code(), "ServiceException");
        assert_eq!(full.body()["Type"], "Service");
        assert_eq!(full.body()["Message"], "Shoal's data disk is full");
    }

    #[test]
    fn bare_answers_become_lambda_errors() {
        let bad_path = ApiError::from_bare_answer(
            StatusCode::BAD_REQUEST,
            "Invalid URL: Cannot parse `\\xff` to a `String`",
        );
        assert_eq!(bad_path.code(), "InvalidParameterValueException");
        assert_eq!(bad_path.status(), StatusCode::BAD_REQUEST);
        assert!(bad_path.to_string().contains("Cannot parse"));
        let json = ApiError::from_bare_answer(StatusCode::UNPROCESSABLE_ENTITY, "missing field");
        assert_eq!(json.code(), "InvalidRequestContentException");
        assert_eq!(json.status(), StatusCode::BAD_REQUEST);
        let big = ApiError::from_bare_answer(StatusCode::PAYLOAD_TOO_LARGE, "");
        assert_eq!(big.code(), "RequestTooLargeException");
        assert_eq!(big.to_string(), "Payload Too Large");
        let method = ApiError::from_bare_answer(StatusCode::METHOD_NOT_ALLOWED, "");
        assert_eq!(method.code(), "UnknownOperationException");
        let broken = ApiError::from_bare_answer(StatusCode::BAD_GATEWAY, "x");
        assert_eq!(broken.code(), "ServiceException");
        let stopping = ApiError::Unavailable("the server is shutting down".into());
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stopping.code(), "ServiceException");
        assert_eq!(stopping.body()["Type"], "Service");
        assert_eq!(stopping.body()["Message"], "the server is shutting down");
    }
}
