//! SNS's errors: [`SnsError`] (status, code, whose fault) and their query-protocol answer,
//! an `<ErrorResponse>` document.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::NAMESPACE;
use crate::api::query::Xml;
use crate::topics::TopicError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(super) struct SnsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl SnsError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidParameter",
            message: message.into(),
        }
    }

    /// A required parameter is absent.
    pub fn missing(parameter: &str) -> Self {
        Self::invalid(format!(
            "Invalid parameter: {parameter} Reason: no value for required parameter"
        ))
    }

    pub fn unknown_action(action: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidAction",
            message: format!("The action {action} is not valid for this web service."),
        }
    }
}

/// The code a topic error has on the wire, and its status.
pub(super) fn code_of(e: &TopicError) -> (StatusCode, &'static str) {
    match e {
        TopicError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        TopicError::ResourceNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
        TopicError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "InvalidParameter"),
        TopicError::InvalidParameterValue(_) => (StatusCode::BAD_REQUEST, "ParameterValueInvalid"),
        TopicError::TagLimitExceeded(_) => (StatusCode::BAD_REQUEST, "TagLimitExceeded"),
        TopicError::BatchEntryIdsNotDistinct => {
            (StatusCode::BAD_REQUEST, "BatchEntryIdsNotDistinct")
        }
        TopicError::EmptyBatchRequest => (StatusCode::BAD_REQUEST, "EmptyBatchRequest"),
        TopicError::TooManyEntriesInBatchRequest => {
            (StatusCode::BAD_REQUEST, "TooManyEntriesInBatchRequest")
        }
        TopicError::InvalidBatchEntryId => (StatusCode::BAD_REQUEST, "InvalidBatchEntryId"),
        TopicError::BatchRequestTooLong => (StatusCode::BAD_REQUEST, "BatchRequestTooLong"),
        TopicError::Backend(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    }
}

impl From<TopicError> for SnsError {
    fn from(e: TopicError) -> Self {
        let (status, code) = code_of(&e);
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for SnsError {
    fn into_response(self) -> Response {
        let request_id = crate::invoke::new_request_id().to_string();
        error_response(self.status, self.code, &self.message, &request_id)
    }
}

/// An `<ErrorResponse>` answer; `x-amzn-query-error` marks it as already in the service's
/// format.
pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response {
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = Xml::error(NAMESPACE, fault, code, message, request_id);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault}")) {
        headers.insert("x-amzn-query-error", v);
    }
    response
}

/// An error made outside the SNS front (authentication, limits) in SNS's format.
pub(in crate::api) fn foreign_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    let request_id = crate::invoke::new_request_id().to_string();
    error_response(status, code, message, &request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_xml_with_the_code_and_fault() {
        let response =
            SnsError::from(TopicError::NotFound("Topic does not exist".into())).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-amzn-query-error"], "NotFound;Sender");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<Code>NotFound</Code>"), "{text}");
        assert!(text.contains("<Type>Sender</Type>"), "{text}");
        let internal =
            foreign_error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "x");
        assert_eq!(
            internal.headers()["x-amzn-query-error"],
            "InternalError;Receiver"
        );
    }
}
