//! The compiled form of a pattern and its evaluation against an event.
//!
//! A pattern compiles to an [`ObjectNode`]: fields that must all match, plus at most one
//! `$or` of alternative nodes judged against the same object. A field is either a nested
//! [`ObjectNode`] or a leaf list of [`Matcher`]s, any one of which may match. Evaluation
//! walks the event once along the pattern's paths, borrowing from it and allocating
//! nothing.
//!
//! Arrays in the event are where the rules need care:
//! - a leaf field's values are the scalars at its path, with arrays (nested ones too)
//!   flattened: `"tags": ["a", ["b"]]` has the values `a` and `b`;
//! - a nested pattern applied to an array is applied to each object in it (nested arrays
//!   flattened), and must match within one element: the fields of one pattern object are
//!   never satisfied by two different elements ("array consistency", as in event-ruler's
//!   `rulesForJSONEvent`);
//! - where the path holds no object at all (absent, a scalar, an empty array) a nested
//!   pattern is judged as if its fields were all absent, so only `exists: false` can
//!   succeed there.

use serde_json::{Map, Value};

use super::values::{
    Cidr, Literal, NumericTest, Wildcard, ends_with_ignore_case, equals_ignore_case,
    starts_with_ignore_case,
};

/// A pattern object: every field must match, and, if present, one of the `$or` branches.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ObjectNode {
    pub(super) fields: Vec<(Box<str>, FieldNode)>,
    pub(super) any_of: Option<Vec<ObjectNode>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum FieldNode {
    /// `"name": [ ... ]`: any of the matchers, against any of the field's values.
    Leaf(Vec<Matcher>),
    /// `"name": { ... }`.
    Object(ObjectNode),
}

/// One element of a leaf list.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Matcher {
    Exact(Literal),
    Prefix(Box<str>),
    /// Operand stored folded (see [`super::values::fold`]), as for the other `IgnoreCase`s.
    PrefixIgnoreCase(Box<str>),
    Suffix(Box<str>),
    SuffixIgnoreCase(Box<str>),
    EqualsIgnoreCase(Box<str>),
    Wildcard(Wildcard),
    Numeric(NumericTest),
    Cidr(Cidr),
    /// Judged on the field as a whole (does it have a value?), not on a value.
    Exists(bool),
    AnythingBut(Exclusion),
}

/// What an `anything-but` leaves out.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Exclusion {
    Values(Vec<Literal>),
    Prefixes(Vec<Box<str>>),
    Suffixes(Vec<Box<str>>),
    /// Folded operands.
    IgnoreCase(Vec<Box<str>>),
    Wildcards(Vec<Wildcard>),
}

/// Where a pattern object looks its fields up: an event object, nothing, or an event
/// object with one top-level field seen through a replacement (see [`Overlay`]).
pub(super) trait Scope {
    fn field(&self, name: &str) -> Option<&Value>;
}

impl Scope for Option<&Map<String, Value>> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.and_then(|map| map.get(name))
    }
}

/// An event object in which the field `name` reads as `value` instead: how Lambda sees an
/// SQS record whose `body` string holds JSON.
pub(super) struct Overlay<'a> {
    pub(super) base: Option<&'a Map<String, Value>>,
    pub(super) name: &'a str,
    pub(super) value: &'a Value,
}

impl Scope for Overlay<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        if name == self.name {
            Some(self.value)
        } else {
            self.base.field(name)
        }
    }
}

impl ObjectNode {
    /// Whether `event` (the whole event, or the value at this node's path) matches.
    pub(super) fn matches_value(&self, event: Option<&Value>) -> bool {
        let mut saw_object = false;
        let hit = event.is_some_and(|v| {
            any_object(v, &mut |object| {
                saw_object = true;
                self.matches_in(&Some(object))
            })
        });
        hit || (!saw_object && self.matches_in(&None::<&Map<String, Value>>))
    }

    /// Whether the fields in `scope` match this node.
    pub(super) fn matches_in<S: Scope>(&self, scope: &S) -> bool {
        self.fields.iter().all(|(name, field)| {
            let value = scope.field(name);
            match field {
                FieldNode::Leaf(matchers) => leaf_matches(matchers, value),
                FieldNode::Object(node) => node.matches_value(value),
            }
        }) && self
            .any_of
            .as_ref()
            .is_none_or(|branches| branches.iter().any(|b| b.matches_in(scope)))
    }
}

/// Whether a leaf list matches the field holding `value` (`None`: absent).
fn leaf_matches(matchers: &[Matcher], value: Option<&Value>) -> bool {
    let mut has_value = false;
    let hit = value.is_some_and(|v| {
        any_scalar(v, &mut |scalar| {
            has_value = true;
            matchers.iter().any(|m| m.matches(scalar))
        })
    });
    hit || matchers
        .iter()
        .any(|m| matches!(m, Matcher::Exists(wanted) if *wanted == has_value))
}

/// Calls `f` on the scalars of `v` (flattening arrays) until it returns true.
fn any_scalar<F: FnMut(&Value) -> bool>(v: &Value, f: &mut F) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|item| any_scalar(item, f)),
        Value::Object(_) => false,
        scalar => f(scalar),
    }
}

/// Calls `f` on the objects of `v` (flattening arrays) until it returns true.
fn any_object<F: FnMut(&Map<String, Value>) -> bool>(v: &Value, f: &mut F) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|item| any_object(item, f)),
        Value::Object(object) => f(object),
        _ => false,
    }
}

impl Matcher {
    /// Whether one scalar value of a field satisfies this matcher.
    fn matches(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Self::Exact(literal) => literal.matches(value),
            Self::Prefix(p) => text.is_some_and(|s| s.starts_with(&**p)),
            Self::PrefixIgnoreCase(p) => text.is_some_and(|s| starts_with_ignore_case(s, p)),
            Self::Suffix(p) => text.is_some_and(|s| s.ends_with(&**p)),
            Self::SuffixIgnoreCase(p) => text.is_some_and(|s| ends_with_ignore_case(s, p)),
            Self::EqualsIgnoreCase(p) => text.is_some_and(|s| equals_ignore_case(s, p)),
            Self::Wildcard(w) => text.is_some_and(|s| w.matches(s)),
            Self::Numeric(test) => value.as_number().is_some_and(|n| test.test(n)),
            Self::Cidr(block) => text.is_some_and(|s| block.contains(s)),
            Self::Exists(_) => false,
            Self::AnythingBut(exclusion) => !exclusion.excludes(value),
        }
    }
}

impl Exclusion {
    /// Whether `value` is one of the things left out. The string forms leave out only
    /// strings, so any number, boolean or `null` gets through them.
    fn excludes(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Self::Values(literals) => literals.iter().any(|l| l.matches(value)),
            Self::Prefixes(ps) => text.is_some_and(|s| ps.iter().any(|p| s.starts_with(&**p))),
            Self::Suffixes(ps) => text.is_some_and(|s| ps.iter().any(|p| s.ends_with(&**p))),
            Self::IgnoreCase(ps) => {
                text.is_some_and(|s| ps.iter().any(|p| equals_ignore_case(s, p)))
            }
            Self::Wildcards(ws) => text.is_some_and(|s| ws.iter().any(|w| w.matches(s))),
        }
    }
}
