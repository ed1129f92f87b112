//! Route keys of HTTP APIs (`GET /pets/{id}`, `ANY /files/{proxy+}`, `$default`) and
//! the choice of the route a request takes.
//!
//! A request takes the most specific route that matches it, as API Gateway chooses:
//! segment by segment from the left, a literal segment beats a `{parameter}`, which beats
//! a greedy `{name+}`; at equal paths a route of the request's method beats `ANY`; the
//! `$default` route takes what no other matches.

use std::collections::BTreeMap;

/// The methods a route key may name.
const METHODS: &[&str] = &[
    "ANY", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
];

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}`: one segment.
    Param(String),
    /// `{name+}`: the rest of the path (one segment at least), last only.
    Greedy(String),
}

/// A parsed route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Default,
    Path {
        /// Upper case; `ANY` matches every method.
        method: String,
        segments: Vec<Segment>,
    },
}

/// Why a route key is refused (a `BadRequestException`'s message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid route key: '{key}'. {reason}")]
pub struct BadRouteKey {
    pub key: String,
    pub reason: &'static str,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl RouteKey {
    pub fn parse(raw: &str) -> Result<Self, BadRouteKey> {
        let bad = |reason| BadRouteKey {
            key: raw.to_string(),
            reason,
        };
        if raw == "$default" {
            return Ok(Self::Default);
        }
        let Some((method, path)) = raw.split_once(' ') else {
            return Err(bad(
                "A route key is '$default' or a method and a path separated by one space, as 'GET /pets'.",
            ));
        };
        if !METHODS.contains(&method) {
            return Err(bad(
                "The method must be one of ANY, GET, POST, PUT, DELETE, PATCH, HEAD and OPTIONS.",
            ));
        }
        if !path.starts_with('/') || path.contains(' ') || path.len() > 1024 {
            return Err(bad("The path must start with '/' and contain no spaces."));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = if path == "/" {
            Vec::new()
        } else {
            path[1..].split('/').collect()
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(bad("The path has an empty segment."));
            }
            if let Some(inner) = part.strip_prefix('{') {
                let Some(inner) = inner.strip_suffix('}') else {
                    return Err(bad(
                        "A path parameter is a whole segment in braces, as '{id}'.",
                    ));
                };
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_name(name) {
                    return Err(bad(
                        "A path parameter's name is letters, digits, '_', '-' and '.'.",
                    ));
                }
                if !names.insert(name.to_string()) {
                    return Err(bad("A path parameter is named twice."));
                }
                if greedy {
                    if i + 1 != parts.len() {
                        return Err(bad(
                            "A greedy path parameter ('{proxy+}') must be the last segment.",
                        ));
                    }
                    segments.push(Segment::Greedy(name.to_string()));
                } else {
                    segments.push(Segment::Param(name.to_string()));
                }
            } else if part.contains('{') || part.contains('}') {
                return Err(bad(
                    "A path parameter is a whole segment in braces, as '{id}'.",
                ));
            } else {
                segments.push(Segment::Literal((*part).to_string()));
            }
        }
        Ok(Self::Path {
            method: method.to_string(),
            segments,
        })
    }

    /// The route's path as written (`/pets/{id}`), `$default` for the default route.
    pub fn path(&self) -> String {
        match self {
            Self::Default => "$default".into(),
            Self::Path { segments, .. } => {
                let mut out = String::new();
                for s in segments {
                    out.push('/');
                    match s {
                        Segment::Literal(l) => out.push_str(l),
                        Segment::Param(n) => {
                            out.push('{');
                            out.push_str(n);
                            out.push('}');
                        }
                        Segment::Greedy(n) => {
                            out.push('{');
                            out.push_str(n);
                            out.push_str("+}");
                        }
                    }
                }
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
        }
    }

    /// How well this key matches a request: `None` when it does not; else a rank (greater
    /// is more specific) and the path parameters (decoded).
    fn matches(
        &self,
        method: &str,
        path_segments: &[&str],
    ) -> Option<(Vec<u8>, BTreeMap<String, String>)> {
        let Self::Path {
            method: route_method,
            segments,
        } = self
        else {
            return Some((Vec::new(), BTreeMap::new()));
        };
        if route_method != "ANY" && route_method != method {
            return None;
        }
        let mut rank = Vec::with_capacity(segments.len() + 2);
        let mut params = BTreeMap::new();
        let mut at = 0;
        for segment in segments {
            match segment {
                Segment::Literal(l) => {
                    if path_segments.get(at) != Some(&l.as_str()) {
                        return None;
                    }
                    rank.push(3);
                    at += 1;
                }
                Segment::Param(name) => {
                    let value = path_segments.get(at).filter(|v| !v.is_empty())?;
                    params.insert(name.clone(), decode(value));
                    rank.push(2);
                    at += 1;
                }
                Segment::Greedy(name) => {
                    if at >= path_segments.len() || path_segments[at..].concat().is_empty() {
                        return None;
                    }
                    params.insert(name.clone(), decode(&path_segments[at..].join("/")));
                    rank.push(1);
                    at = path_segments.len();
                }
            }
        }
        if at != path_segments.len() {
            return None;
        }
        // Longer matches first (a literal beats the end of a shorter route), then the
        // request's own method before ANY.
        rank.push(if route_method == "ANY" { 1 } else { 2 });
        let mut ranked = vec![1];
        ranked.extend(rank);
        Some((ranked, params))
    }
}

fn decode(segment: &str) -> String {
    percent_decode(segment)
}

/// `%XX` decoded (as UTF-8, lossy); a `%` not followed by two hex digits stays.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The route a request takes among `routes` (route key -> value), with its path
/// parameters.
pub fn choose<'r, T>(
    routes: impl IntoIterator<Item = (&'r RouteKey, T)>,
    method: &str,
    path: &str,
) -> Option<(T, BTreeMap<String, String>)> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    let mut best: Option<(Vec<u8>, T, BTreeMap<String, String>)> = None;
    for (key, value) in routes {
        let Some((rank, params)) = key.matches(method, &segments) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(r, ..)| compare(&rank, r).is_gt())
        {
            best = Some((rank, value, params));
        }
    }
    best.map(|(_, value, params)| (value, params))
}

/// `$default` (empty rank) loses to every path route.
fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RouteKey {
        RouteKey::parse(s).unwrap()
    }

    fn pick(keys: &[&str], method: &str, path: &str) -> Option<(String, BTreeMap<String, String>)> {
        let parsed: Vec<(RouteKey, &str)> = keys.iter().map(|k| (key(k), *k)).collect();
        choose(parsed.iter().map(|(k, s)| (k, s.to_string())), method, path)
    }

    #[test]
    fn route_keys_parse_and_bad_ones_are_refused() {
        assert_eq!(key("$default"), RouteKey::Default);
        assert_eq!(key("GET /pets/{id}").path(), "/pets/{id}");
        assert_eq!(key("ANY /{proxy+}").path(), "/{proxy+}");
        assert_eq!(key("GET /").path(), "/");
        for bad in [
            "GET",
            "FETCH /x",
            "get /x",
            "GET pets",
            "GET /a//b",
            "GET /{proxy+}/x",
            "GET /a{b}",
            "GET /{a}/{a}",
            "GET /{}",
            "GET  /x",
        ] {
            assert!(RouteKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let keys = [
            "GET /pets",
            "GET /pets/{id}",
            "GET /pets/dog",
            "ANY /pets/{id}",
            "ANY /{proxy+}",
            "$default",
        ];
        assert_eq!(pick(&keys, "GET", "/pets").unwrap().0, "GET /pets");
        assert_eq!(pick(&keys, "GET", "/pets/dog").unwrap().0, "GET /pets/dog");
        let (route, params) = pick(&keys, "GET", "/pets/cat%20x").unwrap();
        assert_eq!(route, "GET /pets/{id}");
        assert_eq!(params["id"], "cat x");
        assert_eq!(
            pick(&keys, "DELETE", "/pets/7").unwrap().0,
            "ANY /pets/{id}"
        );
        let (route, params) = pick(&keys, "POST", "/a/b/c").unwrap();
        assert_eq!(route, "ANY /{proxy+}");
        assert_eq!(params["proxy"], "a/b/c");
        assert_eq!(pick(&keys, "POST", "/").unwrap().0, "$default");
        assert_eq!(pick(&["GET /pets"], "POST", "/pets"), None);
        assert_eq!(pick(&["GET /pets/{id}"], "GET", "/pets/"), None);
        assert_eq!(pick(&["GET /"], "GET", "/").unwrap().0, "GET /");
    }
}
