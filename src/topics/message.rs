//! A published message and the shapes it is delivered in: SNS's JSON envelope (queues,
//! HTTP endpoints), the Lambda event (`{"Records":[{"EventSource":"aws:sns",...}]}`), raw
//! delivery, and the subscription confirmation an HTTP endpoint is sent.
//!
//! Messages are not signed: `Signature` and `SigningCertURL` are not sent in envelopes,
//! and are empty in Lambda events, whose typed readers expect the fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Protocol;
use crate::queues::Attribute;
use crate::timefmt::iso_timestamp;

/// What a delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    Notification,
    /// An HTTP endpoint is asked to confirm its subscription with this token.
    SubscriptionConfirmation {
        token: String,
    },
}

/// A message as published, kept until every delivery of it has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub kind: Kind,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    /// The message (`default` of a `MessageStructure: json` message).
    pub message: String,
    /// Per protocol messages of a `MessageStructure: json` message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_protocol: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Attribute>,
    pub timestamp_ms: u64,
    /// FIFO topics: the message's group, deduplication id and sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Where the URLs in messages point: the server's public address.
#[derive(Debug, Clone)]
pub struct Urls {
    pub base: String,
}

impl Urls {
    pub fn unsubscribe(&self, subscription_arn: &str) -> String {
        format!(
            "{}/?Action=Unsubscribe&SubscriptionArn={}",
            self.base,
            encode(subscription_arn)
        )
    }

    pub fn confirm(&self, topic_arn: &str, token: &str) -> String {
        format!(
            "{}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
            self.base,
            encode(topic_arn),
            encode(token)
        )
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Published {
    /// The message a subscriber of `protocol` gets: its own of a `json` structure, else
    /// the default.
    pub fn message_for(&self, protocol: Protocol) -> &str {
        self.per_protocol
            .get(protocol.name())
            .map_or(self.message.as_str(), String::as_str)
    }

    /// The message attributes as SNS's envelope and Lambda event show them.
    fn attributes_json(&self) -> Value {
        let map: Map<String, Value> = self
            .attributes
            .iter()
            .map(|(name, a)| {
                let value = a
                    .string_value
                    .clone()
                    .or_else(|| a.binary_value.clone())
                    .unwrap_or_default();
                (name.clone(), json!({ "Type": a.data_type, "Value": value }))
            })
            .collect();
        Value::Object(map)
    }

    /// SNS's JSON envelope, as queues and HTTP endpoints get it.
    pub fn envelope(&self, protocol: Protocol, subscription_arn: &str, urls: &Urls) -> String {
        let mut doc = Map::new();
        let mut put = |k: &str, v: Value| {
            doc.insert(k.to_string(), v);
        };
        match &self.kind {
            Kind::Notification => {
                put("Type", "Notification".into());
                put("MessageId", self.message_id.clone().into());
                if let Some(seq) = &self.sequence_number {
                    put("SequenceNumber", seq.clone().into());
                }
                put("TopicArn", self.topic_arn.clone().into());
                if let Some(subject) = &self.subject {
                    put("Subject", subject.clone().into());
                }
                put("Message", self.message_for(protocol).into());
                put("Timestamp", iso_timestamp(self.timestamp_ms).into());
                put("SignatureVersion", "1".into());
                put("UnsubscribeURL", urls.unsubscribe(subscription_arn).into());
                if !self.attributes.is_empty() {
                    put("MessageAttributes", self.attributes_json());
                }
            }
            Kind::SubscriptionConfirmation { token } => {
                put("Type", "SubscriptionConfirmation".into());
                put("MessageId", self.message_id.clone().into());
                put("Token", token.clone().into());
                put("TopicArn", self.topic_arn.clone().into());
                put("Message", self.message.clone().into());
                put("SubscribeURL", urls.confirm(&self.topic_arn, token).into());
                put("Timestamp", iso_timestamp(self.timestamp_ms).into());
                put("SignatureVersion", "1".into());
            }
        }
        Value::Object(doc).to_string()
    }

    /// The event a function subscribed to the topic is invoked with.
    pub fn lambda_event(&self, subscription_arn: &str, urls: &Urls) -> String {
        json!({
            "Records": [{
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": "Notification",
                    "MessageId": self.message_id,
                    "TopicArn": self.topic_arn,
                    "Subject": self.subject,
                    "Message": self.message_for(Protocol::Lambda),
                    "Timestamp": iso_timestamp(self.timestamp_ms),
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": "",
                    "UnsubscribeUrl": urls.unsubscribe(subscription_arn),
                    "MessageAttributes": self.attributes_json(),
                }
            }]
        })
        .to_string()
    }

    /// The size SNS counts against its 256 KiB limit: the message, its subject and its
    /// attributes' names, types and values.
    pub fn size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(name, a)| {
                name.len()
                    + a.data_type.len()
                    + a.string_value.as_ref().map_or(0, String::len)
                    + a.binary_value.as_ref().map_or(0, |b| b.len() * 3 / 4)
            })
            .sum();
        self.message.len()
            + self.per_protocol.values().map(String::len).sum::<usize>()
            + self.subject.as_ref().map_or(0, String::len)
            + attributes
    }
}

/// The text of a subscription confirmation message.
pub fn confirmation_text(topic_arn: &str) -> String {
    format!(
        "You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Published {
        Published {
            kind: Kind::Notification,
            message_id: "m-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:000000000000:t".into(),
            subject: Some("Hi".into()),
            message: "hello".into(),
            per_protocol: [("sqs".to_string(), "for queues".to_string())].into(),
            attributes: [(
                "color".to_string(),
                Attribute {
                    data_type: "String".into(),
                    string_value: Some("red".into()),
                    binary_value: None,
                },
            )]
            .into(),
            timestamp_ms: 1_700_000_000_123,
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            trace_id: None,
        }
    }

    fn urls() -> Urls {
        Urls {
            base: "http://127.0.0.1:9600".into(),
        }
    }

    #[test]
    fn envelopes_carry_the_message_for_their_protocol() {
        let p = published();
        let sub = "arn:aws:sns:us-east-1:000000000000:t:abc";
        let doc: Value = serde_json::from_str(&p.envelope(Protocol::Sqs, sub, &urls())).unwrap();
        assert_eq!(doc["Type"], "Notification");
        assert_eq!(doc["Message"], "for queues");
        assert_eq!(doc["Subject"], "Hi");
        assert_eq!(doc["Timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(doc["MessageAttributes"]["color"]["Value"], "red");
        assert_eq!(
            doc["UnsubscribeURL"],
            "http://127.0.0.1:9600/?Action=Unsubscribe&SubscriptionArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000%3At%3Aabc"
        );
        let http: Value = serde_json::from_str(&p.envelope(Protocol::Http, sub, &urls())).unwrap();
        assert_eq!(http["Message"], "hello");
    }

    #[test]
    fn lambda_events_have_the_sns_record_shape() {
        let p = Published {
            subject: None,
            ..published()
        };
        let doc: Value = serde_json::from_str(&p.lambda_event("arn:sub", &urls())).unwrap();
        let record = &doc["Records"][0];
        assert_eq!(record["EventSource"], "aws:sns");
        assert_eq!(record["EventSubscriptionArn"], "arn:sub");
        assert_eq!(record["Sns"]["Subject"], Value::Null);
        assert_eq!(record["Sns"]["Message"], "hello");
        assert_eq!(
            record["Sns"]["MessageAttributes"]["color"]["Type"],
            "String"
        );
    }

    #[test]
    fn confirmations_carry_the_token_and_the_url() {
        let p = Published {
            kind: Kind::SubscriptionConfirmation {
                token: "tok".into(),
            },
            message: confirmation_text("arn:t"),
            ..published()
        };
        let doc: Value =
            serde_json::from_str(&p.envelope(Protocol::Http, "pending", &urls())).unwrap();
        assert_eq!(doc["Type"], "SubscriptionConfirmation");
        assert_eq!(doc["Token"], "tok");
        assert!(
            doc["SubscribeURL"]
                .as_str()
                .unwrap()
                .ends_with("&Token=tok")
        );
        assert!(doc.get("UnsubscribeURL").is_none());
    }
}
