//! Delivery retries: SNS's delivery policies, as pure functions.
//!
//! A failed delivery is retried in phases: `numNoDelayRetries` at once,
//! `numMinDelayRetries` after `minDelayTarget`, then a backoff from `minDelayTarget` to
//! `maxDelayTarget` (`backoffFunction`), then `numMaxDelayRetries` after
//! `maxDelayTarget`: `numRetries` retries in all. HTTP subscriptions take their policy
//! from the `DeliveryPolicy` of the subscription, else of the topic, else SNS's default
//! (3 retries 20 s apart); functions and queues take SNS's policy for AWS-managed
//! endpoints (3 at once, 2 after 1 s, 10 backing off to 20 s, then every 20 s: 100,015
//! attempts, about 23 days).

use serde_json::{Value, json};

/// SNS's largest `maxDelayTarget` (seconds).
const MAX_DELAY_TARGET_S: u64 = 3600;
/// SNS's largest `numRetries` of a delivery policy.
const MAX_RETRIES: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

impl Backoff {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "linear" => Self::Linear,
            "arithmetic" => Self::Arithmetic,
            "geometric" => Self::Geometric,
            "exponential" => Self::Exponential,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Arithmetic => "arithmetic",
            Self::Geometric => "geometric",
            Self::Exponential => "exponential",
        }
    }

    /// The share (0 to 1) of the way from the least to the largest delay at backoff retry
    /// `step` of `steps`.
    fn share(self, step: u32, steps: u32) -> f64 {
        let (j, n) = (f64::from(step), f64::from(steps.max(1)));
        match self {
            Self::Linear => j / n,
            Self::Arithmetic => (j * (j + 1.0)) / (n * (n + 1.0)),
            Self::Geometric => (j / n).powi(3),
            Self::Exponential => (2f64.powf(j) - 1.0) / (2f64.powf(n) - 1.0),
        }
    }
}

/// A retry policy (`healthyRetryPolicy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub num_retries: u32,
    pub no_delay: u32,
    pub min_delay_retries: u32,
    pub max_delay_retries: u32,
    pub min_delay_s: u64,
    pub max_delay_s: u64,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// SNS's default for HTTP endpoints.
    pub const HTTP_DEFAULT: Self = Self {
        num_retries: 3,
        no_delay: 0,
        min_delay_retries: 0,
        max_delay_retries: 0,
        min_delay_s: 20,
        max_delay_s: 20,
        backoff: Backoff::Linear,
    };

    /// SNS's policy for AWS-managed endpoints (functions, queues).
    pub const MANAGED: Self = Self {
        num_retries: 100_015,
        no_delay: 3,
        min_delay_retries: 2,
        max_delay_retries: 100_000,
        min_delay_s: 1,
        max_delay_s: 20,
        backoff: Backoff::Exponential,
    };

    /// The delay before retry `retry` (1 is the first retry); `None` once they are spent.
    pub fn delay_ms(&self, retry: u32) -> Option<u64> {
        if retry == 0 || retry > self.num_retries {
            return None;
        }
        let min = self.min_delay_s * 1000;
        let max = self.max_delay_s * 1000;
        if retry <= self.no_delay {
            return Some(0);
        }
        let past_min = retry - self.no_delay;
        if past_min <= self.min_delay_retries {
            return Some(min);
        }
        let backoff_steps = self
            .num_retries
            .saturating_sub(self.no_delay + self.min_delay_retries + self.max_delay_retries);
        let step = past_min - self.min_delay_retries;
        if step <= backoff_steps {
            let share = self.backoff.share(step, backoff_steps);
            return Some(min + ((max - min) as f64 * share).round() as u64);
        }
        Some(max)
    }

    /// Reads a `healthyRetryPolicy` object; the message says what is wrong.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let object = value
            .as_object()
            .ok_or("healthyRetryPolicy must be an object")?;
        for key in object.keys() {
            if ![
                "numRetries",
                "numNoDelayRetries",
                "numMinDelayRetries",
                "numMaxDelayRetries",
                "minDelayTarget",
                "maxDelayTarget",
                "backoffFunction",
            ]
            .contains(&key.as_str())
            {
                return Err(format!("healthyRetryPolicy has an unknown field {key}"));
            }
        }
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| format!("{name} must be a non-negative integer")),
            }
        };
        let policy = Self {
            num_retries: number("numRetries", 3)? as u32,
            no_delay: number("numNoDelayRetries", 0)? as u32,
            min_delay_retries: number("numMinDelayRetries", 0)? as u32,
            max_delay_retries: number("numMaxDelayRetries", 0)? as u32,
            min_delay_s: number("minDelayTarget", 20)?,
            max_delay_s: number("maxDelayTarget", 20)?,
            backoff: match object.get("backoffFunction") {
                None | Some(Value::Null) => Backoff::Linear,
                Some(Value::String(name)) => Backoff::parse(name).ok_or_else(|| {
                    format!(
                        "backoffFunction must be one of linear, arithmetic, geometric, exponential (not {name})"
                    )
                })?,
                Some(_) => return Err("backoffFunction must be a string".into()),
            },
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        if self.num_retries > MAX_RETRIES {
            return Err(format!("numRetries must be at most {MAX_RETRIES}"));
        }
        if self.min_delay_s < 1 || self.min_delay_s > self.max_delay_s {
            return Err("minDelayTarget must be at least 1 and at most maxDelayTarget".into());
        }
        if self.max_delay_s > MAX_DELAY_TARGET_S {
            return Err(format!(
                "maxDelayTarget must be at most {MAX_DELAY_TARGET_S}"
            ));
        }
        if u64::from(self.no_delay)
            + u64::from(self.min_delay_retries)
            + u64::from(self.max_delay_retries)
            > u64::from(self.num_retries)
        {
            return Err(
                "numNoDelayRetries + numMinDelayRetries + numMaxDelayRetries must not exceed numRetries"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn to_json(self) -> Value {
        json!({
            "minDelayTarget": self.min_delay_s,
            "maxDelayTarget": self.max_delay_s,
            "numRetries": self.num_retries,
            "numMaxDelayRetries": self.max_delay_retries,
            "numNoDelayRetries": self.no_delay,
            "numMinDelayRetries": self.min_delay_retries,
            "backoffFunction": self.backoff.name(),
        })
    }
}

/// An HTTP delivery policy: its retry policy and the `Content-Type` of notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPolicy {
    pub retry: RetryPolicy,
    pub content_type: String,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::HTTP_DEFAULT,
            content_type: DEFAULT_CONTENT_TYPE.into(),
        }
    }
}

const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// The content types `requestPolicy.headerContentType` may name.
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "application/json",
    "application/xml",
    "text/plain; charset=UTF-8",
    "application/json; charset=UTF-8",
    "application/xml; charset=UTF-8",
];

impl HttpPolicy {
    /// A subscription's `DeliveryPolicy` (`healthyRetryPolicy`, `throttlePolicy`,
    /// `requestPolicy`), over `base` (the topic's).
    pub fn subscription(text: &str, base: &HttpPolicy) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("DeliveryPolicy is not JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("DeliveryPolicy must be an object")?;
        let mut policy = base.clone();
        for (key, value) in object {
            match key.as_str() {
                "healthyRetryPolicy" if !value.is_null() => {
                    policy.retry = RetryPolicy::from_json(value)?
                }
                "requestPolicy" if !value.is_null() => {
                    policy.content_type = content_type(value)?.unwrap_or(policy.content_type)
                }
                "healthyRetryPolicy" | "requestPolicy" | "throttlePolicy" | "sicklyRetryPolicy"
                | "guaranteed" => {}
                other => return Err(format!("DeliveryPolicy has an unknown field {other}")),
            }
        }
        Ok(policy)
    }

    /// A topic's `DeliveryPolicy`: its `http` section (`defaultHealthyRetryPolicy`,
    /// `defaultRequestPolicy`, ...).
    pub fn topic(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("DeliveryPolicy is not JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("DeliveryPolicy must be an object")?;
        let mut policy = Self::default();
        for (section, value) in object {
            if section != "http" && section != "https" {
                continue;
            }
            let http = value
                .as_object()
                .ok_or("DeliveryPolicy.http must be an object")?;
            if let Some(retry) = http
                .get("defaultHealthyRetryPolicy")
                .filter(|v| !v.is_null())
            {
                policy.retry = RetryPolicy::from_json(retry)?;
            }
            if let Some(request) = http.get("defaultRequestPolicy").filter(|v| !v.is_null()) {
                policy.content_type = content_type(request)?.unwrap_or(policy.content_type);
            }
        }
        Ok(policy)
    }

    /// The `EffectiveDeliveryPolicy` of a subscription.
    pub fn subscription_json(&self) -> Value {
        json!({
            "healthyRetryPolicy": self.retry.to_json(),
            "sicklyRetryPolicy": null,
            "throttlePolicy": null,
            "requestPolicy": { "headerContentType": self.content_type },
            "guaranteed": false,
        })
    }

    /// The `EffectiveDeliveryPolicy` of a topic.
    pub fn topic_json(&self) -> Value {
        json!({
            "http": {
                "defaultHealthyRetryPolicy": self.retry.to_json(),
                "sicklyRetryPolicy": null,
                "throttlePolicy": null,
                "defaultRequestPolicy": { "headerContentType": self.content_type },
                "disableSubscriptionOverrides": false,
            }
        })
    }
}

fn content_type(request: &Value) -> Result<Option<String>, String> {
    match request.get("headerContentType") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if CONTENT_TYPES.contains(&t.as_str()) => Ok(Some(t.clone())),
        Some(other) => Err(format!(
            "headerContentType {other} is not one of {}",
            CONTENT_TYPES.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_http_policy_retries_three_times_20_s_apart() {
        let p = RetryPolicy::HTTP_DEFAULT;
        assert_eq!(
            (1..=4).map(|r| p.delay_ms(r)).collect::<Vec<_>>(),
            vec![Some(20_000), Some(20_000), Some(20_000), None]
        );
        assert_eq!(p.delay_ms(0), None);
    }

    #[test]
    fn phases_come_in_order() {
        let p = RetryPolicy {
            num_retries: 8,
            no_delay: 2,
            min_delay_retries: 1,
            max_delay_retries: 2,
            min_delay_s: 1,
            max_delay_s: 9,
            backoff: Backoff::Linear,
        };
        let delays: Vec<_> = (1..=9).map(|r| p.delay_ms(r)).collect();
        assert_eq!(
            delays,
            vec![
                Some(0),
                Some(0),
                Some(1000),
                Some(3667),
                Some(6333),
                Some(9000),
                Some(9000),
                Some(9000),
                None
            ]
        );
    }

    #[test]
    fn the_managed_policy_backs_off_to_20_s() {
        let p = RetryPolicy::MANAGED;
        assert_eq!(p.delay_ms(1), Some(0));
        assert_eq!(p.delay_ms(4), Some(1000));
        assert_eq!(p.delay_ms(15), Some(20_000));
        assert_eq!(p.delay_ms(1000), Some(20_000));
        assert_eq!(p.delay_ms(100_016), None);
        let backoff: Vec<u64> = (6..=15).map(|r| p.delay_ms(r).unwrap()).collect();
        assert!(backoff.windows(2).all(|w| w[0] <= w[1]), "{backoff:?}");
    }

    #[test]
    fn policies_are_read_and_checked() {
        let p = HttpPolicy::subscription(
            r#"{"healthyRetryPolicy":{"numRetries":1,"minDelayTarget":1,"maxDelayTarget":1,"backoffFunction":"exponential"},
                "requestPolicy":{"headerContentType":"application/json"}}"#,
            &HttpPolicy::default(),
        )
        .unwrap();
        assert_eq!(p.retry.num_retries, 1);
        assert_eq!(p.retry.backoff, Backoff::Exponential);
        assert_eq!(p.content_type, "application/json");
        for bad in [
            "nope",
            "[]",
            r#"{"healthyRetryPolicy":{"numRetries":101}}"#,
            r#"{"healthyRetryPolicy":{"minDelayTarget":0}}"#,
            r#"{"healthyRetryPolicy":{"minDelayTarget":30,"maxDelayTarget":20}}"#,
            r#"{"healthyRetryPolicy":{"numRetries":2,"numNoDelayRetries":3}}"#,
            r#"{"healthyRetryPolicy":{"backoffFunction":"cubic"}}"#,
            r#"{"healthyRetryPolicy":{"numRetries":-1}}"#,
            r#"{"healthyRetryPolicy":{"retries":1}}"#,
            r#"{"requestPolicy":{"headerContentType":"image/png"}}"#,
            r#"{"unknown":1}"#,
        ] {
            assert!(
                HttpPolicy::subscription(bad, &HttpPolicy::default()).is_err(),
                "{bad}"
            );
        }
        let topic = HttpPolicy::topic(
            r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":5,"minDelayTarget":2,"maxDelayTarget":4}}}"#,
        )
        .unwrap();
        assert_eq!(topic.retry.num_retries, 5);
        assert_eq!(
            topic.topic_json()["http"]["defaultHealthyRetryPolicy"]["maxDelayTarget"],
            4
        );
    }
}
