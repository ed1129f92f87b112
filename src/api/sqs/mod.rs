//! The SQS front: the built-in queues on the Amazon SQS JSON protocol, `POST /` with
//! `X-Amz-Target: AmazonSQS.<Action>`, as current boto3 and the AWS CLI speak it, and on
//! SQS's older query protocol (`query.rs`: a form in, XML out), which it translates to
//! and from the same actions.
//!
//! The front reads the request, parses its action ([`SqsAction`]) and hands it to that
//! action's function (`queues.rs`, `messages.rs`, `tags.rs`), which parses its input and
//! calls the [`QueueService`]. Errors carry the `x-amzn-query-error` header botocore
//! reads the error code from (`error.rs`).

mod action;
mod endpoint;
pub(super) mod error;
pub(super) mod messages;
mod moves;
pub(super) mod query;
mod queues;
mod tags;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::fronts::Answer;
use super::{ApiError, Scope, SharedState, read_body};
use crate::queues::{QueueError, QueueService};
use action::SqsAction;
use endpoint::Endpoint;
use error::SqsError;

pub(super) use action::TARGET_PREFIX;
pub(super) use error::foreign_error_response;

/// The largest SQS request (a batch of ten messages of 256 KB, JSON-escaped).
pub(super) const BODY_MAX: usize = 4 * 1024 * 1024;

/// The host queue URLs are made of when a request names none.
const DEFAULT_HOST: &str = "127.0.0.1:9600";

/// One SQS request as its action's function sees it.
struct Call<'a> {
    state: &'a SharedState,
    /// The request's region: queues are found by their key there.
    scope: Scope,
    endpoint: Endpoint,
    body: &'a [u8],
}

impl Call<'_> {
    /// The action's input: the request's JSON body.
    fn input<T: DeserializeOwned>(&self) -> Result<T, SqsError> {
        serde_json::from_slice(self.body)
            .map_err(|e| SqsError::invalid(format!("Invalid request: {e}")))
    }

    /// The name of the queue a queue URL names (of this endpoint and account only).
    fn queue_name(&self, url: &str) -> Result<String, SqsError> {
        self.endpoint.queue_name(url)
    }

    /// The key of the queue a queue URL names, in the request's region (see
    /// `crate::region`).
    fn queue_key(&self, url: &str) -> Result<String, SqsError> {
        Ok(self.scope.owned_key(self.endpoint.queue_name(url)?))
    }

    /// The URL of a queue.
    fn url(&self, name: &str) -> String {
        self.endpoint.url(name)
    }

    /// Runs `f` on the queue service, off the async threads (it waits on the store).
    async fn queues<T: Send + 'static>(
        &self,
        f: impl FnOnce(&QueueService) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, SqsError> {
        let queues: Arc<QueueService> = self.state.queues.clone();
        tokio::task::spawn_blocking(move || f(&queues))
            .await
            .map_err(|e| SqsError::from(QueueError::Backend(e.to_string())))?
            .map_err(SqsError::from)
    }
}

/// The input of the actions that name just a queue.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlInput {
    queue_url: String,
}

/// The front's entry in the table of fronts.
pub(super) fn serve(state: SharedState, headers: HeaderMap, body: Body) -> Answer {
    Box::pin(handle(state, headers, body))
}

/// Answers one SQS request: reads its body, parses its action and runs it.
async fn handle(state: SharedState, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, BODY_MAX, || {
        ApiError::RequestTooLarge("Request is too large".into())
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let target = headers
        .get("x-amz-target")
        .map(|t| String::from_utf8_lossy(t.as_bytes()))
        .unwrap_or_default();
    let action = match SqsAction::from_target(&target) {
        Ok(action) => action,
        Err(e) => return e.into_response(),
    };
    let (scope, endpoint) = match request_place(&state, &headers) {
        Ok(place) => place,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        state: &state,
        scope,
        endpoint,
        body: &body,
    };
    match run_traced(action, &call).await {
        Ok(value) => ok(value),
        Err(e) => e.into_response(),
    }
}

/// The region a request acts in and the endpoint its queue URLs are of.
fn request_place(state: &SharedState, headers: &HeaderMap) -> Result<(Scope, Endpoint), ApiError> {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or(DEFAULT_HOST)
        .to_string();
    let scope = Scope::of(state, headers, None)?;
    Ok((
        scope,
        Endpoint {
            host,
            public: state.public_addr.get().cloned(),
            account: state.arns.account_id.clone(),
        },
    ))
}

/// Runs one action in its span.
async fn run_traced(action: SqsAction, call: &Call<'_>) -> Result<Value, SqsError> {
    let span = tracing::info_span!("sqs", action = action.name());
    tracing::Instrument::instrument(run(action, call), span).await
}

/// Runs one action: each has its own function.
async fn run(action: SqsAction, call: &Call<'_>) -> Result<Value, SqsError> {
    match action {
        SqsAction::CreateQueue => queues::create_queue(call).await,
        SqsAction::GetQueueUrl => queues::get_queue_url(call).await,
        SqsAction::ListQueues => queues::list_queues(call).await,
        SqsAction::DeleteQueue => queues::delete_queue(call).await,
        SqsAction::PurgeQueue => queues::purge_queue(call).await,
        SqsAction::GetQueueAttributes => queues::get_queue_attributes(call).await,
        SqsAction::SetQueueAttributes => queues::set_queue_attributes(call).await,
        SqsAction::SendMessage => messages::send_message(call).await,
        SqsAction::SendMessageBatch => messages::send_message_batch(call).await,
        SqsAction::ReceiveMessage => messages::receive_message(call).await,
        SqsAction::DeleteMessage => messages::delete_message(call).await,
        SqsAction::DeleteMessageBatch => messages::delete_message_batch(call).await,
        SqsAction::ChangeMessageVisibility => messages::change_message_visibility(call).await,
        SqsAction::ChangeMessageVisibilityBatch => {
            messages::change_message_visibility_batch(call).await
        }
        SqsAction::ListDeadLetterSourceQueues => queues::list_dead_letter_source_queues(call).await,
        SqsAction::AddPermission => queues::add_permission(call).await,
        SqsAction::RemovePermission => queues::remove_permission(call).await,
        SqsAction::TagQueue => tags::tag_queue(call).await,
        SqsAction::UntagQueue => tags::untag_queue(call).await,
        SqsAction::ListQueueTags => tags::list_queue_tags(call).await,
        SqsAction::StartMessageMoveTask => moves::start_message_move_task(call).await,
        SqsAction::ListMessageMoveTasks => moves::list_message_move_tasks(call).await,
        SqsAction::CancelMessageMoveTask => moves::cancel_message_move_task(call).await,
    }
}

/// A successful answer: the action's output as JSON.
fn ok(value: Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}
