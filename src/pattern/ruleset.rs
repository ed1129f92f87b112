//! Many patterns compiled into one matcher: which of a bus's rules an event matches,
//! without judging every rule.
//!
//! A [`RuleSet`] is a decision tree over field paths. Each rule contributes the
//! *constraints* its pattern implies: a field path (through nested pattern objects, never
//! through `$or`) whose leaf lists only exact values and (case-sensitive) prefixes, so that
//! the rule can match only an event holding one of those values, or a string with one of
//! those prefixes, at that path. A node of the tree splits
//! on one such path: the event's values there select the subtrees of the rules that named
//! them, and the rules that do not constrain the path sit in a subtree every event visits.
//! A leaf holds the rules left; each is then judged in full by its own [`Pattern`], so the
//! tree only has to be *sound* (never leave out a rule that matches), which keeps it
//! simple: keys may collide (two large integers with one double value share a key), an
//! event array visits a subtree per value (and per prefix of it the node knows), and rules
//! with no such field (only `anything-but`s, numeric ranges, or one `$or`) simply stay in
//! the subtrees every event visits.
//!
//! The cost of a match is then the depth of the tree plus the rules judged at the leaves
//! reached, which for rules told apart by `source`, `detail-type` and the like grows with
//! the number of rules an event could match, not with the number of rules.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::Pattern;
use super::matcher::{FieldNode, Matcher, ObjectNode};
use super::values::{Literal, Num};

/// Leaves hold at most this many rules before the tree tries to split them.
const LEAF_RULES: usize = 4;

/// Patterns, each with what it stands for, matched together.
pub struct RuleSet<T> {
    rules: Vec<(Pattern, T)>,
    paths: Vec<Box<[Box<str>]>>,
    root: Node,
}

/// A scalar key other than a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScalarKey {
    /// A number's double, with `-0.0` as `0.0`.
    Num(u64),
    Bool(bool),
    Null,
}

/// What a rule requires at one path: one of these values, or a string starting with one
/// of these prefixes.
#[derive(Debug, Clone)]
struct Constraint {
    path: usize,
    strings: Vec<Box<str>>,
    scalars: Vec<ScalarKey>,
    prefixes: Vec<Box<str>>,
}

/// A rule as the tree builder sees it: its index and the constraints not yet split on.
struct Pending {
    rule: u32,
    constraints: Vec<Constraint>,
}

enum Node {
    Leaf(Box<[u32]>),
    Split(Box<Split>),
}

struct Split {
    path: usize,
    /// Keyed by the string as written, or by its canonical form if an IP address.
    strings: HashMap<Box<str>, Node>,
    scalars: HashMap<ScalarKey, Node>,
    /// Keyed by prefix; an event string visits the subtree of each of its prefixes here.
    prefixes: HashMap<Box<str>, Node>,
    /// The lengths (in bytes) of the keys of `prefixes`, each once.
    prefix_lengths: Box<[usize]>,
    /// Whether some string key is an IP address (then event strings are also looked up
    /// in canonical form).
    ip_keys: bool,
    /// The rules that do not constrain `path`.
    rest: Node,
}

impl<T> RuleSet<T> {
    /// Compiles `rules` (in the order [`RuleSet::matching`] reports them).
    pub fn new(rules: impl IntoIterator<Item = (Pattern, T)>) -> Self {
        let rules: Vec<(Pattern, T)> = rules.into_iter().collect();
        let mut paths: Vec<Box<[Box<str>]>> = Vec::new();
        let mut pending = Vec::with_capacity(rules.len());
        for (i, (pattern, _)) in rules.iter().enumerate() {
            let mut constraints = Vec::new();
            let mut prefix = Vec::new();
            collect(pattern.root(), &mut prefix, &mut paths, &mut constraints);
            pending.push(Pending {
                rule: i as u32,
                constraints,
            });
        }
        let root = build(pending);
        Self { rules, paths, root }
    }

    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set holds no rule.
    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the rules `event` matches stand for, in the order they were given.
    pub fn matching<'a>(&'a self, event: &Value) -> Vec<&'a T> {
        self.candidate_rules(event)
            .into_iter()
            .map(|i| &self.rules[i as usize])
            .filter(|(pattern, _)| pattern.matches(event))
            .map(|(_, item)| item)
            .collect()
    }

    /// How many rules a match of `event` judges in full (what the tree did not rule out).
    pub fn judged(&self, event: &Value) -> usize {
        self.candidate_rules(event).len()
    }

    /// The rules the tree leaves for `event`, each once, in order.
    fn candidate_rules(&self, event: &Value) -> Vec<u32> {
        let mut candidates = Vec::new();
        self.candidates(&self.root, event, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }

    fn candidates(&self, node: &Node, event: &Value, out: &mut Vec<u32>) {
        match node {
            Node::Leaf(rules) => out.extend_from_slice(rules),
            Node::Split(split) => {
                scalars_at(event, &self.paths[split.path], &mut |value| {
                    if let Some(next) = split.lookup(value) {
                        self.candidates(next, event, out);
                    }
                    if let Value::String(s) = value {
                        for &len in &split.prefix_lengths {
                            if let Some(head) = s.get(..len)
                                && let Some(next) = split.prefixes.get(head)
                            {
                                self.candidates(next, event, out);
                            }
                        }
                    }
                });
                self.candidates(&split.rest, event, out);
            }
        }
    }
}

impl Split {
    fn lookup(&self, value: &Value) -> Option<&Node> {
        match value {
            Value::String(s) => self.strings.get(s.as_str()).or_else(|| {
                if !self.ip_keys {
                    return None;
                }
                let ip: IpAddr = s.parse().ok()?;
                self.strings.get(ip.to_string().as_str())
            }),
            other => self.scalars.get(&scalar_key(other)?),
        }
    }
}

/// The key of a scalar that is not a string; `None` for strings, arrays and objects.
fn scalar_key(value: &Value) -> Option<ScalarKey> {
    Some(match value {
        Value::Number(n) => number_key(Num::of(n)?),
        Value::Bool(b) => ScalarKey::Bool(*b),
        Value::Null => ScalarKey::Null,
        _ => return None,
    })
}

fn number_key(n: Num) -> ScalarKey {
    let f = n.float();
    ScalarKey::Num(if f == 0.0 { 0 } else { f.to_bits() })
}

/// The string key of a literal: its canonical form if an IP address.
fn string_key(text: &str, ip: Option<IpAddr>) -> Box<str> {
    match ip {
        Some(ip) => ip.to_string().into(),
        None => text.into(),
    }
}

/// Calls `f` with every scalar at `path` in `value`, as the matcher sees a leaf's values:
/// arrays flattened on the way and at the end.
fn scalars_at(value: &Value, path: &[Box<str>], f: &mut impl FnMut(&Value)) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| scalars_at(item, path, f)),
        Value::Object(map) => {
            if let Some((first, rest)) = path.split_first()
                && let Some(inner) = map.get(&**first)
            {
                scalars_at(inner, rest, f);
            }
        }
        scalar => {
            if path.is_empty() {
                f(scalar)
            }
        }
    }
}

/// The exact-value constraints of `node` (found at `prefix`), interning their paths.
fn collect(
    node: &ObjectNode,
    prefix: &mut Vec<Box<str>>,
    paths: &mut Vec<Box<[Box<str>]>>,
    out: &mut Vec<Constraint>,
) {
    for (name, field) in &node.fields {
        prefix.push(name.clone());
        match field {
            FieldNode::Object(inner) => collect(inner, prefix, paths, out),
            FieldNode::Leaf(matchers) => {
                if let Some(mut constraint) = exact_values(matchers) {
                    constraint.path = intern(paths, prefix);
                    out.push(constraint);
                }
            }
        }
        prefix.pop();
    }
}

fn intern(paths: &mut Vec<Box<[Box<str>]>>, path: &[Box<str>]) -> usize {
    if let Some(i) = paths.iter().position(|p| **p == *path) {
        return i;
    }
    paths.push(path.into());
    paths.len() - 1
}

/// The values a leaf list allows, if it allows only exact values and prefixes.
fn exact_values(matchers: &[Matcher]) -> Option<Constraint> {
    let mut constraint = Constraint {
        path: 0,
        strings: Vec::new(),
        scalars: Vec::new(),
        prefixes: Vec::new(),
    };
    for matcher in matchers {
        let literal = match matcher {
            Matcher::Exact(literal) => literal,
            Matcher::Prefix(prefix) => {
                constraint.prefixes.push(prefix.clone());
                continue;
            }
            _ => return None,
        };
        match literal {
            Literal::Str { text, ip } => constraint.strings.push(string_key(text, *ip)),
            Literal::Num(n) => constraint.scalars.push(number_key(*n)),
            Literal::Bool(b) => constraint.scalars.push(ScalarKey::Bool(*b)),
            Literal::Null => constraint.scalars.push(ScalarKey::Null),
        }
    }
    constraint.strings.sort_unstable();
    constraint.strings.dedup();
    constraint.scalars.dedup();
    constraint.prefixes.sort_unstable();
    constraint.prefixes.dedup();
    Some(constraint)
}

/// Builds the tree for `rules`: splits on the path most of them constrain, as long as
/// there are more than a leaf's worth and some path is constrained.
fn build(rules: Vec<Pending>) -> Node {
    if rules.len() <= LEAF_RULES {
        return leaf(rules);
    }
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for rule in &rules {
        for c in &rule.constraints {
            *counts.entry(c.path).or_default() += 1;
        }
    }
    // The most constrained path; ties to the lower path index, so the tree is the same
    // for the same rules.
    let Some((path, _)) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
    else {
        return leaf(rules);
    };
    let mut by_string: HashMap<Box<str>, Vec<Pending>> = HashMap::new();
    let mut by_scalar: HashMap<ScalarKey, Vec<Pending>> = HashMap::new();
    let mut by_prefix: HashMap<Box<str>, Vec<Pending>> = HashMap::new();
    let mut rest = Vec::new();
    for mut rule in rules {
        let Some(at) = rule.constraints.iter().position(|c| c.path == path) else {
            rest.push(rule);
            continue;
        };
        let constraint = rule.constraints.swap_remove(at);
        // Another constraint on the same path (a key given twice cannot make one, but a
        // rule could still name a path twice through different nestings) is dropped: the
        // tree stays sound, the pattern judges the rest.
        rule.constraints.retain(|c| c.path != path);
        for key in &constraint.strings {
            by_string.entry(key.clone()).or_default().push(Pending {
                rule: rule.rule,
                constraints: rule.constraints.clone(),
            });
        }
        for key in &constraint.scalars {
            by_scalar.entry(*key).or_default().push(Pending {
                rule: rule.rule,
                constraints: rule.constraints.clone(),
            });
        }
        for key in &constraint.prefixes {
            by_prefix.entry(key.clone()).or_default().push(Pending {
                rule: rule.rule,
                constraints: rule.constraints.clone(),
            });
        }
    }
    let mut prefix_lengths: Vec<usize> = by_prefix.keys().map(|k| k.len()).collect();
    prefix_lengths.sort_unstable();
    prefix_lengths.dedup();
    let ip_keys = by_string.keys().any(|k| k.parse::<IpAddr>().is_ok());
    Node::Split(Box::new(Split {
        path,
        strings: by_string.into_iter().map(|(k, v)| (k, build(v))).collect(),
        scalars: by_scalar.into_iter().map(|(k, v)| (k, build(v))).collect(),
        prefixes: by_prefix.into_iter().map(|(k, v)| (k, build(v))).collect(),
        prefix_lengths: prefix_lengths.into(),
        ip_keys,
        rest: build(rest),
    }))
}

fn leaf(rules: Vec<Pending>) -> Node {
    Node::Leaf(rules.into_iter().map(|r| r.rule).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(patterns: &[Value]) -> RuleSet<usize> {
        RuleSet::new(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (Pattern::from_value(p).unwrap(), i)),
        )
    }

    fn matching(set: &RuleSet<usize>, event: &Value) -> Vec<usize> {
        set.matching(event).into_iter().copied().collect()
    }

    #[test]
    fn agrees_with_judging_every_rule() {
        let patterns = vec![
            json!({"source": ["a"]}),
            json!({"source": ["a", "b"], "detail-type": ["x"]}),
            json!({"source": ["b"], "detail": {"n": [1, 2.0]}}),
            json!({"source": [{"prefix": "a"}]}),
            json!({"detail": {"n": [{"numeric": [">", 1]}]}}),
            json!({"detail": {"ip": ["10.0.0.1", "::1"]}}),
            json!({"detail": {"flag": [true, null]}}),
            json!({"$or": [{"source": ["a"]}, {"detail-type": ["y"]}]}),
            json!({"source": ["c"], "detail": {"tags": ["t1"]}}),
            json!({"detail": {"items": {"k": ["v"]}}}),
            json!({"detail": {"missing": [{"exists": false}]}, "source": ["c"]}),
            json!({"source": [{"anything-but": "a"}]}),
            json!({"source": [{"prefix": "ab"}, {"prefix": "é"}], "detail": {"n": [5]}}),
            json!({"source": [{"prefix": ""}]}),
        ];
        let events = vec![
            json!({"source": "a", "detail-type": "x", "detail": {}}),
            json!({"source": "b", "detail-type": "y", "detail": {"n": 2}}),
            json!({"source": "b", "detail": {"n": 1.0}}),
            json!({"source": "c", "detail": {"tags": ["t0", "t1"], "flag": null}}),
            json!({"source": "d", "detail": {"ip": "0:0:0:0:0:0:0:1", "flag": true}}),
            json!({"source": "d", "detail": {"ip": ["10.0.0.1"], "n": 5}}),
            json!({"source": "e", "detail": {"items": [{"k": "w"}, {"k": "v"}]}}),
            json!({"source": ["a", "c"], "detail-type": "x"}),
            json!([{"source": "a"}, {"source": "q"}]),
            json!({"source": "abc", "detail": {"n": -0.0}}),
            json!({"source": "abc", "detail": {"n": 5}}),
            json!({"source": "éa", "detail": {"n": [4, 5]}}),
            json!({"source": "", "detail": {"n": 5}}),
        ];
        let compiled = set(&patterns);
        for event in &events {
            let linear: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| Pattern::from_value(p).unwrap().matches(event))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matching(&compiled, event), linear, "event {event}");
        }
    }

    #[test]
    fn judges_only_the_rules_an_event_could_match() {
        let patterns: Vec<Value> = (0..1000)
            .map(|i| json!({"source": [format!("svc.{}", i % 100)], "detail-type": [format!("t{}", i / 100)]}))
            .collect();
        let compiled = set(&patterns);
        let event = json!({"source": "svc.7", "detail-type": "t3", "detail": {}});
        assert_eq!(matching(&compiled, &event), vec![307]);
        assert!(
            compiled.judged(&event) <= LEAF_RULES,
            "{}",
            compiled.judged(&event)
        );
        let none = json!({"source": "other", "detail-type": "t3"});
        assert!(matching(&compiled, &none).is_empty());
        assert_eq!(compiled.judged(&none), 0);
    }

    #[test]
    fn prefixes_are_keys_too_and_other_operators_are_judged_for_every_event() {
        let mut patterns: Vec<Value> = (0..50)
            .map(|i| json!({"source": [format!("s{i}")]}))
            .collect();
        patterns.push(json!({"source": [{"prefix": "s1"}]}));
        patterns.push(json!({"$or": [{"source": ["s2"]}, {"detail-type": ["z"]}]}));
        patterns.push(json!({"source": [{"anything-but": "s3"}]}));
        patterns.push(json!({"source": [{"prefix": "t"}, "s12"]}));
        let compiled = set(&patterns);
        let event = json!({"source": "s12", "detail-type": "z"});
        assert_eq!(matching(&compiled, &event), vec![12, 50, 51, 52, 53]);
        assert_eq!(compiled.judged(&event), 5);
        let other = json!({"source": "t3", "detail-type": "y"});
        assert_eq!(matching(&compiled, &other), vec![52, 53]);
        assert_eq!(compiled.judged(&other), 3);
    }

    #[test]
    fn numbers_meet_by_value_and_large_integers_stay_exact() {
        let patterns = vec![
            json!({"n": [300]}),
            json!({"n": [9007199254740993u64]}),
            json!({"n": [9007199254740992u64]}),
            json!({"n": [false]}),
            json!({"n": [0]}),
        ];
        let compiled = set(&patterns);
        assert_eq!(matching(&compiled, &json!({"n": 3.0e2})), vec![0]);
        assert_eq!(
            matching(&compiled, &json!({"n": 9007199254740993u64})),
            vec![1]
        );
        assert_eq!(matching(&compiled, &json!({"n": false})), vec![3]);
        assert_eq!(matching(&compiled, &json!({"n": -0.0})), vec![4]);
        assert!(matching(&compiled, &json!({"n": "300"})).is_empty());
    }
}
