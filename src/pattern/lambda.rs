//! Lambda event filtering ("Lambda event filtering"): an event source mapping's
//! `FilterCriteria`, `{"Filters": [{"Pattern": "<pattern as a JSON string>"}, ...]}`, whose
//! patterns use the EventBridge syntax. A record passes when any filter matches it; no
//! filters at all pass everything.
//!
//! The data field of a record (`body` for SQS) is a string that may hold JSON, and the guide
//! ("Properly filtering Amazon SQS messages") compares its format with the format of the
//! filter's pattern for that field:
//! - no pattern on the field: the rest of the record is filtered;
//! - a JSON payload and a nested pattern (`"body": {...}`): the pattern is matched against
//!   the parsed payload;
//! - a plain-string payload and a leaf pattern (`"body": [...]`): against the string;
//! - a mismatch (JSON payload, leaf pattern; plain payload, nested pattern): the record is
//!   dropped, whatever the rest of the pattern says.
//!
//! A payload counts as JSON when it parses as a JSON object or array; a bare JSON scalar
//! (`42`, `"text"`, `true`) is plain text. A filter whose `$or` branches use both forms
//! for the field matches each branch against the form it expects.

use std::borrow::Cow;

use serde_json::Value;

use super::Pattern;
use super::error::{ErrorKind, PatternError};
use super::matcher::{FieldNode, ObjectNode};

/// Filters an event source mapping may have unless its quota was raised (to at most 10).
pub const DEFAULT_MAX_FILTERS: usize = 5;

/// A validated `FilterCriteria`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterCriteria {
    filters: Vec<Pattern>,
}

impl FilterCriteria {
    /// Reads `FilterCriteria` as the Lambda API takes it, with at most
    /// [`DEFAULT_MAX_FILTERS`] filters. `{}` and `{"Filters": []}` are no filtering.
    pub fn parse(criteria: &Value) -> Result<Self, PatternError> {
        Self::parse_with_limit(criteria, DEFAULT_MAX_FILTERS)
    }

    /// Reads `FilterCriteria`, allowing up to `max_filters` filters.
    pub fn parse_with_limit(criteria: &Value, max_filters: usize) -> Result<Self, PatternError> {
        let invalid =
            |why, path: &str| PatternError::new(ErrorKind::InvalidFilterCriteria(why), path);
        let Value::Object(fields) = criteria else {
            return Err(invalid("FilterCriteria must be an object", ""));
        };
        let Some(filters) = fields.get("Filters") else {
            return Ok(Self::default());
        };
        let Value::Array(filters) = filters else {
            return Err(invalid("Filters must be an array", "Filters"));
        };
        if filters.len() > max_filters {
            return Err(PatternError::new(
                ErrorKind::TooManyFilters(max_filters),
                "Filters",
            ));
        }
        let filters = filters
            .iter()
            .enumerate()
            .map(|(i, filter)| {
                let here = format!("Filters[{i}].Pattern");
                let text = filter
                    .get("Pattern")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("each filter needs a Pattern string", &here))?;
                Pattern::parse(text).map_err(|e| e.within(&here))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { filters })
    }

    /// Whether there are no filters (everything passes).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.filters
    }

    /// Whether `event` passes, as it is: no payload parsing.
    pub fn matches(&self, event: &Value) -> bool {
        self.is_empty() || self.filters.iter().any(|p| p.matches(event))
    }

    /// Whether an SQS record, as Lambda hands it to the function (`body` a string), passes.
    pub fn matches_sqs_record(&self, record: &Value) -> bool {
        self.matches_with_payload(record, "body")
    }

    /// Whether `record` passes when its top-level field `field` is a payload string that
    /// may hold JSON, under the rules above.
    pub fn matches_with_payload(&self, record: &Value, field: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut payload: Option<Option<Cow<'_, Value>>> = None;
        self.filters.iter().any(|pattern| {
            let shape = shape_of(pattern.root(), field);
            if !shape.text && !shape.json {
                return pattern.matches(record);
            }
            match payload.get_or_insert_with(|| as_json(record.get(field))) {
                Some(json) => shape.json && pattern.matches_overlaid(record, field, json),
                None => shape.text && pattern.matches(record),
            }
        })
    }
}

/// The payload as JSON, when it is an object or an array (or a string holding one).
fn as_json(payload: Option<&Value>) -> Option<Cow<'_, Value>> {
    match payload? {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .map(Cow::Owned),
        structured @ (Value::Object(_) | Value::Array(_)) => Some(Cow::Borrowed(structured)),
        _ => None,
    }
}

/// How a pattern constrains a top-level field: as text (a leaf list), as JSON (a nested
/// pattern), or both in different `$or` branches.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    text: bool,
    json: bool,
}

fn shape_of(node: &ObjectNode, field: &str) -> Shape {
    let mut shape = Shape::default();
    collect_shape(node, field, &mut shape);
    shape
}

fn collect_shape(node: &ObjectNode, field: &str, shape: &mut Shape) {
    for (name, value) in &node.fields {
        if **name == *field {
            match value {
                FieldNode::Leaf(_) => shape.text = true,
                FieldNode::Object(_) => shape.json = true,
            }
        }
    }
    for branch in node.any_of.iter().flatten() {
        collect_shape(branch, field, shape);
    }
}
