//! Why a pattern, a filter policy or a set of filter criteria was refused: [`PatternError`]
//! is what went wrong ([`ErrorKind`]) and where (a path such as `detail.state[1]`).
//!
//! The messages follow the wording of EventBridge's `InvalidEventPatternException` and of
//! SNS's `InvalidParameter` filter policy errors where those are known, without their
//! prefixes: the API that reports the error adds its own (`Event pattern is not valid.
//! Reason: ...`, `Invalid parameter: FilterPolicy: ...`).

use std::fmt;

/// A refused pattern: what is wrong, and where in the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    kind: ErrorKind,
    path: String,
}

impl PatternError {
    pub(super) fn new(kind: ErrorKind, path: &str) -> Self {
        Self {
            kind,
            path: path.to_string(),
        }
    }

    /// An error about the pattern as a whole.
    pub(super) fn whole(kind: ErrorKind) -> Self {
        Self::new(kind, "")
    }

    /// The same error, seen from a container: `prefix` is put in front of the path.
    pub(super) fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where the problem is: field names joined by `.`, `[i]` for the i-th element of an
    /// array (from 0). Empty when the problem is the pattern as a whole.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{} (at {})", self.kind, self.path)
        }
    }
}

impl std::error::Error for PatternError {}

/// What is wrong with a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("Pattern is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("Pattern must be a JSON object")]
    NotAnObject,
    #[error("\"{0}\" must be an object or an array")]
    NotObjectOrArray(String),
    #[error("Empty objects are not allowed")]
    EmptyObject,
    #[error("Empty arrays are not allowed")]
    EmptyArray,
    #[error("Match value must be String, number, true, false, null, or a match expression")]
    InvalidMatchValue,
    #[error("Match expression is empty")]
    EmptyMatchExpression,
    #[error("Only one key allowed in match expression")]
    MultipleOperators,
    #[error("Unrecognized match type {0}")]
    UnknownOperator(String),
    /// An operator given the wrong kind of value: `prefix` with a number, `exists` with a
    /// string.
    #[error("{operator} match pattern must be {expected}")]
    InvalidOperand {
        operator: &'static str,
        expected: &'static str,
    },
    #[error("{0}")]
    InvalidNumeric(String),
    #[error("Invalid anything-but expression: {0}")]
    InvalidAnythingBut(String),
    #[error("Invalid wildcard pattern: {0}")]
    InvalidWildcard(String),
    #[error("Invalid CIDR block {0}")]
    InvalidCidr(String),
    #[error("Invalid $or: {0}")]
    InvalidOr(&'static str),
    #[error("\"{0}\" is a reserved keyword and cannot be used as a field name inside $or")]
    ReservedFieldInOr(String),
    #[error("Pattern is nested more than {0} levels deep")]
    TooDeep(usize),
    #[error("Pattern is too complex: $or expands into more than {0} rule combinations")]
    TooManyCombinations(u64),
    #[error("{0} is not supported in {1}")]
    Unsupported(&'static str, &'static str),
    /// SNS: more keys than a filter policy may name.
    #[error("Filter policy can not have more than {0} keys")]
    TooManyKeys(usize),
    /// SNS: more combinations of values than a filter policy may have.
    #[error("Filter policy is too complex")]
    TooComplex,
    /// SNS: a filter policy over the size limit (in bytes).
    #[error("Filter policy is larger than {0} bytes")]
    TooLarge(usize),
    #[error("Filter policy scope MessageAttributes does not support nested filter policy")]
    NestedAttributePolicy,
    /// Lambda: `FilterCriteria` of the wrong shape.
    #[error("Invalid filter criteria: {0}")]
    InvalidFilterCriteria(&'static str),
    #[error("Filter criteria can not have more than {0} filters")]
    TooManyFilters(usize),
}
