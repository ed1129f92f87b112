//! Event patterns: the JSON matching language shared by EventBridge-style event buses,
//! SNS subscription filter policies and Lambda event source filters, compiled once and
//! matched against JSON events.
//!
//! This module owns the language, its validation and its evaluation. [`Pattern`] is an
//! EventBridge event pattern; [`FilterPolicy`] holds a pattern to SNS's extra rules and
//! matches message attributes or bodies; [`FilterCriteria`] is a Lambda event source
//! mapping's list of patterns and matches records. Refusals are [`PatternError`]s.
//!
//! # The language
//!
//! A pattern is a JSON object shaped like the events it matches ("Amazon EventBridge event
//! patterns", "Content filtering in Amazon EventBridge event patterns"):
//! - every field named in a pattern object must match (AND); fields the pattern does not
//!   name are ignored; a field absent from the event does not match, except with
//!   `exists: false`;
//! - a field's value is either a nested pattern object or a non-empty array whose elements
//!   are alternatives (OR): a string, number, `true`, `false` or `null` matching that exact
//!   value, or one match expression:
//!   `{"prefix": s}`, `{"prefix": {"equals-ignore-case": s}}`, `{"suffix": s}`,
//!   `{"suffix": {"equals-ignore-case": s}}`, `{"equals-ignore-case": s}`,
//!   `{"wildcard": s}`, `{"numeric": [op, n]}` or `{"numeric": [">"|">=", lo, "<"|"<=",
//!   hi]}` with `op` one of `=`, `<`, `<=`, `>`, `>=`, `{"cidr": "net/bits"}`,
//!   `{"exists": bool}`, and `{"anything-but": x}` where `x` is a string, a number, a list
//!   of strings or of numbers, or `{"prefix"|"suffix"|"equals-ignore-case"|"wildcard":
//!   string or list of strings}`;
//! - `"$or": [pattern, pattern, ...]` (at least two objects), at any level, matches when
//!   any of its patterns matches at that level.
//!
//! # Choices where the documentation is silent or dated
//!
//! - Arrays of objects are matched consistently: all the fields of one pattern object must
//!   be satisfied by the same array element (event-ruler's `rulesForJSONEvent`), so
//!   `{"d": {"a": [1], "b": [2]}}` does not match `{"d": [{"a": 1}, {"b": 2}]}`. Nested
//!   arrays are flattened. Where a nested pattern meets no object at all (absent, a scalar,
//!   an empty array), its fields count as absent. `matcher.rs` states the full rules.
//! - A leaf's values are the scalars at its path, arrays flattened; a field whose value is
//!   an object (or an array of only objects, or `[]`) has no value there: `exists: true`
//!   needs at least one value (`null` counts), `exists: false` needs none.
//! - Numbers compare by value: `300`, `300.0` and `3.0e2` are equal. (The EventBridge and
//!   Lambda guides say exact values compare by their string representation; event-ruler,
//!   the matching library EventBridge publishes, compiles an exact number to a numeric
//!   equality as well, and the SNS guide matches `301.5` with `3.015e2`.) Integers that fit
//!   in 64 bits compare exactly; everything else, and every `numeric` bound, as IEEE-754
//!   doubles over their whole range (no ±5e9 clamp, no SNS five-decimal rounding). Types
//!   never mix: `"300"` is not `300`.
//! - `anything-but` matches a field that has a value not left out, of any type
//!   (`{"anything-but": [100]}` matches `"abc"`, as in event-ruler); its string forms
//!   never leave out numbers, booleans or `null`. An array matches when any element does.
//! - `wildcard`: `*` is any run of characters, none included; `\*` is an asterisk and `\\`
//!   a backslash; `**` and any other escape are refused, as EventBridge does.
//! - `equals-ignore-case` and the `equals-ignore-case` forms compare Unicode lowercase.
//! - `cidr` takes IPv4 and IPv6, prefix lengths up to 32 and 128 (a single address
//!   included), host bits ignored. An exact string that is an IP address literal matches
//!   the same address however written (`::1`, `0:0:0:0:0:0:0:1`), as in event-ruler.
//! - A key given twice in a pattern keeps its last value (serde_json, and what the
//!   EventBridge and Lambda guides say). A key with dots is a plain key, not a path:
//!   `{"a.b": [1]}` matches `{"a.b": 1}` only (event-ruler and SNS also read it as the path
//!   `a` then `b`, an accident of their flattening that they warn against relying on).
//! - Refused: `{}` anywhere, `[]`, patterns more than [`MAX_DEPTH`] levels deep, and `$or`s
//!   expanding into more than [`MAX_COMBINATIONS`] plain rules (EventBridge's limit). `$or`
//!   is always the operator, never a field name; its branches may not use operator names
//!   (`prefix`, `numeric`, ...) as field names.
//! - An event whose root is an array matches when one of its objects does.

mod error;
mod lambda;
mod matcher;
mod parse;
mod ruleset;
mod sns;
mod values;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;

pub use error::{ErrorKind, PatternError};
pub use ruleset::RuleSet;
// Not every adapter has its caller yet (see the module's `dead_code` allowance).
#[allow(unused_imports)]
pub use lambda::{DEFAULT_MAX_FILTERS, FilterCriteria};
#[allow(unused_imports)]
pub use sns::{AttributeValue, FilterPolicy, FilterPolicyScope};

use matcher::{ObjectNode, Overlay};
use parse::Dialect;

/// Deepest nesting of pattern objects and `$or` branches a pattern may have.
pub const MAX_DEPTH: usize = 64;

/// Most plain rules a pattern's `$or`s may expand into (EventBridge's limit; "Content
/// filtering in Amazon EventBridge event patterns").
pub const MAX_COMBINATIONS: u64 = 1000;

/// A compiled, validated event pattern. Cheap to clone and to share between threads.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Arc<ObjectNode>,
}

impl Pattern {
    /// Compiles an event pattern from its JSON text.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        Self::from_value(&json(text)?)
    }

    /// Compiles an event pattern already parsed as JSON.
    pub fn from_value(pattern: &Value) -> Result<Self, PatternError> {
        Self::compile(pattern, Dialect::EventBridge)
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches_value(Some(event))
    }

    fn compile(pattern: &Value, dialect: Dialect) -> Result<Self, PatternError> {
        Ok(Self {
            root: Arc::new(parse::compile(pattern, dialect)?),
        })
    }

    fn root(&self) -> &ObjectNode {
        &self.root
    }

    /// Whether the object `event` matches when its top-level field `name` reads as `value`.
    fn matches_overlaid(&self, event: &Value, name: &str, value: &Value) -> bool {
        self.root.matches_in(&Overlay {
            base: event.as_object(),
            name,
            value,
        })
    }
}

/// Pattern text as JSON, or the refusal that it is not JSON.
fn json(text: &str) -> Result<Value, PatternError> {
    serde_json::from_str(text)
        .map_err(|e| PatternError::whole(ErrorKind::InvalidJson(e.to_string())))
}
