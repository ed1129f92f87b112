//! The wire fronts: the AWS services other than Lambda that are spoken on `POST /`, and
//! the one table ([`FRONTS`]) that says which front a request is for.
//!
//! A `POST /` is told apart by its protocol: the JSON protocols name the service in the
//! prefix of `X-Amz-Target: <Prefix>.<Action>`; the query protocol (a form body with
//! `Action=<Action>`) carries no such header, so it is told apart by the service its
//! SigV4 credential scope names. The same row gives the service name the request must
//! be signed for, so routing and the signature's service check cannot disagree: a
//! request signed for `lambda` is never taken by a front, and one a front takes must be
//! signed for that front's service. Everything no front takes is Lambda's REST API,
//! signed for `lambda`.
//!
//! Each front is a module (`api/sqs/`, `api/sns/`, `api/events/`) with a typed action enum ([`wire_actions!`]) and
//! one function per action. Adding a service is one row here plus its front module.

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, SharedState, events, sns, sqs};

/// The service Lambda's REST API (everything no front takes) is signed for.
pub(super) const REST_SIGNING_NAME: &str = "lambda";

/// What a front's request handler returns.
pub(super) type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// How a `POST /` shows it is for a front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// A JSON protocol: `X-Amz-Target: <target_prefix>.<Action>`.
    Json { target_prefix: &'static str },
    /// The query protocol: no `X-Amz-Target`, a credential scope naming the front's
    /// signing name, the action in the form field `Action`.
    Query,
}

/// One row of the table: a service spoken on `POST /`.
#[derive(Clone, Copy)]
pub(super) struct Front {
    /// The service's name in logs and errors ("SQS").
    pub name: &'static str,
    /// The SigV4 service name its requests are signed for.
    pub signing_name: &'static str,
    pub wire: Wire,
    /// The largest request body it accepts.
    pub body_max: usize,
    /// Whether it also takes `POST /<account>/<queue>` (SQS's query requests sent to a
    /// queue's URL, as older SDKs send them).
    pub queue_paths: bool,
    /// Answers one request (its body not yet read).
    pub serve: fn(SharedState, HeaderMap, Body) -> Answer,
    /// An error made outside the front (authentication, limits, axum's own answers) in
    /// the service's error format: status, code, message.
    pub error: fn(StatusCode, &str, &str) -> Response,
}

/// Every wire front.
pub(super) const FRONTS: &[Front] = &[
    Front {
        name: "SQS",
        signing_name: "sqs",
        wire: Wire::Json {
            target_prefix: sqs::TARGET_PREFIX,
        },
        body_max: sqs::BODY_MAX,
        queue_paths: false,
        serve: sqs::serve,
        error: sqs::foreign_error_response,
    },
    Front {
        name: "SQS (query)",
        signing_name: "sqs",
        wire: Wire::Query,
        body_max: sqs::BODY_MAX,
        queue_paths: true,
        serve: sqs::query::serve,
        error: sqs::query::foreign_error_response,
    },
    Front {
        name: "EventBridge",
        signing_name: "events",
        wire: Wire::Json {
            target_prefix: events::TARGET_PREFIX,
        },
        body_max: events::BODY_MAX,
        queue_paths: false,
        serve: events::serve,
        error: events::foreign_error_response,
    },
    Front {
        name: "SNS",
        signing_name: "sns",
        wire: Wire::Query,
        body_max: sns::BODY_MAX,
        queue_paths: false,
        serve: sns::serve,
        error: sns::foreign_error_response,
    },
];

/// The front a request is for: a `POST /` that one of [`FRONTS`] recognises, or a `POST`
/// to a queue's path that a front taking those recognises.
pub(super) fn front_of(method: &Method, path: &str, headers: &HeaderMap) -> Option<&'static Front> {
    if method != Method::POST {
        return None;
    }
    if path == "/" {
        return lookup(FRONTS, headers);
    }
    is_queue_path(path)
        .then(|| lookup(FRONTS, headers))
        .flatten()
        .filter(|front| front.queue_paths)
}

/// Whether a path is a queue's (`/<12-digit account>/<name>`).
pub(super) fn is_queue_path(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(account), Some(name), None) => {
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        }
        _ => false,
    }
}

/// The service a request must be signed for: its front's, else Lambda's.
pub(super) fn signing_service(front: Option<&Front>) -> &'static str {
    front.map_or(REST_SIGNING_NAME, |f| f.signing_name)
}

/// The row of `table` a `POST /` with these headers is for.
fn lookup<'t>(table: &'t [Front], headers: &HeaderMap) -> Option<&'t Front> {
    let target = headers.get("x-amz-target").map(|t| t.as_bytes());
    let signed_for = || {
        headers
            .get("authorization")
            .and_then(|a| a.to_str().ok())
            .and_then(crate::sigv4::signed_service)
    };
    table.iter().find(|front| match (front.wire, target) {
        (Wire::Json { target_prefix }, Some(target)) => target
            .strip_prefix(target_prefix.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'.')),
        (Wire::Query, None) => signed_for().as_deref() == Some(front.signing_name),
        _ => false,
    })
}

/// The action named by `X-Amz-Target: <prefix>.<Action>`; `None` when the target is of
/// another prefix.
pub(super) fn target_action<'t>(target: &'t str, prefix: &str) -> Option<&'t str> {
    target.strip_prefix(prefix)?.strip_prefix('.')
}

/// `POST /`: handed to its front; refused (as Lambda refuses an unknown operation) when
/// no front takes it.
pub(super) async fn handle(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match lookup(FRONTS, &headers) {
        Some(front) => (front.serve)(state, headers, body).await,
        None => ApiError::UnknownOperation(format!(
            "POST / needs an X-Amz-Target header ({})",
            expected_targets(FRONTS)
        ))
        .into_response(),
    }
}

/// The targets the JSON fronts of `table` take, for the answer to a `POST /` none takes.
fn expected_targets(table: &[Front]) -> String {
    table
        .iter()
        .filter_map(|front| match front.wire {
            Wire::Json { target_prefix } => Some(format!("{target_prefix}.<Action>")),
            Wire::Query => None,
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Declares a front's action enum: one variant per action, named as on the wire, with
/// `ALL`, `name()` and `from_name()`.
macro_rules! wire_actions {
    ($(#[$meta:meta])* $vis:vis enum $enum:ident { $($action:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $enum {
            $($action),+
        }

        impl $enum {
            /// Every action, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$action),+];

            /// The action's name on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$action => stringify!($action)),+
                }
            }

            /// The action a wire name names, if it is one of these.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|action| action.name() == name)
            }
        }
    };
}
pub(super) use wire_actions;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn signed_for(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00"
        )
    }

    fn unreachable_serve(_: SharedState, _: HeaderMap, _: Body) -> Answer {
        unreachable!("the table is only looked up")
    }

    /// A table with a query-protocol row beside SQS's.
    fn with_query_row() -> Vec<Front> {
        let query = Front {
            name: "Notifications",
            signing_name: "sns",
            wire: Wire::Query,
            body_max: 1024,
            queue_paths: false,
            serve: unreachable_serve,
            error: sqs::foreign_error_response,
        };
        vec![FRONTS[0], query]
    }

    #[test]
    fn sqs_targets_go_to_the_sqs_front() {
        for target in [
            "AmazonSQS.CreateQueue",
            "AmazonSQS.SendMessageBatch",
            "AmazonSQS.ListQueueTags",
        ] {
            let front = front_of(&Method::POST, "/", &headers(&[("x-amz-target", target)]));
            assert_eq!(front.map(|f| f.name), Some("SQS"), "{target}");
        }
        // An action the front does not know is still the front's to refuse.
        let unknown = headers(&[("x-amz-target", "AmazonSQS.NoSuchAction")]);
        assert_eq!(
            front_of(&Method::POST, "/", &unknown).map(|f| f.signing_name),
            Some("sqs")
        );
    }

    #[test]
    fn other_targets_and_routes_go_to_no_front() {
        for target in [
            "AmazonSQSX.ListQueues",
            "AmazonSQS",
            "amazonsqs.ListQueues",
            "AWSEventsX.PutEvents",
            "AWSStepFunctions.StartExecution",
            "Lambda.Invoke",
        ] {
            let h = headers(&[("x-amz-target", target)]);
            assert!(front_of(&Method::POST, "/", &h).is_none(), "{target}");
        }
        let sqs = headers(&[("x-amz-target", "AmazonSQS.ListQueues")]);
        assert!(front_of(&Method::GET, "/", &sqs).is_none());
        assert!(front_of(&Method::POST, "/2015-03-31/functions", &sqs).is_none());
        assert!(front_of(&Method::POST, "/", &HeaderMap::new()).is_none());
        // A form request is told apart by the service it is signed for.
        let form = headers(&[("authorization", &signed_for("sqs"))]);
        assert_eq!(
            front_of(&Method::POST, "/", &form).map(|f| f.name),
            Some("SQS (query)")
        );
        let sns = headers(&[("authorization", &signed_for("sns"))]);
        assert_eq!(
            front_of(&Method::POST, "/", &sns).map(|f| f.name),
            Some("SNS")
        );
        // SQS's query requests may go to a queue's URL; no other front's may.
        assert_eq!(
            front_of(&Method::POST, "/000000000000/q", &form).map(|f| f.name),
            Some("SQS (query)")
        );
        assert!(front_of(&Method::POST, "/000000000000/q", &sns).is_none());
        assert!(front_of(&Method::POST, "/2015-03-31/functions", &form).is_none());
        let lambda = headers(&[("authorization", &signed_for("lambda"))]);
        assert!(front_of(&Method::POST, "/", &lambda).is_none());
    }

    #[test]
    fn the_signed_service_follows_the_front() {
        let sqs = headers(&[("x-amz-target", "AmazonSQS.SendMessage")]);
        let front = front_of(&Method::POST, "/", &sqs);
        assert_eq!(signing_service(front), "sqs");
        let events = headers(&[("x-amz-target", "AWSEvents.PutEvents")]);
        assert_eq!(
            signing_service(front_of(&Method::POST, "/", &events)),
            "events"
        );
        for (method, path, h) in [
            (Method::POST, "/", HeaderMap::new()),
            (Method::POST, "/2015-03-31/functions", sqs.clone()),
            (
                Method::POST,
                "/",
                headers(&[("x-amz-target", "AWSStepFunctions.StartExecution")]),
            ),
        ] {
            assert_eq!(
                signing_service(front_of(&method, path, &h)),
                REST_SIGNING_NAME,
                "{method} {path}"
            );
        }
    }

    /// A request signed for `service` passes the check of the service the table names
    /// for it only when the two agree.
    #[test]
    fn the_service_check_follows_the_table() {
        let keys: std::collections::HashMap<String, String> =
            [("AKID".to_string(), "secret-of-sixteen-chars".to_string())].into();
        let now = 1_800_000_000;
        let check = |path: &str, target: Option<&str>, service: &str| {
            let mut unsigned = vec![("host".to_string(), "127.0.0.1:9600".to_string())];
            if let Some(target) = target {
                unsigned.push(("x-amz-target".into(), target.into()));
            }
            let mut parts = crate::sigv4::RequestParts {
                method: "POST",
                path,
                query: "",
                headers: unsigned,
                payload_sha256: crate::sigv4::sha256_hex(b"{}"),
            };
            let added = crate::sigv4::sign(
                &parts,
                "AKID",
                "secret-of-sixteen-chars",
                "us-east-1",
                service,
                now,
            );
            parts
                .headers
                .extend(added.into_iter().map(|(n, v)| (n.to_string(), v)));
            let map: HeaderMap = parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect();
            let expected = signing_service(front_of(&Method::POST, path, &map));
            crate::sigv4::verify(&parts, &keys, now, expected).map(|_| ())
        };
        let sqs = Some("AmazonSQS.ListQueues");
        assert_eq!(check("/", sqs, "sqs"), Ok(()));
        assert_eq!(
            check("/", sqs, "lambda"),
            Err(crate::sigv4::AuthError::Mismatch)
        );
        let functions = "/2015-03-31/functions";
        assert_eq!(check(functions, None, "lambda"), Ok(()));
        assert_eq!(
            check(functions, sqs, "sqs"),
            Err(crate::sigv4::AuthError::Mismatch)
        );
        let events = Some("AWSEvents.PutEvents");
        assert_eq!(check("/", events, "events"), Ok(()));
        assert_eq!(
            check("/", events, "lambda"),
            Err(crate::sigv4::AuthError::Mismatch)
        );
        assert_eq!(
            check("/", Some("AWSStepFunctions.StartExecution"), "states"),
            Err(crate::sigv4::AuthError::Mismatch)
        );
    }

    #[test]
    fn query_rows_are_told_apart_by_the_signed_service() {
        let table = with_query_row();
        let sns = headers(&[("authorization", &signed_for("sns"))]);
        assert_eq!(lookup(&table, &sns).map(|f| f.name), Some("Notifications"));
        assert!(is_queue_path("/123456789012/q"));
        for path in [
            "/12345678901/q",
            "/123456789012/",
            "/123456789012/q/x",
            "/2015-03-31/functions",
        ] {
            assert!(!is_queue_path(path), "{path}");
        }
        for other in ["sqs", "lambda"] {
            let h = headers(&[("authorization", &signed_for(other))]);
            assert!(lookup(&table, &h).is_none(), "{other}");
        }
        assert!(lookup(&table, &HeaderMap::new()).is_none());
        // A JSON target is the JSON front's, whatever the scope names.
        let json = headers(&[
            ("authorization", &signed_for("sns")),
            ("x-amz-target", "AmazonSQS.ListQueues"),
        ]);
        assert_eq!(lookup(&table, &json).map(|f| f.name), Some("SQS"));
        assert_eq!(expected_targets(&table), "AmazonSQS.<Action>");
    }

    #[test]
    fn rows_do_not_overlap() {
        for (i, a) in FRONTS.iter().enumerate() {
            assert_ne!(a.signing_name, REST_SIGNING_NAME, "{}", a.name);
            for b in &FRONTS[i + 1..] {
                assert!(
                    !(a.wire == Wire::Query
                        && b.wire == Wire::Query
                        && a.signing_name == b.signing_name),
                    "{} and {} are both the query protocol of {}",
                    a.name,
                    b.name,
                    a.signing_name
                );
                assert!(
                    !matches!((a.wire, b.wire), (Wire::Json { target_prefix: p }, Wire::Json { target_prefix: q }) if p == q),
                    "{} and {} share a target prefix",
                    a.name,
                    b.name
                );
            }
        }
    }

    #[test]
    fn target_actions_need_the_prefix_and_a_dot() {
        assert_eq!(
            target_action("AmazonSQS.ListQueues", "AmazonSQS"),
            Some("ListQueues")
        );
        assert_eq!(target_action("AmazonSQS.", "AmazonSQS"), Some(""));
        assert_eq!(target_action("AmazonSQSListQueues", "AmazonSQS"), None);
        assert_eq!(target_action("AWSEvents.PutEvents", "AmazonSQS"), None);
    }
}
