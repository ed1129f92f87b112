//! Validation and compilation: a pattern as JSON becomes the matcher tree of
//! [`super::matcher`], or a [`PatternError`] saying what is wrong and where.
//!
//! Everything a service would refuse is refused here, once, so that matching never meets a
//! malformed pattern: leaves that are not arrays, empty objects and arrays, unknown or
//! doubled operators, operands of the wrong type, numeric ranges that are out of order or
//! empty, bad wildcards and CIDR blocks, `$or` that is not an array of at least two objects,
//! and patterns nested too deep or expanding into too many `$or` combinations. The
//! [`Dialect`] adds each service's own refusals on top.

use serde_json::{Map, Value};

use super::error::{ErrorKind, PatternError};
use super::matcher::{Exclusion, FieldNode, Matcher, ObjectNode};
use super::values::{Bound, Cidr, Literal, Num, NumericTest, Wildcard, fold};
use super::{MAX_COMBINATIONS, MAX_DEPTH};

/// The field name that makes an array of objects a disjunction.
pub(super) const OR: &str = "$or";

/// Names that cannot be field names directly inside a `$or` branch: the operators and the
/// numeric comparisons, so that a misplaced match expression is refused, not taken for a
/// field.
const RESERVED_IN_OR: &[&str] = &[
    "anything-but",
    "cidr",
    "equals-ignore-case",
    "exactly",
    "exists",
    "numeric",
    "prefix",
    "suffix",
    "wildcard",
    "=",
    "<",
    "<=",
    ">",
    ">=",
];

/// Whose rules a pattern is held to, beyond the common language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// EventBridge event patterns, and Lambda filter criteria (which use the same syntax).
    EventBridge,
    /// An SNS filter policy on message attributes: flat, no `wildcard`.
    SnsAttributes,
    /// An SNS filter policy on the message body: nested, no `wildcard`.
    SnsBody,
}

/// Compiles a pattern already parsed as JSON.
pub(super) fn compile(pattern: &Value, dialect: Dialect) -> Result<ObjectNode, PatternError> {
    let Value::Object(fields) = pattern else {
        return Err(PatternError::whole(ErrorKind::NotAnObject));
    };
    let root = Compiler { dialect }.object(fields, "", 1)?;
    if combinations(&root) > MAX_COMBINATIONS {
        return Err(PatternError::whole(ErrorKind::TooManyCombinations(
            MAX_COMBINATIONS,
        )));
    }
    Ok(root)
}

/// How many plain rules the pattern's `$or`s expand into: the branches of one `$or` add
/// up, separate `$or`s multiply.
pub(super) fn combinations(node: &ObjectNode) -> u64 {
    let nested = node
        .fields
        .iter()
        .filter_map(|(_, field)| match field {
            FieldNode::Object(inner) => Some(combinations(inner)),
            FieldNode::Leaf(_) => None,
        })
        .fold(1, u64::saturating_mul);
    let alternatives = node.any_of.as_ref().map_or(1, |branches| {
        branches
            .iter()
            .map(combinations)
            .fold(0, u64::saturating_add)
    });
    nested.saturating_mul(alternatives)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn element(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The only entry of a match expression object.
fn single_entry<'a>(
    expression: &'a Map<String, Value>,
    path: &str,
) -> Result<(&'a str, &'a Value), PatternError> {
    let mut entries = expression.iter();
    match (entries.next(), entries.next()) {
        (Some((name, value)), None) => Ok((name, value)),
        (None, _) => Err(PatternError::new(ErrorKind::EmptyMatchExpression, path)),
        (Some(_), Some(_)) => Err(PatternError::new(ErrorKind::MultipleOperators, path)),
    }
}

fn operand_error(operator: &'static str, expected: &'static str, path: &str) -> PatternError {
    PatternError::new(ErrorKind::InvalidOperand { operator, expected }, path)
}

struct Compiler {
    dialect: Dialect,
}

impl Compiler {
    fn object(
        &self,
        fields: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<ObjectNode, PatternError> {
        if depth > MAX_DEPTH {
            return Err(PatternError::new(ErrorKind::TooDeep(MAX_DEPTH), path));
        }
        if fields.is_empty() {
            return Err(PatternError::new(ErrorKind::EmptyObject, path));
        }
        let mut node = ObjectNode {
            fields: Vec::with_capacity(fields.len()),
            any_of: None,
        };
        for (name, value) in fields {
            let here = join(path, name);
            if name == OR {
                node.any_of = Some(self.alternatives(value, &here, depth)?);
                continue;
            }
            let field = match value {
                Value::Object(inner) => {
                    if self.dialect == Dialect::SnsAttributes {
                        return Err(PatternError::new(ErrorKind::NestedAttributePolicy, &here));
                    }
                    FieldNode::Object(self.object(inner, &here, depth + 1)?)
                }
                Value::Array(values) => FieldNode::Leaf(self.leaf(values, &here)?),
                _ => {
                    return Err(PatternError::new(
                        ErrorKind::NotObjectOrArray(name.clone()),
                        &here,
                    ));
                }
            };
            node.fields.push((name.as_str().into(), field));
        }
        Ok(node)
    }

    fn alternatives(
        &self,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Vec<ObjectNode>, PatternError> {
        let invalid = |why, at: &str| PatternError::new(ErrorKind::InvalidOr(why), at);
        let Value::Array(branches) = value else {
            return Err(invalid(
                "the value of $or must be an array of objects",
                path,
            ));
        };
        if branches.len() < 2 {
            return Err(invalid("$or must hold at least 2 objects", path));
        }
        branches
            .iter()
            .enumerate()
            .map(|(i, branch)| {
                let here = element(path, i);
                let Value::Object(fields) = branch else {
                    return Err(invalid(
                        "only objects are allowed in the array of $or",
                        &here,
                    ));
                };
                if let Some(reserved) = fields.keys().find(|k| RESERVED_IN_OR.contains(&k.as_str()))
                {
                    return Err(PatternError::new(
                        ErrorKind::ReservedFieldInOr(reserved.clone()),
                        &join(&here, reserved),
                    ));
                }
                self.object(fields, &here, depth + 1)
            })
            .collect()
    }

    fn leaf(&self, values: &[Value], path: &str) -> Result<Vec<Matcher>, PatternError> {
        if values.is_empty() {
            return Err(PatternError::new(ErrorKind::EmptyArray, path));
        }
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let here = element(path, i);
                match value {
                    Value::Object(expression) => self.expression(expression, &here),
                    scalar => Literal::from_json(scalar)
                        .map(Matcher::Exact)
                        .ok_or_else(|| PatternError::new(ErrorKind::InvalidMatchValue, &here)),
                }
            })
            .collect()
    }

    /// One `{ "operator": operand }` of a leaf list.
    fn expression(
        &self,
        expression: &Map<String, Value>,
        path: &str,
    ) -> Result<Matcher, PatternError> {
        let (operator, operand) = single_entry(expression, path)?;
        let text = operand.as_str();
        match operator {
            "prefix" => Ok(match self.affix("prefix", operand, path)? {
                (operand, false) => Matcher::Prefix(operand),
                (operand, true) => Matcher::PrefixIgnoreCase(operand),
            }),
            "suffix" => Ok(match self.affix("suffix", operand, path)? {
                (operand, false) => Matcher::Suffix(operand),
                (operand, true) => Matcher::SuffixIgnoreCase(operand),
            }),
            "equals-ignore-case" => text
                .map(|s| Matcher::EqualsIgnoreCase(fold(s)))
                .ok_or_else(|| operand_error("equals-ignore-case", "a string", path)),
            "wildcard" => {
                self.supports("wildcard", path)?;
                let text = text.ok_or_else(|| operand_error("wildcard", "a string", path))?;
                Wildcard::parse(text)
                    .map(Matcher::Wildcard)
                    .map_err(|why| PatternError::new(ErrorKind::InvalidWildcard(why), path))
            }
            "anything-but" => self.anything_but(operand, path).map(Matcher::AnythingBut),
            "numeric" => numeric(operand, path).map(Matcher::Numeric),
            "exists" => operand
                .as_bool()
                .map(Matcher::Exists)
                .ok_or_else(|| operand_error("exists", "either true or false", path)),
            "cidr" => {
                let text = text.ok_or_else(|| operand_error("cidr", "a string", path))?;
                Cidr::parse(text)
                    .map(Matcher::Cidr)
                    .map_err(|why| PatternError::new(ErrorKind::InvalidCidr(why), path))
            }
            other => Err(PatternError::new(
                ErrorKind::UnknownOperator(other.to_string()),
                path,
            )),
        }
    }

    /// The operand of `prefix` or `suffix`: a string, or `{"equals-ignore-case": string}`
    /// (then folded, and flagged).
    fn affix(
        &self,
        operator: &'static str,
        operand: &Value,
        path: &str,
    ) -> Result<(Box<str>, bool), PatternError> {
        match operand {
            Value::String(s) => Ok((s.as_str().into(), false)),
            Value::Object(inner) => match single_entry(inner, path)? {
                ("equals-ignore-case", Value::String(s)) => Ok((fold(s), true)),
                ("equals-ignore-case", _) => {
                    Err(operand_error("equals-ignore-case", "a string", path))
                }
                _ => Err(operand_error(
                    operator,
                    "a string or an equals-ignore-case expression",
                    path,
                )),
            },
            _ => Err(operand_error(operator, "a string", path)),
        }
    }

    fn anything_but(&self, operand: &Value, path: &str) -> Result<Exclusion, PatternError> {
        let invalid = |why: String| PatternError::new(ErrorKind::InvalidAnythingBut(why), path);
        match operand {
            Value::String(_) | Value::Number(_) => Ok(Exclusion::Values(
                Literal::from_json(operand).into_iter().collect(),
            )),
            Value::Array(values) => {
                if values.is_empty() {
                    return Err(PatternError::new(ErrorKind::EmptyArray, path));
                }
                if !values.iter().all(Value::is_string) && !values.iter().all(Value::is_number) {
                    return Err(invalid(
                        "a list must hold only strings or only numbers".to_string(),
                    ));
                }
                Ok(Exclusion::Values(
                    values.iter().filter_map(Literal::from_json).collect(),
                ))
            }
            Value::Object(inner) => {
                let (operator, operands) = single_entry(inner, path)?;
                if !["prefix", "suffix", "equals-ignore-case", "wildcard"].contains(&operator) {
                    return Err(invalid(format!("unsupported operator {operator}")));
                }
                let texts = strings(operator, operands, path)?;
                match operator {
                    "prefix" | "suffix" => {
                        if texts.iter().any(|t| t.is_empty()) {
                            return Err(invalid(format!("an empty {operator} is not allowed")));
                        }
                        let texts = texts.into_iter().map(Box::from).collect();
                        Ok(if operator == "prefix" {
                            Exclusion::Prefixes(texts)
                        } else {
                            Exclusion::Suffixes(texts)
                        })
                    }
                    "equals-ignore-case" => {
                        Ok(Exclusion::IgnoreCase(texts.into_iter().map(fold).collect()))
                    }
                    // "wildcard", the one left.
                    _ => {
                        self.supports("anything-but wildcard", path)?;
                        texts
                            .into_iter()
                            .map(Wildcard::parse)
                            .collect::<Result<_, _>>()
                            .map(Exclusion::Wildcards)
                            .map_err(|why| PatternError::new(ErrorKind::InvalidWildcard(why), path))
                    }
                }
            }
            Value::Bool(_) | Value::Null => Err(operand_error(
                "anything-but",
                "a string, a number, a list of strings or of numbers, or an expression",
                path,
            )),
        }
    }

    fn supports(&self, feature: &'static str, path: &str) -> Result<(), PatternError> {
        match self.dialect {
            Dialect::EventBridge => Ok(()),
            Dialect::SnsAttributes | Dialect::SnsBody => Err(PatternError::new(
                ErrorKind::Unsupported(feature, "SNS filter policies"),
                path,
            )),
        }
    }
}

/// The operands of an `anything-but` expression: one string, or a non-empty array of them.
fn strings<'a>(
    operator: &str,
    operands: &'a Value,
    path: &str,
) -> Result<Vec<&'a str>, PatternError> {
    let not_strings = || {
        PatternError::new(
            ErrorKind::InvalidAnythingBut(format!(
                "{operator} takes a string or a list of strings"
            )),
            path,
        )
    };
    match operands {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if items.is_empty() => {
            Err(PatternError::new(ErrorKind::EmptyArray, path))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(not_strings))
            .collect(),
        _ => Err(not_strings()),
    }
}

/// `["=", x]`, `["<", x]`, `["<=", x]`, `[">", x]`, `[">=", x]`, or a lower bound then an
/// upper bound: `[">" or ">=", lo, "<" or "<=", hi]` with `lo < hi`.
fn numeric(operand: &Value, path: &str) -> Result<NumericTest, PatternError> {
    let Value::Array(terms) = operand else {
        return Err(operand_error("numeric", "an array", path));
    };
    let invalid = |why: String| PatternError::new(ErrorKind::InvalidNumeric(why), path);
    let number = |at: usize, operator: &str| {
        terms
            .get(at)
            .and_then(Value::as_number)
            .and_then(Num::of)
            .ok_or_else(|| invalid(format!("Value of {operator} must be numeric")))
    };
    let Some(first) = terms.first() else {
        return Err(invalid(
            "A numeric match needs an operator and a value".to_string(),
        ));
    };
    let Value::String(operator) = first else {
        return Err(invalid(format!("Invalid member in numeric match: {first}")));
    };
    let single = |test: NumericTest| {
        if terms.len() > 2 {
            Err(invalid(
                "Too many elements in numeric expression (a range starts with > or >=)".to_string(),
            ))
        } else {
            Ok(test)
        }
    };
    match operator.as_str() {
        "=" => single(NumericTest::Equals(number(1, "=")?)),
        "<" | "<=" => single(NumericTest::Range {
            lower: None,
            upper: Some(Bound {
                value: number(1, operator)?.float(),
                inclusive: operator == "<=",
            }),
        }),
        ">" | ">=" => {
            let lower = Bound {
                value: number(1, operator)?.float(),
                inclusive: operator == ">=",
            };
            let upper = match terms.get(2) {
                None => None,
                Some(Value::String(top)) if top == "<" || top == "<=" => {
                    let upper = Bound {
                        value: number(3, top)?.float(),
                        inclusive: top == "<=",
                    };
                    if terms.len() > 4 {
                        return Err(invalid(
                            "Too many terms in numeric range expression".to_string(),
                        ));
                    }
                    if lower.value >= upper.value {
                        return Err(invalid(format!(
                            "Bottom must be less than top ({} is not below {})",
                            lower.value, upper.value
                        )));
                    }
                    Some(upper)
                }
                Some(Value::String(top)) => {
                    return Err(invalid(format!("Bad numeric range operator: {top}")));
                }
                Some(other) => {
                    return Err(invalid(format!("Bad value in numeric range: {other}")));
                }
            };
            Ok(NumericTest::Range {
                lower: Some(lower),
                upper,
            })
        }
        other => Err(invalid(format!(
            "Unrecognized numeric range operator: {other}"
        ))),
    }
}
