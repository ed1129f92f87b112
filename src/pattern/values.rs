//! The leaf values of the pattern language, each with the parse the compiler needs and the
//! test the matcher needs: literals ([`Literal`]), numbers ([`Num`], [`NumericTest`]),
//! wildcards ([`Wildcard`]), CIDR blocks ([`Cidr`]) and case-folded text ([`fold`] and the
//! `*_ignore_case` tests). Nothing here knows about fields, arrays or `$or`.

use std::net::IpAddr;

use serde_json::{Number, Value};

/// A JSON number as patterns compare it: exactly, as integers, when both sides are
/// integers that fit in 64 bits (so account numbers compare digit for digit); otherwise as
/// IEEE-754 binary64 doubles, so `300`, `300.0` and `3.0e2` are one number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Num {
    float: f64,
    int: Option<i128>,
}

impl Num {
    /// `None` only for a number with no finite double value (which JSON text cannot hold).
    pub(super) fn of(n: &Number) -> Option<Self> {
        let float = n.as_f64().filter(|f| f.is_finite())?;
        let int = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        Some(Self { float, int })
    }

    pub(super) fn float(self) -> f64 {
        self.float
    }

    pub(super) fn equals(self, other: Self) -> bool {
        match (self.int, other.int) {
            (Some(a), Some(b)) => a == b,
            _ => self.float == other.float,
        }
    }
}

/// A value written as itself in a pattern: `"text"`, `12.5`, `true`, `false` or `null`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    /// A string; `ip` is set when the string is an IP address literal, which then also
    /// equals the same address written another way (`::1` and `0:0:0:0:0:0:0:1`).
    Str {
        text: Box<str>,
        ip: Option<IpAddr>,
    },
    Num(Num),
    Bool(bool),
    Null,
}

impl Literal {
    /// The literal for a scalar JSON value; `None` for arrays and objects.
    pub(super) fn from_json(value: &Value) -> Option<Self> {
        Some(match value {
            Value::String(s) => Self::string(s),
            Value::Number(n) => Self::Num(Num::of(n)?),
            Value::Bool(b) => Self::Bool(*b),
            Value::Null => Self::Null,
            Value::Array(_) | Value::Object(_) => return None,
        })
    }

    pub(super) fn string(text: &str) -> Self {
        Self::Str {
            text: text.into(),
            ip: text.parse().ok(),
        }
    }

    /// Whether the event's scalar `value` is this literal. Types never mix: `"1"` is not `1`.
    pub(super) fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Str { text, ip }, Value::String(s)) => {
                **text == **s || ip.is_some_and(|ip| s.parse::<IpAddr>().is_ok_and(|v| v == ip))
            }
            (Self::Num(n), Value::Number(m)) => Num::of(m).is_some_and(|m| n.equals(m)),
            (Self::Bool(a), Value::Bool(b)) => a == b,
            (Self::Null, Value::Null) => true,
            _ => false,
        }
    }
}

/// One end of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bound {
    pub(super) value: f64,
    pub(super) inclusive: bool,
}

/// What a `numeric` expression asks of a number.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum NumericTest {
    /// `["=", x]`: the same number, compared as [`Num`] compares.
    Equals(Num),
    /// `[">", lo]`, `["<=", hi]`, `[">", lo, "<=", hi]` and the like: doubles within bounds.
    Range {
        lower: Option<Bound>,
        upper: Option<Bound>,
    },
}

impl NumericTest {
    pub(super) fn test(&self, n: &Number) -> bool {
        let Some(n) = Num::of(n) else {
            return false;
        };
        match self {
            Self::Equals(x) => x.equals(n),
            Self::Range { lower, upper } => {
                let v = n.float();
                let above = lower.is_none_or(|b| v > b.value || (b.inclusive && v == b.value));
                let below = upper.is_none_or(|b| v < b.value || (b.inclusive && v == b.value));
                above && below
            }
        }
    }
}

/// A `wildcard` value: literal pieces that must appear in order, with any run of
/// characters (none included) between them. `"a*b"` is `["a", "b"]`; `"*"` is `["", ""]`;
/// a value with no `*` is a single piece that must equal the whole string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wildcard {
    pieces: Vec<Box<str>>,
}

impl Wildcard {
    /// Reads `*` as the wildcard, `\*` as a literal asterisk and `\\` as a literal
    /// backslash. Refuses `**` (EventBridge does not allow consecutive wildcards) and a
    /// backslash before anything else, reporting the character position (from 0).
    pub(super) fn parse(pattern: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut piece = String::new();
        let mut chars = pattern.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '*' => {
                    if chars.peek().is_some_and(|(_, next)| *next == '*') {
                        return Err(format!("consecutive wildcard characters at position {at}"));
                    }
                    pieces.push(std::mem::take(&mut piece).into_boxed_str());
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('*' | '\\'))) => piece.push(escaped),
                    _ => return Err(format!("invalid escape character at position {at}")),
                },
                other => piece.push(other),
            }
        }
        pieces.push(piece.into_boxed_str());
        Ok(Self { pieces })
    }

    /// Whether `s` fits: the first piece is a prefix, the last a suffix (not overlapping
    /// the prefix), and the middle pieces occur in order in between. Taking the leftmost
    /// occurrence of each middle piece is always safe, so this never backtracks.
    pub(super) fn matches(&self, s: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return s.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return s == &**first;
        };
        if s.len() < first.len() + last.len() || !s.starts_with(&**first) || !s.ends_with(&**last) {
            return false;
        }
        // Both ends are whole UTF-8 sequences, so these are character boundaries.
        let mut between = &s[first.len()..s.len() - last.len()];
        for piece in middle {
            match between.find(&**piece) {
                Some(at) => between = &between[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// A `cidr` value: an IPv4 or IPv6 network and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Reads `ADDRESS/BITS`. Host bits below the prefix are allowed and ignored
    /// (`10.0.0.7/24` is `10.0.0.0/24`); `/32` and `/128` name one address.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('/');
        let (Some(address), Some(bits), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{text:?}: one '/' is required"));
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?}: {address:?} is not an IP address"))?;
        let prefix: u8 = bits
            .parse()
            .map_err(|_| format!("{text:?}: the prefix length must be an integer"))?;
        let width = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > width {
            return Err(format!(
                "{text:?}: the prefix length of an IPv{} block is at most {width}",
                if width == 32 { 4 } else { 6 }
            ));
        }
        Ok(Self { network, prefix })
    }

    /// Whether `s` is an address of the same family inside the block.
    pub(super) fn contains(&self, s: &str) -> bool {
        match (self.network, s.parse::<IpAddr>()) {
            (IpAddr::V4(net), Ok(IpAddr::V4(ip))) => same_network(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), Ok(IpAddr::V6(ip))) => {
                same_network(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the leading `prefix` of the low `width` bits of `a` and `b` are equal.
fn same_network(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    let host_bits = u32::from(width - prefix);
    (a ^ b).checked_shr(host_bits).unwrap_or(0) == 0
}

/// The form case-insensitive operands are stored in: Unicode lowercase.
pub(super) fn fold(s: &str) -> Box<str> {
    s.to_lowercase().into_boxed_str()
}

fn folded(s: &str) -> impl DoubleEndedIterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// `value` equals `operand` (already [`fold`]ed) ignoring case; allocation-free.
pub(super) fn equals_ignore_case(value: &str, operand: &str) -> bool {
    folded(value).eq(operand.chars())
}

/// `value` starts with `operand` (already [`fold`]ed) ignoring case.
pub(super) fn starts_with_ignore_case(value: &str, operand: &str) -> bool {
    let mut value = folded(value);
    operand.chars().all(|c| value.next() == Some(c))
}

/// `value` ends with `operand` (already [`fold`]ed) ignoring case.
pub(super) fn ends_with_ignore_case(value: &str, operand: &str) -> bool {
    let mut value = folded(value).rev();
    operand.chars().rev().all(|c| value.next() == Some(c))
}
