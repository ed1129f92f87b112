//! The SNS front: topics on SNS's query protocol (`POST /`, a form with
//! `Action=<Action>`, XML answers), told apart from other fronts by the service its
//! signature names (`sns`).
//!
//! The front reads the form, parses its action ([`SnsAction`]) and hands it to that
//! action's function (`topics.rs`, `subscriptions.rs`, `publish.rs`), which reads its
//! parameters and calls the [`TopicService`](crate::topics::TopicService). [`link`] serves
//! the two links SNS puts in the messages it sends, which are followed without a
//! signature: `SubscribeURL` (`GET /?Action=ConfirmSubscription&TopicArn=..&Token=..`) and
//! `UnsubscribeURL` (`GET /?Action=Unsubscribe&SubscriptionArn=..`).

mod action;
mod error;
mod publish;
mod subscriptions;
mod topics;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::fronts::Answer;
use super::query::{Form, Xml};
use super::{ApiError, Scope, SharedState, read_body};
use crate::topics::{TopicError, TopicService};
use action::SnsAction;
use error::SnsError;

pub(super) use error::foreign_error_response;

/// The XML namespace of SNS's answers.
const NAMESPACE: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// The largest SNS request: a batch of ten messages, 256 KiB in all, form-encoded (up to
/// three bytes for one).
pub(super) const BODY_MAX: usize = 1024 * 1024;

/// The actions [`link`] serves without a signature.
pub(super) const LINK_ACTIONS: &[&str] = &["ConfirmSubscription", "Unsubscribe"];

/// One SNS request as its action's function sees it.
struct Call<'a> {
    state: &'a SharedState,
    scope: Scope,
    form: Form,
    headers: &'a HeaderMap,
}

impl Call<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.form.get(name)
    }

    fn required(&self, name: &str) -> Result<&str, SnsError> {
        self.form.get(name).ok_or_else(|| SnsError::missing(name))
    }

    /// A boolean parameter (`true`/`false`).
    fn flag(&self, name: &str) -> Result<bool, SnsError> {
        match self.form.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(SnsError::invalid(format!(
                "Invalid parameter: {name} Reason: {v} is not a boolean"
            ))),
        }
    }

    /// Runs `f` on the topic service, off the async threads (it may wait on the store).
    async fn topics<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TopicService) -> Result<T, TopicError> + Send + 'static,
    ) -> Result<T, SnsError> {
        let topics: Arc<TopicService> = self.state.topics.clone();
        tokio::task::spawn_blocking(move || f(&topics))
            .await
            .map_err(|e| SnsError::from(TopicError::Backend(e.to_string())))?
            .map_err(SnsError::from)
    }
}

/// The front's entry in the table of fronts.
pub(super) fn serve(state: SharedState, headers: HeaderMap, body: Body) -> Answer {
    Box::pin(handle(state, headers, body))
}

/// Answers one SNS request.
async fn handle(state: SharedState, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, BODY_MAX, || {
        ApiError::RequestTooLarge("Request is too large".into())
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let scope = match Scope::of(&state, &headers, None) {
        Ok(scope) => scope,
        Err(e) => return e.into_response(),
    };
    run_form(&state, scope, Form::parse(&body), &headers).await
}

/// `GET /?Action=ConfirmSubscription|Unsubscribe&...`: the links in SNS's messages.
pub(super) async fn link(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    match form.get("Action") {
        Some(action) if LINK_ACTIONS.contains(&action) => {
            let scope = Scope(state.arns.clone());
            run_form(&state, scope, form, &headers).await
        }
        _ => ApiError::UnknownOperation(
            "GET / serves only the ConfirmSubscription and Unsubscribe links of SNS messages"
                .into(),
        )
        .into_response(),
    }
}

/// Parses the action of a form and runs it.
async fn run_form(state: &SharedState, scope: Scope, form: Form, headers: &HeaderMap) -> Response {
    let name = form.get("Action").unwrap_or_default().to_string();
    let Some(action) = SnsAction::from_name(&name) else {
        return SnsError::unknown_action(&name).into_response();
    };
    let call = Call {
        state,
        scope,
        form,
        headers,
    };
    let span = tracing::info_span!("sns", action = action.name());
    match tracing::Instrument::instrument(run(action, &call), span).await {
        Ok(result) => ok(action, result.as_ref()),
        Err(e) => e.into_response(),
    }
}

/// Runs one action: each has its own function, which writes its result element.
async fn run(action: SnsAction, call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    match action {
        SnsAction::CreateTopic => topics::create_topic(call).await,
        SnsAction::DeleteTopic => topics::delete_topic(call).await,
        SnsAction::ListTopics => topics::list_topics(call).await,
        SnsAction::GetTopicAttributes => topics::get_topic_attributes(call).await,
        SnsAction::SetTopicAttributes => topics::set_topic_attributes(call).await,
        SnsAction::TagResource => topics::tag_resource(call).await,
        SnsAction::UntagResource => topics::untag_resource(call).await,
        SnsAction::ListTagsForResource => topics::list_tags_for_resource(call).await,
        SnsAction::Subscribe => subscriptions::subscribe(call).await,
        SnsAction::ConfirmSubscription => subscriptions::confirm_subscription(call).await,
        SnsAction::Unsubscribe => subscriptions::unsubscribe(call).await,
        SnsAction::ListSubscriptions => subscriptions::list_subscriptions(call).await,
        SnsAction::ListSubscriptionsByTopic => {
            subscriptions::list_subscriptions_by_topic(call).await
        }
        SnsAction::GetSubscriptionAttributes => {
            subscriptions::get_subscription_attributes(call).await
        }
        SnsAction::SetSubscriptionAttributes => {
            subscriptions::set_subscription_attributes(call).await
        }
        SnsAction::Publish => publish::publish(call).await,
        SnsAction::PublishBatch => publish::publish_batch(call).await,
    }
}

/// A successful answer: `<{Action}Response>` with the result.
fn ok(action: SnsAction, result: Option<&Xml>) -> Response {
    let request_id = crate::invoke::new_request_id().to_string();
    let body = Xml::response(action.name(), NAMESPACE, &request_id, result);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}
