//! Function URLs: a function's (or an alias's) own HTTP endpoint, as Lambda's.
//!
//! Owns what a URL is (its settings as persisted in the function's document, its id and
//! its addresses), and the pure translations a request goes through: the HTTP request
//! into payload format 2.0 ([`event`]), the function's output into the HTTP answer
//! ([`answer`]), and CORS ([`cors`]). The front that serves URL requests is
//! `api::url_front`; the operations that configure them are `api::urls`.
//!
//! A URL is served at `http://<url-id>.lambda-url.<region>.localhost:<port>/` (browsers
//! and curl resolve every `*.localhost` name to loopback) and, for clients that cannot
//! choose the host they send, at `http://<host>:<port>/lambda-url/<url-id>/`.

pub mod answer;
pub mod cors;
pub mod event;

use serde::{Deserialize, Serialize};

pub use cors::Cors;

/// How callers of a URL are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    /// Anyone who can reach it, once the function's policy allows `InvokeFunctionUrl`
    /// for `*`.
    #[serde(rename = "NONE")]
    None,
    /// Requests signed (SigV4, service `lambda`) with the server's keys.
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "NONE" => Some(Self::None),
            "AWS_IAM" => Some(Self::AwsIam),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::AwsIam => "AWS_IAM",
        }
    }
}

/// Whether the answer is sent once the function has finished or as it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvokeMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "BUFFERED" => Some(Self::Buffered),
            "RESPONSE_STREAM" => Some(Self::ResponseStream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buffered => "BUFFERED",
            Self::ResponseStream => "RESPONSE_STREAM",
        }
    }
}

/// One function URL, as kept in its function's document (keyed there by the qualifier it
/// serves: an alias name, or `$LATEST` for the unqualified function).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlConfig {
    /// 32 lowercase letters and digits: the first label of its host name.
    pub url_id: String,
    pub auth_type: AuthType,
    #[serde(default)]
    pub cors: Option<Cors>,
    #[serde(default)]
    pub invoke_mode: InvokeMode,
    pub created_ms: u64,
    pub modified_ms: u64,
}

/// Length of a URL id.
pub const URL_ID_LEN: usize = 32;

/// A new URL id: 32 random lowercase letters and digits (as Lambda's), from a v4 UUID's
/// 122 random bits and a second one's.
pub fn new_url_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bits = uuid::Uuid::new_v4().as_u128() ^ uuid::Uuid::new_v4().as_u128().rotate_left(7);
    let mut id = String::with_capacity(URL_ID_LEN);
    for _ in 0..URL_ID_LEN {
        id.push(ALPHABET[(bits % 36) as usize] as char);
        bits /= 36;
        if bits == 0 {
            bits = uuid::Uuid::new_v4().as_u128();
        }
    }
    id
}

fn is_url_id(id: &str) -> bool {
    id.len() == URL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The host-name form of a URL: `http://<id>.lambda-url.<region>.localhost:<port>/`.
pub fn url_of(url_id: &str, region: &str, port: u16) -> String {
    format!("http://{url_id}.lambda-url.{region}.localhost:{port}/")
}

/// The prefix of the path form.
pub const PATH_PREFIX: &str = "/lambda-url/";

/// A request addressed to a function URL: its id, and the path the function sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed<'a> {
    pub url_id: &'a str,
    /// The request's path as the URL's own (`/` at least).
    pub path: &'a str,
    /// The host name the request named (`<id>.lambda-url.<region>.localhost`), or, in the
    /// path form, none.
    pub domain: Option<&'a str>,
}

/// A `Host` header's name, without its port.
pub fn host_name(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// Whether a request (its `Host` header and path) is for a function URL, and which.
pub fn addressed<'a>(host: Option<&'a str>, path: &'a str) -> Option<Addressed<'a>> {
    let (url_id, path, domain) = address(
        host,
        path,
        |rest| rest.starts_with("lambda-url."),
        PATH_PREFIX,
        is_url_id,
    )?;
    Some(Addressed {
        url_id,
        path,
        domain,
    })
}

/// `(id, path, host name)` of a request for an endpoint served by host name
/// (`<id>.<zone>`, where `in_zone` takes what follows the id) or by path
/// (`<prefix><id>/...`; no host name then); `is_id` says which ids are well formed.
pub fn address<'a>(
    host: Option<&'a str>,
    path: &'a str,
    in_zone: impl Fn(&str) -> bool,
    prefix: &str,
    is_id: impl Fn(&str) -> bool,
) -> Option<(&'a str, &'a str, Option<&'a str>)> {
    if let Some(host) = host {
        let name = host_name(host);
        if let Some((id, rest)) = name.split_once('.')
            && in_zone(rest)
            && is_id(id)
        {
            return Some((id, path, Some(name)));
        }
    }
    let rest = path.strip_prefix(prefix)?;
    let (id, tail) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    is_id(id).then_some((id, tail, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_letters_and_digits_and_differ() {
        let a = new_url_id();
        let b = new_url_id();
        assert!(is_url_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn requests_are_addressed_by_host_or_by_path() {
        let id = "abcdefghijklmnopqrstuvwxyz012345";
        let host = format!("{id}.lambda-url.us-east-1.localhost:9000");
        assert_eq!(
            addressed(Some(&host), "/a/b"),
            Some(Addressed {
                url_id: id,
                path: "/a/b",
                domain: Some(&host[..host.len() - 5]),
            })
        );
        let path = format!("/lambda-url/{id}/x?y");
        let found = addressed(Some("127.0.0.1:9000"), &path).unwrap();
        assert_eq!((found.url_id, found.path, found.domain), (id, "/x?y", None));
        let bare = format!("/lambda-url/{id}");
        assert_eq!(addressed(None, &bare).unwrap().path, "/");
        // Not URLs: the API, a short id, another host.
        assert_eq!(
            addressed(Some("127.0.0.1:9000"), "/2015-03-31/functions"),
            None
        );
        assert_eq!(addressed(Some("abc.lambda-url.x.localhost"), "/"), None);
        assert_eq!(addressed(Some("example.com"), "/lambda-url/short/"), None);
    }
}
