//! SNS subscription filter policies ("Amazon SNS message filtering", "Filter policy
//! constraints", "String value matching", "Numeric value matching", "Key matching",
//! "AND/OR logic"): a [`Pattern`] held to SNS's rules, and matched against either a
//! message's attributes or its JSON body, as the subscription's `FilterPolicyScope` says.
//!
//! SNS's rules on top of the common language:
//! - `MessageAttributes` policies are flat (a nested object is refused); `MessageBody`
//!   policies nest like event patterns; neither accepts `wildcard`.
//! - At most [`MAX_KEYS`] keys: the distinct top-level field names, those of `$or`
//!   branches at the top level included ("For a nested policy, only parent keys are
//!   counted").
//! - At most [`MAX_VALUE_COMBINATIONS`] combinations: each leaf counts its number of values
//!   times its nesting depth (1 at the top level), the fields of an object multiply, and the
//!   branches of a `$or` add up. This reproduces the guide's worked examples (`3 x 4 x 2 x 3
//!   = 72` for a three-level key with four values beside a two-level key with three).
//! - At most [`MAX_SIZE`] bytes of policy text (256 KB).
//!
//! Attributes are matched by their data type: `String` (and `String.*` custom types) as a
//! string, `Number` (and `Number.*`) as a number, `String.Array` (and `Number.Array`) as a
//! JSON array whose elements are matched any-of; `Binary` attributes are ignored, as if
//! absent. A `Number` that does not parse, or an array that does not, is matched as the
//! string it is. A `MessageBody` policy matches only a body that is a JSON object.

use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use super::error::{ErrorKind, PatternError};
use super::matcher::{FieldNode, ObjectNode};
use super::parse::Dialect;
use super::{Pattern, json};

/// Most keys a filter policy may name.
const MAX_KEYS: usize = 5;
/// Most combinations of values a filter policy may have.
const MAX_VALUE_COMBINATIONS: u64 = 150;
/// Largest filter policy, in bytes of JSON text.
const MAX_SIZE: usize = 256 * 1024;

/// What a subscription's filter policy is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterPolicyScope {
    /// The message attributes: the default.
    #[default]
    MessageAttributes,
    /// The message body, which must be a JSON object to match.
    MessageBody,
}

impl FilterPolicyScope {
    /// Reads the `FilterPolicyScope` subscription attribute.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "MessageAttributes" => Some(Self::MessageAttributes),
            "MessageBody" => Some(Self::MessageBody),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageAttributes => "MessageAttributes",
            Self::MessageBody => "MessageBody",
        }
    }
}

/// One message attribute as SNS carries it: its data type (`String`, `Number`, `Binary`,
/// `String.Array`, or a custom `Type.label`) and its string value (ignored for `Binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeValue<'a> {
    pub data_type: &'a str,
    pub value: &'a str,
}

impl AttributeValue<'_> {
    /// The attribute as the JSON value a policy sees; `None` for attributes SNS ignores.
    fn to_json(self) -> Option<Value> {
        let text = || Value::String(self.value.to_string());
        if self.data_type == "String.Array" || self.data_type == "Number.Array" {
            return Some(match serde_json::from_str(self.value) {
                Ok(array @ Value::Array(_)) => array,
                _ => text(),
            });
        }
        match self.data_type.split('.').next() {
            Some("String") => Some(text()),
            Some("Number") => Some(
                serde_json::from_str::<Number>(self.value)
                    .map(Value::Number)
                    .unwrap_or_else(|_| text()),
            ),
            _ => None,
        }
    }
}

/// A validated SNS filter policy and its scope.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    scope: FilterPolicyScope,
    pattern: Pattern,
}

impl FilterPolicy {
    /// Validates the `FilterPolicy` subscription attribute for `scope`.
    pub fn parse(text: &str, scope: FilterPolicyScope) -> Result<Self, PatternError> {
        if text.len() > MAX_SIZE {
            return Err(PatternError::whole(ErrorKind::TooLarge(MAX_SIZE)));
        }
        let dialect = match scope {
            FilterPolicyScope::MessageAttributes => Dialect::SnsAttributes,
            FilterPolicyScope::MessageBody => Dialect::SnsBody,
        };
        let pattern = Pattern::compile(&json(text)?, dialect)?;
        let mut keys = BTreeSet::new();
        top_level_keys(pattern.root(), &mut keys);
        if keys.len() > MAX_KEYS {
            return Err(PatternError::whole(ErrorKind::TooManyKeys(MAX_KEYS)));
        }
        if value_combinations(pattern.root(), 1) > MAX_VALUE_COMBINATIONS {
            return Err(PatternError::whole(ErrorKind::TooComplex));
        }
        Ok(Self { scope, pattern })
    }

    pub fn scope(&self) -> FilterPolicyScope {
        self.scope
    }

    /// Whether a published message is delivered: its attributes or its body are matched,
    /// as the scope says.
    pub fn matches_message<'a>(
        &self,
        body: &str,
        attributes: impl IntoIterator<Item = (&'a str, AttributeValue<'a>)>,
    ) -> bool {
        match self.scope {
            FilterPolicyScope::MessageAttributes => self.matches_attributes(attributes),
            FilterPolicyScope::MessageBody => self.matches_body(body),
        }
    }

    /// Matches message attributes, given as (name, attribute) pairs.
    pub fn matches_attributes<'a>(
        &self,
        attributes: impl IntoIterator<Item = (&'a str, AttributeValue<'a>)>,
    ) -> bool {
        let event: Map<String, Value> = attributes
            .into_iter()
            .filter_map(|(name, attribute)| Some((name.to_string(), attribute.to_json()?)))
            .collect();
        self.pattern.matches(&Value::Object(event))
    }

    /// Matches a message body; a body that is not a JSON object never matches.
    pub fn matches_body(&self, body: &str) -> bool {
        match serde_json::from_str::<Value>(body) {
            Ok(event @ Value::Object(_)) => self.pattern.matches(&event),
            _ => false,
        }
    }
}

/// The keys SNS counts: the top-level names, and those of top-level `$or` branches.
fn top_level_keys<'a>(node: &'a ObjectNode, keys: &mut BTreeSet<&'a str>) {
    keys.extend(node.fields.iter().map(|(name, _)| &**name));
    for branch in node.any_of.iter().flatten() {
        top_level_keys(branch, keys);
    }
}

/// SNS's count of value combinations for `node`, whose fields sit at nesting `depth`.
fn value_combinations(node: &ObjectNode, depth: u64) -> u64 {
    let fields = node
        .fields
        .iter()
        .map(|(_, field)| match field {
            FieldNode::Leaf(values) => u64::try_from(values.len())
                .unwrap_or(u64::MAX)
                .saturating_mul(depth),
            FieldNode::Object(inner) => value_combinations(inner, depth + 1),
        })
        .fold(1, u64::saturating_mul);
    let alternatives = node.any_of.as_ref().map_or(1, |branches| {
        branches
            .iter()
            .map(|branch| value_combinations(branch, depth))
            .fold(0, u64::saturating_add)
    });
    fields.saturating_mul(alternatives)
}
