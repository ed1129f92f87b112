//! Which topic and subscription attributes exist, which can be set, and what values
//! they take (SNS's rules); the attribute maps `GetTopicAttributes` and
//! `GetSubscriptionAttributes` answer with.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::retry::HttpPolicy;
use super::{Protocol, Subscription, Topic, TopicError};
use crate::pattern::{FilterPolicy, FilterPolicyScope};

fn invalid(what: &str, reason: impl std::fmt::Display) -> TopicError {
    TopicError::InvalidParameter(format!("Invalid parameter: {what} Reason: {reason}"))
}

fn boolean(name: &str, value: &str) -> Result<bool, TopicError> {
    match value {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid(
            name,
            format!("{value} is not a valid boolean (true or false)"),
        )),
    }
}

fn json_object(name: &str, value: &str) -> Result<(), TopicError> {
    match serde_json::from_str::<Value>(value) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(name, "must be a JSON object")),
        Err(e) => Err(invalid(name, format!("is not valid JSON: {e}"))),
    }
}

/// Whether `name` is one of the delivery-status logging attributes SNS keeps per
/// protocol (`LambdaSuccessFeedbackRoleArn`, `SQSFailureFeedbackRoleArn`, ...).
fn is_feedback_attribute(name: &str) -> bool {
    ["HTTP", "Firehose", "Lambda", "Application", "SQS"]
        .iter()
        .filter_map(|p| name.strip_prefix(p))
        .filter_map(|rest| {
            rest.strip_prefix("SuccessFeedback")
                .or_else(|| rest.strip_prefix("FailureFeedback"))
        })
        .any(|rest| rest == "RoleArn" || (rest == "SampleRate" && name.contains("Success")))
}

/// Checks one topic attribute as `CreateTopic` (`creating`) or `SetTopicAttributes` gives
/// it, for a topic that is FIFO or not.
pub fn check_topic_attribute(
    name: &str,
    value: &str,
    fifo: bool,
    creating: bool,
) -> Result<(), TopicError> {
    let fifo_only = || {
        if fifo {
            Ok(())
        } else {
            Err(invalid(
                name,
                format!("{name} is only valid for FIFO topics"),
            ))
        }
    };
    match name {
        "DisplayName" if value.chars().count() > 100 => {
            Err(invalid(name, "must be at most 100 characters"))
        }
        "DisplayName" | "KmsMasterKeyId" => Ok(()),
        "Policy" | "DataProtectionPolicy" => json_object(name, value),
        "DeliveryPolicy" => HttpPolicy::topic(value)
            .map(|_| ())
            .map_err(|e| invalid(name, e)),
        "FifoTopic" if creating => {
            if boolean(name, value)? == fifo {
                Ok(())
            } else {
                Err(TopicError::InvalidParameter(
                    "Invalid parameter: Fifo Topic names must end with .fifo and they must have FifoTopic attribute set to true"
                        .into(),
                ))
            }
        }
        "ContentBasedDeduplication" => {
            boolean(name, value)?;
            fifo_only()
        }
        "FifoThroughputScope" => {
            fifo_only()?;
            match value {
                "Topic" | "MessageGroup" => Ok(()),
                _ => Err(invalid(name, "must be Topic or MessageGroup")),
            }
        }
        "ArchivePolicy" => {
            fifo_only()?;
            json_object(name, value)
        }
        "SignatureVersion" => match value {
            "1" | "2" => Ok(()),
            _ => Err(invalid(name, "must be 1 or 2")),
        },
        "TracingConfig" => match value {
            "PassThrough" | "Active" => Ok(()),
            _ => Err(invalid(name, "must be PassThrough or Active")),
        },
        _ if is_feedback_attribute(name) => {
            if name.ends_with("SampleRate") {
                match value.parse::<u8>() {
                    Ok(0..=100) => Ok(()),
                    _ => Err(invalid(name, "must be a whole number from 0 to 100")),
                }
            } else {
                Ok(())
            }
        }
        _ => Err(TopicError::InvalidParameter(
            "Invalid parameter: AttributeName".into(),
        )),
    }
}

/// The default access policy of a topic (kept, not enforced).
fn default_policy(topic: &Topic, account: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": [
                "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
                "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe",
                "SNS:ListSubscriptionsByTopic", "SNS:Publish"
            ],
            "Resource": topic.arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}}
        }]
    })
    .to_string()
}

/// The topic's HTTP delivery policy: its `DeliveryPolicy`, else SNS's default.
pub fn topic_http_policy(topic: &Topic) -> HttpPolicy {
    topic
        .attributes
        .get("DeliveryPolicy")
        .and_then(|text| HttpPolicy::topic(text).ok())
        .unwrap_or_default()
}

/// `GetTopicAttributes`: what was set, the defaults, and the counts.
pub fn topic_attributes(
    topic: &Topic,
    account: &str,
    confirmed: usize,
    pending: usize,
) -> BTreeMap<String, String> {
    let mut map = topic.attributes.clone();
    map.insert("TopicArn".into(), topic.arn.clone());
    map.insert("Owner".into(), account.to_string());
    map.entry("Policy".into())
        .or_insert_with(|| default_policy(topic, account));
    map.entry("DisplayName".into()).or_default();
    map.insert("SubscriptionsConfirmed".into(), confirmed.to_string());
    map.insert("SubscriptionsPending".into(), pending.to_string());
    map.insert("SubscriptionsDeleted".into(), "0".into());
    map.insert(
        "EffectiveDeliveryPolicy".into(),
        topic_http_policy(topic).topic_json().to_string(),
    );
    if topic.fifo {
        map.insert("FifoTopic".into(), "true".into());
        map.entry("ContentBasedDeduplication".into())
            .or_insert_with(|| "false".into());
    }
    map
}

/// What a subscription's attributes mean for delivery, compiled once.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub filter: Option<FilterPolicy>,
    pub raw: bool,
    pub dead_letter: Option<String>,
    /// The subscription's own `DeliveryPolicy`, if it has one.
    pub delivery_policy: Option<String>,
}

/// The filter scope a subscription's attributes name (MessageAttributes by default).
fn scope_of(attributes: &BTreeMap<String, String>) -> FilterPolicyScope {
    attributes
        .get("FilterPolicyScope")
        .and_then(|s| FilterPolicyScope::parse(s))
        .unwrap_or(FilterPolicyScope::MessageAttributes)
}

/// Checks one subscription attribute (given at `Subscribe` or by
/// `SetSubscriptionAttributes`), with the others it will sit beside.
pub fn check_subscription_attribute(
    name: &str,
    value: &str,
    protocol: Protocol,
    topic_fifo: bool,
    others: &BTreeMap<String, String>,
) -> Result<(), TopicError> {
    match name {
        "RawMessageDelivery" => {
            let raw = boolean(name, value)?;
            if raw && !matches!(protocol, Protocol::Sqs | Protocol::Http | Protocol::Https) {
                return Err(invalid(
                    "Attributes",
                    format!(
                        "Delivery protocol [{}] does not support raw message delivery.",
                        protocol.name()
                    ),
                ));
            }
            Ok(())
        }
        "FilterPolicy" => {
            if value.is_empty() {
                return Ok(());
            }
            FilterPolicy::parse(value, scope_of(others))
                .map(|_| ())
                .map_err(|e| invalid("FilterPolicy", e))
        }
        "FilterPolicyScope" => {
            let scope = FilterPolicyScope::parse(value)
                .ok_or_else(|| invalid(name, "must be MessageAttributes or MessageBody"))?;
            match others.get("FilterPolicy").filter(|p| !p.is_empty()) {
                Some(policy) => FilterPolicy::parse(policy, scope)
                    .map(|_| ())
                    .map_err(|e| invalid("FilterPolicy", e)),
                None => Ok(()),
            }
        }
        "DeliveryPolicy" => {
            if !protocol.is_http() {
                return Err(invalid(
                    name,
                    format!(
                        "DeliveryPolicy is not supported for the {} protocol",
                        protocol.name()
                    ),
                ));
            }
            HttpPolicy::subscription(value, &HttpPolicy::default())
                .map(|_| ())
                .map_err(|e| invalid(name, e))
        }
        "RedrivePolicy" => {
            if value.is_empty() {
                return Ok(());
            }
            dead_letter_target(value).map(|_| ())
        }
        "SubscriptionRoleArn" => Ok(()),
        "ReplayPolicy" if topic_fifo => json_object(name, value),
        _ => Err(TopicError::InvalidParameter(
            "Invalid parameter: AttributeName".into(),
        )),
    }
}

/// The queue ARN a `RedrivePolicy` names.
fn dead_letter_target(value: &str) -> Result<String, TopicError> {
    let doc: Value = serde_json::from_str(value)
        .map_err(|e| invalid("RedrivePolicy", format!("is not valid JSON: {e}")))?;
    let target = doc
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("RedrivePolicy", "deadLetterTargetArn is missing"))?;
    let arn = crate::arn::Arn::parse(target).map_err(|e| invalid("RedrivePolicy", e))?;
    arn.queue_name().map_err(|_| {
        invalid(
            "RedrivePolicy",
            "deadLetterTargetArn must be an SQS queue ARN",
        )
    })?;
    Ok(target.to_string())
}

/// Compiles the attributes of a subscription (already checked).
pub fn compile(attributes: &BTreeMap<String, String>) -> Compiled {
    let filter = attributes
        .get("FilterPolicy")
        .filter(|p| !p.is_empty())
        .and_then(|p| FilterPolicy::parse(p, scope_of(attributes)).ok());
    Compiled {
        filter,
        raw: attributes
            .get("RawMessageDelivery")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        dead_letter: attributes
            .get("RedrivePolicy")
            .filter(|p| !p.is_empty())
            .and_then(|p| dead_letter_target(p).ok()),
        delivery_policy: attributes.get("DeliveryPolicy").cloned(),
    }
}

/// `GetSubscriptionAttributes`.
pub fn subscription_attributes(
    subscription: &Subscription,
    topic: Option<&Topic>,
    account: &str,
) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = subscription
        .attributes
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    map.insert("SubscriptionArn".into(), subscription.arn.clone());
    map.insert("TopicArn".into(), subscription.topic_arn.clone());
    map.insert("Owner".into(), account.to_string());
    map.insert(
        "SubscriptionPrincipal".into(),
        format!("arn:aws:iam::{account}:root"),
    );
    map.insert("Protocol".into(), subscription.protocol.name().into());
    map.insert("Endpoint".into(), subscription.endpoint.clone());
    map.insert(
        "PendingConfirmation".into(),
        (!subscription.confirmed).to_string(),
    );
    map.insert(
        "ConfirmationWasAuthenticated".into(),
        (!subscription.protocol.is_http()).to_string(),
    );
    map.entry("RawMessageDelivery".into())
        .or_insert_with(|| "false".into());
    if map.contains_key("FilterPolicy") {
        map.entry("FilterPolicyScope".into())
            .or_insert_with(|| "MessageAttributes".into());
    }
    if subscription.protocol.is_http() {
        let base = topic.map(topic_http_policy).unwrap_or_default();
        let effective = subscription
            .attributes
            .get("DeliveryPolicy")
            .and_then(|p| HttpPolicy::subscription(p, &base).ok())
            .unwrap_or(base);
        map.insert(
            "EffectiveDeliveryPolicy".into(),
            effective.subscription_json().to_string(),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_attributes_follow_sns_rules() {
        assert!(check_topic_attribute("DisplayName", "Hello", false, false).is_ok());
        assert!(check_topic_attribute("DisplayName", &"x".repeat(101), false, false).is_err());
        assert!(check_topic_attribute("Policy", "{}", false, false).is_ok());
        assert!(check_topic_attribute("Policy", "[]", false, false).is_err());
        assert!(check_topic_attribute("ContentBasedDeduplication", "true", true, false).is_ok());
        assert!(check_topic_attribute("ContentBasedDeduplication", "true", false, false).is_err());
        assert!(check_topic_attribute("ContentBasedDeduplication", "yes", true, false).is_err());
        assert!(check_topic_attribute("FifoTopic", "true", true, true).is_ok());
        assert!(check_topic_attribute("FifoTopic", "true", false, true).is_err());
        assert!(check_topic_attribute("FifoTopic", "true", true, false).is_err());
        assert!(
            check_topic_attribute("LambdaSuccessFeedbackSampleRate", "50", false, false).is_ok()
        );
        assert!(
            check_topic_attribute("LambdaSuccessFeedbackSampleRate", "101", false, false).is_err()
        );
        assert!(check_topic_attribute("SQSFailureFeedbackRoleArn", "arn:x", false, false).is_ok());
        assert!(check_topic_attribute("SQSFailureFeedbackSampleRate", "1", false, false).is_err());
        assert!(check_topic_attribute("Nope", "1", false, false).is_err());
    }

    #[test]
    fn subscription_attributes_follow_sns_rules() {
        let none = BTreeMap::new();
        let check =
            |n: &str, v: &str, p: Protocol| check_subscription_attribute(n, v, p, false, &none);
        assert!(check("RawMessageDelivery", "true", Protocol::Sqs).is_ok());
        assert!(check("RawMessageDelivery", "true", Protocol::Lambda).is_err());
        assert!(check("RawMessageDelivery", "false", Protocol::Lambda).is_ok());
        assert!(check("FilterPolicy", r#"{"a":["b"]}"#, Protocol::Sqs).is_ok());
        assert!(check("FilterPolicy", r#"{"a":"b"}"#, Protocol::Sqs).is_err());
        assert!(check("FilterPolicy", "", Protocol::Sqs).is_ok());
        assert!(check("FilterPolicyScope", "MessageBody", Protocol::Sqs).is_ok());
        assert!(check("FilterPolicyScope", "Body", Protocol::Sqs).is_err());
        assert!(
            check(
                "DeliveryPolicy",
                r#"{"healthyRetryPolicy":{"numRetries":1}}"#,
                Protocol::Http
            )
            .is_ok()
        );
        assert!(check("DeliveryPolicy", "{}", Protocol::Sqs).is_err());
        assert!(
            check(
                "RedrivePolicy",
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq"}"#,
                Protocol::Lambda
            )
            .is_ok()
        );
        assert!(
            check(
                "RedrivePolicy",
                r#"{"deadLetterTargetArn":"arn:aws:lambda:us-east-1:000000000000:function:f"}"#,
                Protocol::Lambda
            )
            .is_err()
        );
        assert!(check("ReplayPolicy", "{}", Protocol::Sqs).is_err());
        // A body-scope policy is checked against the body dialect.
        let body_scope: BTreeMap<String, String> =
            [("FilterPolicyScope".to_string(), "MessageBody".to_string())].into();
        assert!(
            check_subscription_attribute(
                "FilterPolicy",
                r#"{"order":{"kind":["x"]}}"#,
                Protocol::Sqs,
                false,
                &body_scope
            )
            .is_ok()
        );
    }
}
