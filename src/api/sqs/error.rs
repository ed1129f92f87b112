//! SQS's errors: [`SqsError`] (shape, code, status) and their JSON-protocol answer, whose
//! `x-amzn-query-error` header carries the code botocore reports.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::queues::QueueError;

/// An SQS error: its shape name, the code botocore reports, the sender's fault or not.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(in crate::api) struct SqsError {
    pub status: StatusCode,
    pub shape: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl SqsError {
    /// A 400 of the sender's making under `shape`, reported as `code`.
    pub fn sender(shape: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            shape,
            code,
            message: message.into(),
        }
    }

    /// `InvalidParameterValue`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::sender(
            "InvalidParameterValueException",
            "InvalidParameterValue",
            message,
        )
    }

    /// `MissingParameter`: a required parameter is absent.
    pub fn missing(parameter: &str) -> Self {
        Self::sender(
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {parameter}."),
        )
    }

    /// An action this server does not serve.
    pub fn unsupported(action: &str) -> Self {
        Self::sender(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("The action {action} is not supported by this server"),
        )
    }
}

impl From<crate::disk::DiskFull> for SqsError {
    /// A full data disk: AWS's common 503 `ServiceUnavailable` (a temporary failure,
    /// which clients retry).
    fn from(e: crate::disk::DiskFull) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            shape: "ServiceUnavailable",
            code: "ServiceUnavailable",
            message: e.to_string(),
        }
    }
}

impl From<QueueError> for SqsError {
    fn from(e: QueueError) -> Self {
        let message = e.to_string();
        let (status, shape, code) = match e {
            QueueError::NoSuchQueue => (
                StatusCode::BAD_REQUEST,
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
            QueueError::NameExists(_) => (
                StatusCode::BAD_REQUEST,
                "QueueNameExists",
                "QueueAlreadyExists",
            ),
            QueueError::InvalidParameter(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidAttributeValue",
                "InvalidAttributeValue",
            ),
            QueueError::InvalidMessage(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "InvalidParameterValue",
            ),
            QueueError::InvalidTag(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "InvalidParameterValue",
            ),
            QueueError::InvalidReceiptHandle(_) => (
                StatusCode::BAD_REQUEST,
                "ReceiptHandleIsInvalid",
                "ReceiptHandleIsInvalid",
            ),
            QueueError::MissingParameter(_) => (
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                "MissingParameter",
            ),
            QueueError::InvalidAttributeName(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidAttributeName",
                "InvalidAttributeName",
            ),
            QueueError::ResourceNotFound(_) => (
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "ResourceNotFoundException",
            ),
            QueueError::Backend(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "InternalError",
            ),
        };
        Self {
            status,
            shape,
            code,
            message,
        }
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        error_response(self.status, self.shape, self.code, &self.message)
    }
}

/// An error in SQS's JSON format: `__type` names the shape, `x-amzn-query-error` carries
/// the code botocore reports and whose fault it is.
fn error_response(status: StatusCode, shape: &str, code: &str, message: &str) -> Response {
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = json!({ "__type": format!("com.amazonaws.sqs#{shape}"), "message": message });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault}")) {
        headers.insert("x-amzn-query-error", v);
    }
    response
}

/// An error made outside the SQS front (authentication, limits, axum's own answers) in
/// SQS's format, under the same code.
pub(in crate::api) fn foreign_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    error_response(status, code, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_code_and_whose_fault_it_is() {
        let sender = SqsError::from(QueueError::NoSuchQueue).into_response();
        assert_eq!(sender.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            sender.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );
        let receiver = foreign_error_response(StatusCode::SERVICE_UNAVAILABLE, "Busy", "later");
        assert_eq!(receiver.headers()["x-amzn-query-error"], "Busy;Receiver");
        assert_eq!(
            receiver.headers()["content-type"],
            "application/x-amz-json-1.0"
        );
    }
}
