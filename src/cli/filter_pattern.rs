//! CloudWatch Logs filter patterns, as `shoal logs --filter` takes them: terms for text
//! lines (`ERROR`, `"a phrase"`, `?ERROR ?WARN` for any of them, `-DEBUG` to exclude), and
//! `{ ... }` expressions for JSON lines (`{ $.level = "ERROR" }`, `{ $.ms > 100 && $.path
//! = "/api/*" }`, `{ $.user.id = 1 || $.tags[0] != "x" }`, `IS NULL`, `IS TRUE`,
//! `NOT EXISTS`; `&&` binds tighter than `||`, parentheses group).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Every line.
    All,
    Terms(Terms),
    Json(Expr),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Selector, Op, Literal),
    IsNull(Selector),
    IsBool(Selector, bool),
    NotExists(Selector),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

pub type Selector = Vec<Step>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    /// A string, `*` matching any run of characters.
    Text(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "\"\"" {
            return Ok(Self::All);
        }
        if let Some(inner) = text.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or("a JSON filter pattern ends with }")?;
            let mut parser = Parser {
                tokens: tokenize(inner)?,
                at: 0,
            };
            let expr = parser.or()?;
            if parser.at != parser.tokens.len() {
                return Err(format!(
                    "unexpected {:?} in the filter pattern",
                    parser.tokens[parser.at]
                ));
            }
            return Ok(Self::Json(expr));
        }
        Ok(Self::Terms(Terms::parse(text)?))
    }

    pub fn matches(&self, line: &str) -> bool {
        match self {
            Self::All => true,
            Self::Terms(terms) => terms.matches(line),
            Self::Json(expr) => serde_json::from_str::<Value>(line)
                .ok()
                .filter(Value::is_object)
                .is_some_and(|doc| expr.eval(&doc)),
        }
    }
}

impl Terms {
    fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Self::default();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let (sign, after) = match rest.as_bytes()[0] {
                b'?' => (Some('?'), &rest[1..]),
                b'-' => (Some('-'), &rest[1..]),
                _ => (None, rest),
            };
            let (word, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').ok_or("a quoted term is not closed")?;
                (quoted[..end].to_string(), &quoted[end + 1..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            };
            match sign {
                Some('?') => terms.any.push(word),
                Some(_) => terms.none.push(word),
                None => terms.all.push(word),
            }
            rest = next.trim_start();
        }
        Ok(terms)
    }

    fn matches(&self, line: &str) -> bool {
        self.all.iter().all(|t| line.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| line.contains(t.as_str())))
            && !self.none.iter().any(|t| line.contains(t.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Selector(Selector),
    Op(Op),
    And,
    Or,
    Open,
    Close,
    Quoted(String),
    Bare(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            _ if two == "&&" => {
                tokens.push(Token::And);
                i += 2;
            }
            _ if two == "||" => {
                tokens.push(Token::Or);
                i += 2;
            }
            _ if ["!=", "<=", ">="].contains(&two.as_str()) => {
                tokens.push(Token::Op(match two.as_str() {
                    "!=" => Op::Ne,
                    "<=" => Op::Le,
                    _ => Op::Ge,
                }));
                i += 2;
            }
            '=' | '<' | '>' => {
                tokens.push(Token::Op(match c {
                    '=' => Op::Eq,
                    '<' => Op::Lt,
                    _ => Op::Gt,
                }));
                i += 1;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("a quoted value is not closed".into());
                }
                tokens.push(Token::Quoted(text));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=<>!&|\"".contains(chars[i])
                {
                    i += 1;
                }
                if start == i {
                    return Err(format!("unexpected {c:?} in the filter pattern"));
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(match word.strip_prefix('$') {
                    Some(path) => Token::Selector(selector(path)?),
                    None => Token::Bare(word),
                });
            }
        }
    }
    Ok(tokens)
}

/// `.a.b[0].c` (what follows `$`) as steps.
fn selector(path: &str) -> Result<Selector, String> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("an empty key in ${path}"));
            }
            steps.push(Step::Key(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("[ without ] in ${path}"))?;
            let index = after[..end]
                .parse()
                .map_err(|_| format!("a bad index in ${path}"))?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(format!("a selector is $.key or $[index], not ${path}"));
        }
    }
    if steps.is_empty() {
        return Err("a selector names a field: $.key".into());
    }
    Ok(steps)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("( without )".into()),
                }
            }
            Some(Token::Selector(selector)) => self.condition(selector),
            other => Err(format!("expected $.field or (, found {other:?}")),
        }
    }

    fn condition(&mut self, selector: Selector) -> Result<Expr, String> {
        let word = |t: &Option<Token>, w: &str| matches!(t, Some(Token::Bare(b)) if b.eq_ignore_ascii_case(w));
        let next = self.next();
        if word(&next, "IS") {
            let what = self.next();
            return if word(&what, "NULL") {
                Ok(Expr::IsNull(selector))
            } else if word(&what, "TRUE") {
                Ok(Expr::IsBool(selector, true))
            } else if word(&what, "FALSE") {
                Ok(Expr::IsBool(selector, false))
            } else {
                Err("IS is followed by NULL, TRUE or FALSE".into())
            };
        }
        if word(&next, "NOT") {
            return if word(&self.next(), "EXISTS") {
                Ok(Expr::NotExists(selector))
            } else {
                Err("NOT is followed by EXISTS".into())
            };
        }
        let Some(Token::Op(op)) = next else {
            return Err(format!(
                "expected a comparison after the selector, found {next:?}"
            ));
        };
        let value = match self.next() {
            Some(Token::Quoted(text)) => Literal::Text(text),
            Some(Token::Bare(text)) => match text.parse::<f64>() {
                Ok(n) => Literal::Number(n),
                Err(_) => Literal::Text(text),
            },
            other => return Err(format!("expected a value, found {other:?}")),
        };
        if matches!(value, Literal::Text(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err("< and > compare numbers".into());
        }
        Ok(Expr::Compare(selector, op, value))
    }
}

fn select<'a>(doc: &'a Value, selector: &Selector) -> Option<&'a Value> {
    selector.iter().try_fold(doc, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(*index),
    })
}

/// `*` matches any run of characters; everything else itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl Expr {
    fn eval(&self, doc: &Value) -> bool {
        match self {
            Self::And(a, b) => a.eval(doc) && b.eval(doc),
            Self::Or(a, b) => a.eval(doc) || b.eval(doc),
            Self::IsNull(s) => select(doc, s).is_some_and(Value::is_null),
            Self::IsBool(s, b) => select(doc, s).and_then(Value::as_bool) == Some(*b),
            Self::NotExists(s) => select(doc, s).is_none(),
            Self::Compare(s, op, literal) => {
                let Some(value) = select(doc, s) else {
                    return false;
                };
                match literal {
                    Literal::Number(n) => {
                        let Some(v) = value.as_f64() else {
                            return false;
                        };
                        match op {
                            Op::Eq => v == *n,
                            Op::Ne => v != *n,
                            Op::Lt => v < *n,
                            Op::Le => v <= *n,
                            Op::Gt => v > *n,
                            Op::Ge => v >= *n,
                        }
                    }
                    Literal::Text(pattern) => {
                        let text = match value {
                            Value::String(s) => s.clone(),
                            Value::Bool(_) | Value::Number(_) => value.to_string(),
                            _ => return false,
                        };
                        wildcard(pattern, &text) == (*op == Op::Eq)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, line: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(line)
    }

    #[test]
    fn terms_match_text_lines() {
        assert!(m("", "anything"));
        assert!(m("ERROR", "an ERROR here"));
        assert!(!m("ERROR", "an error here"));
        assert!(m("ERROR timeout", "ERROR: timeout after 3s"));
        assert!(!m("ERROR timeout", "ERROR: refused"));
        assert!(m(
            "\"Task timed out\"",
            "2026 Task timed out after 3.00 seconds"
        ));
        assert!(m("?ERROR ?WARN", "a WARN"));
        assert!(!m("?ERROR ?WARN", "an INFO"));
        assert!(m("ERROR -Retry", "ERROR once"));
        assert!(!m("ERROR -Retry", "ERROR Retry 2"));
    }

    #[test]
    fn json_expressions_select_and_compare() {
        let line = r#"{"level":"ERROR","ms":250,"path":"/api/users","ok":false,"user":{"id":7,"tags":["a","b"]},"gone":null}"#;
        assert!(m(r#"{ $.level = "ERROR" }"#, line));
        assert!(m("{ $.level = ERROR }", line));
        assert!(!m(r#"{ $.level != "ERROR" }"#, line));
        assert!(m("{ $.ms > 100 && $.ms <= 250 }", line));
        assert!(!m("{ $.ms >= 300 }", line));
        assert!(m(r#"{ $.path = "/api/*" }"#, line));
        assert!(m(r#"{ $.path = "*users" }"#, line));
        assert!(!m(r#"{ $.path = "/web/*" }"#, line));
        assert!(m("{ $.user.id = 7 }", line));
        assert!(m(r#"{ $.user.tags[1] = "b" }"#, line));
        assert!(m("{ $.ok IS FALSE && $.gone IS NULL }", line));
        assert!(m("{ $.missing NOT EXISTS }", line));
        assert!(!m("{ $.level NOT EXISTS }", line));
        // && before ||; parentheses group.
        assert!(m("{ $.ms < 0 && $.ms > 0 || $.user.id = 7 }", line));
        assert!(!m("{ $.ms < 0 && ($.ms > 0 || $.user.id = 7) }", line));
        // Text lines never match a JSON pattern.
        assert!(!m(r#"{ $.level = "ERROR" }"#, "ERROR plain"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "{ $.level = ",
            "{ $.level }",
            "{ level = 1 }",
            "{ $.a = 1",
            "{ ($.a = 1 }",
            "{ $.a > abc }",
            "{ $.a IS MAYBE }",
            "{ $. = 1 }",
            "\"unclosed",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
