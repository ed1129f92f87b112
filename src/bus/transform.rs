//! What a target is handed for a matched event: the whole event, a constant `Input`, the
//! part an `InputPath` selects, or an `InputTransformer`'s template filled from the
//! event, with EventBridge's quoting rules.
//!
//! In a template, `<name>` is replaced by the value `InputPathsMap` names (or one of the predefined
//! `aws.events.rule-arn`, `aws.events.rule-name`, `aws.events.event.ingestion-time`,
//! `aws.events.event`, the event without its `detail`, and `aws.events.event.json`, the
//! whole event). Inside a JSON string (between quotes) a value is written as
//! text: a string's content, anything else as its JSON, escaped for the string. Outside
//! quotes a value is written as JSON (a string with its quotes); a path the event does not
//! have is `null` there and empty inside quotes. A `<word>` that names nothing stays as
//! it is.

use std::collections::BTreeMap;

use serde_json::Value;

/// How a target's input is made (the parts of EventBridge's `Target` that say it).
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    Event,
    Constant(String),
    Path(String),
    Template {
        paths: BTreeMap<String, String>,
        template: String,
    },
}

/// Why a target's input settings are refused (a `ValidationException`'s message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// `$`, `$.a`, `$.a.b[0]`: the JSONPath subset EventBridge's input paths take.
pub fn is_path(path: &str) -> bool {
    path == "$"
        || path.strip_prefix("$.").is_some_and(|rest| {
            !rest.is_empty()
                && rest.split('.').all(|part| {
                    let name = part.split('[').next().unwrap_or("");
                    !name.is_empty()
                        && part[name.len()..].split('[').skip(1).all(|index| {
                            index.strip_suffix(']').is_some_and(|n| {
                                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                            })
                        })
                })
        })
}

/// The value at `path` in `event`.
pub fn select<'v>(event: &'v Value, path: &str) -> Option<&'v Value> {
    if path == "$" {
        return Some(event);
    }
    let mut current = event;
    for part in path.strip_prefix("$.")?.split('.') {
        let mut pieces = part.split('[');
        let name = pieces.next()?;
        current = current.get(name)?;
        for index in pieces {
            current = current.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

impl InputSpec {
    /// The spec of a target (its `Input`, `InputPath`, `InputTransformer`), checked.
    pub fn of_target(target: &Value) -> Result<Self, BadInput> {
        let input = target.get("Input").and_then(Value::as_str);
        let path = target.get("InputPath").and_then(Value::as_str);
        let transformer = target.get("InputTransformer").filter(|v| !v.is_null());
        if [input.is_some(), path.is_some(), transformer.is_some()]
            .iter()
            .filter(|b| **b)
            .count()
            > 1
        {
            return Err(BadInput(
                "Only one of Input, InputPath, or InputTransformer must be provided.".into(),
            ));
        }
        if let Some(input) = input {
            if serde_json::from_str::<Value>(input).is_err() {
                return Err(BadInput(format!("Input is not valid JSON text: {input}")));
            }
            return Ok(Self::Constant(input.to_string()));
        }
        if let Some(path) = path {
            if !is_path(path) {
                return Err(BadInput(format!(
                    "InputPath is not a valid JSONPath: {path}"
                )));
            }
            return Ok(Self::Path(path.to_string()));
        }
        let Some(transformer) = transformer else {
            return Ok(Self::Event);
        };
        let template = transformer
            .get("InputTemplate")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BadInput("InputTransformer requires an InputTemplate.".into()))?;
        if template.len() > 8192 {
            return Err(BadInput(
                "InputTemplate is longer than 8192 characters.".into(),
            ));
        }
        let mut paths = BTreeMap::new();
        if let Some(map) = transformer.get("InputPathsMap").and_then(Value::as_object) {
            if map.len() > 100 {
                return Err(BadInput("InputPathsMap has more than 100 entries.".into()));
            }
            for (name, path) in map {
                let path = path.as_str().unwrap_or("");
                let name_ok = !name.is_empty()
                    && name.len() <= 256
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                    && !name.starts_with("aws.");
                if !name_ok {
                    return Err(BadInput(format!(
                        "InputPathsMap key {name} is not valid: letters, digits, '_', '-' and '.', not starting with aws."
                    )));
                }
                if !is_path(path) {
                    return Err(BadInput(format!(
                        "InputPathsMap value for {name} is not a valid JSONPath: {path}"
                    )));
                }
                paths.insert(name.clone(), path.to_string());
            }
        }
        Ok(Self::Template {
            paths,
            template: template.to_string(),
        })
    }

    /// The input for `event` matched by rule `rule_arn` (named `rule_name`), accepted at
    /// `ingestion_ms`.
    pub fn apply(&self, event: &Value, rule_arn: &str, rule_name: &str, ingestion: &str) -> String {
        match self {
            // A bus event is an object; a Scheduler firing is its input text, handed as is.
            Self::Event => match event {
                Value::String(text) => text.clone(),
                event => event.to_string(),
            },
            Self::Constant(text) => text.clone(),
            Self::Path(path) => select(event, path).map_or("null".into(), Value::to_string),
            Self::Template { paths, template } => {
                let lookup = |name: &str| -> Option<Option<Value>> {
                    if let Some(path) = paths.get(name) {
                        return Some(select(event, path).cloned());
                    }
                    match name {
                        "aws.events.rule-arn" => Some(Some(Value::String(rule_arn.into()))),
                        "aws.events.rule-name" => Some(Some(Value::String(rule_name.into()))),
                        "aws.events.event.ingestion-time" => {
                            Some(Some(Value::String(ingestion.into())))
                        }
                        "aws.events.event" => Some(Some(without_detail(event))),
                        "aws.events.event.json" => Some(Some(event.clone())),
                        _ => None,
                    }
                };
                fill(template, lookup)
            }
        }
    }
}

/// `template` with its placeholders replaced (see the module's rules).
fn fill(template: &str, lookup: impl Fn(&str) -> Option<Option<Value>>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            let name = &rest[1..end];
            let plausible = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if plausible && let Some(value) = lookup(name) {
                out.push_str(&render(value.as_ref(), in_string));
                rest = &rest[end + 1..];
                escaped = false;
                continue;
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn render(value: Option<&Value>, in_string: bool) -> String {
    match (value, in_string) {
        (None | Some(Value::Null), false) => "null".into(),
        (None, true) => String::new(),
        (Some(v), false) => v.to_string(),
        (Some(Value::String(s)), true) => escape(s),
        (Some(v), true) => escape(&v.to_string()),
    }
}

/// Text escaped for the inside of a JSON string.
fn escape(text: &str) -> String {
    let quoted = Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The event as `<aws.events.event>` gives it: everything but its `detail`.
fn without_detail(event: &Value) -> Value {
    match event {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "detail")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"id": "e1", "source": "shop", "time": "2024-01-01T00:00:00Z",
               "detail": {"instance": "i-123", "state": "running", "count": 3,
                          "tags": ["a", "b"], "quote": "say \"hi\""}})
    }

    fn transformer(paths: Value, template: &str) -> InputSpec {
        InputSpec::of_target(&json!({"Id": "t", "Arn": "a",
            "InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}}))
        .unwrap()
    }

    #[test]
    fn templates_follow_eventbridges_quoting_rules() {
        let t = transformer(
            json!({"instance": "$.detail.instance", "state": "$.detail.state",
                   "count": "$.detail.count", "tags": "$.detail.tags", "quote": "$.detail.quote",
                   "missing": "$.detail.nope"}),
            r#"{"id": <instance>, "text": "<instance> is <state>", "n": <count>, "tags": <tags>, "q": "<quote>", "m": <missing>, "ms": "<missing>", "rule": "<aws.events.rule-name>", "keep": "<other>"}"#,
        );
        let out: Value = serde_json::from_str(&t.apply(&event(), "arn:r", "r1", "now")).unwrap();
        assert_eq!(
            out,
            json!({"id": "i-123", "text": "i-123 is running", "n": 3, "tags": ["a", "b"],
                   "q": "say \"hi\"", "m": null, "ms": "", "rule": "r1", "keep": "<other>"})
        );
        let text = transformer(json!({"s": "$.detail.state"}), r#""state: <s>""#);
        assert_eq!(text.apply(&event(), "a", "r", "t"), r#""state: running""#);
        let plain = transformer(json!({"s": "$.detail.state"}), "state is <s>");
        assert_eq!(plain.apply(&event(), "a", "r", "t"), "state is \"running\"");
        let whole = transformer(json!({}), "<aws.events.event.json>");
        assert_eq!(
            serde_json::from_str::<Value>(&whole.apply(&event(), "a", "r", "t")).unwrap(),
            event()
        );
        let envelope = transformer(json!({}), "<aws.events.event>");
        let mut expected = event();
        expected.as_object_mut().unwrap().remove("detail");
        assert_eq!(
            serde_json::from_str::<Value>(&envelope.apply(&event(), "a", "r", "t")).unwrap(),
            expected
        );
    }

    #[test]
    fn inputs_paths_and_refusals() {
        let spec = |t: Value| InputSpec::of_target(&t);
        assert_eq!(spec(json!({})).unwrap(), InputSpec::Event);
        let c = spec(json!({"Input": "{\"fixed\":1}"})).unwrap();
        assert_eq!(c.apply(&event(), "a", "r", "t"), "{\"fixed\":1}");
        let p = spec(json!({"InputPath": "$.detail.tags[1]"})).unwrap();
        assert_eq!(p.apply(&event(), "a", "r", "t"), "\"b\"");
        assert!(spec(json!({"Input": "{", })).is_err());
        assert!(spec(json!({"Input": "{}", "InputPath": "$"})).is_err());
        assert!(spec(json!({"InputPath": "detail"})).is_err());
        assert!(spec(json!({"InputTransformer": {"InputPathsMap": {"a": "$.x"}}})).is_err());
        assert!(
            spec(
                json!({"InputTransformer": {"InputPathsMap": {"aws.x": "$.x"},
                                                 "InputTemplate": "<aws.x>"}})
            )
            .is_err()
        );
        assert!(
            spec(json!({"InputTransformer": {"InputPathsMap": {"a": "x"},
                                                 "InputTemplate": "<a>"}}))
            .is_err()
        );
        assert!(is_path("$.a.b[0][1]"));
        assert!(!is_path("$.a[x]"));
        assert!(!is_path("$."));
    }
}
