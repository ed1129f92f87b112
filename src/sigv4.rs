//! AWS Signature Version 4: signing (for the CLI) and verification (for the API).
//!
//! Owns the canonical request, the string to sign and the signing key derivation exactly
//! as AWS documents them for services other than S3: the canonical URI is the request
//! path URI-encoded once more, the query is sorted and strictly encoded, headers are
//! lower-cased, trimmed and sorted. Verification also enforces the 15-minute clock skew
//! window. Nothing here knows about HTTP frameworks: inputs are plain strings and bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Requests signed further than this from the server's clock are refused.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding: unreserved characters stay, everything else is `%XX`.
fn encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&input[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The parts of a request that a signature covers.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Header names (any case) and values, as received.
    pub headers: Vec<(String, String)>,
    pub payload_sha256: String,
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), false), encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_request(parts: &RequestParts<'_>, signed_headers: &[String]) -> String {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let name = name.to_ascii_lowercase();
        if signed_headers.contains(&name) {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            headers.entry(name).or_default().push(value);
        }
    }
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values = headers.get(name).map(|v| v.join(",")).unwrap_or_default();
        let _ = writeln!(canonical_headers, "{name}:{values}");
    }
    let path = if parts.path.is_empty() {
        "/"
    } else {
        parts.path
    };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        encode(path.as_bytes(), true),
        canonical_query(parts.query),
        canonical_headers,
        signed_headers.join(";"),
        parts.payload_sha256
    )
}

fn signature(secret: &str, amz_date: &str, scope: &str, canonical: &str) -> String {
    let mut segments = scope.split('/');
    let date = segments.next().unwrap_or_default();
    let region = segments.next().unwrap_or_default();
    let service = segments.next().unwrap_or_default();
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex(&hmac(&k_signing, &string_to_sign))
}

/// Signs a request: returns the headers to add (`x-amz-date`, `authorization`).
/// `parts.headers` must already contain `host`.
pub fn sign(
    parts: &RequestParts<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    epoch_secs: u64,
) -> Vec<(&'static str, String)> {
    let date_time = crate::timefmt::amz_date(epoch_secs);
    let scope = format!("{}/{region}/{service}/aws4_request", &date_time[..8]);
    let mut headers = parts.headers.clone();
    headers.push(("x-amz-date".into(), date_time.clone()));
    let mut signed: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let parts = RequestParts {
        method: parts.method,
        path: parts.path,
        query: parts.query,
        headers,
        payload_sha256: parts.payload_sha256.clone(),
    };
    let canonical = canonical_request(&parts, &signed);
    let sig = signature(secret, &date_time, &scope, &canonical);
    vec![
        ("x-amz-date", date_time),
        (
            "authorization",
            format!(
                "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        ),
    ]
}

/// Why a request was not authenticated; each maps to Lambda's 403 exceptions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error(
        "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters of the AWS4-HMAC-SHA256 algorithm"
    )]
    Malformed,
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("Signature expired: {0} is outside the 15 minute window of the server's time.")]
    Expired(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// The body does not hash to the `x-amz-content-sha256` the signature covered.
    #[error(
        "The provided 'x-amz-content-sha256' header does not match what was computed from the request body."
    )]
    PayloadHashMismatch,
}

impl AuthError {
    /// Lambda's exception name.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Malformed => "IncompleteSignatureException",
            Self::UnknownKey => "UnrecognizedClientException",
            Self::Expired(_) | Self::Mismatch | Self::PayloadHashMismatch => {
                "InvalidSignatureException"
            }
        }
    }
}

/// The parsed `Authorization` header.
struct Authorization {
    access_key: String,
    scope: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    /// The service the credential scope (`<date>/<region>/<service>/aws4_request`) names.
    fn service(&self) -> Option<&str> {
        self.scope.split('/').nth(2)
    }
}

/// The service a well-formed `Authorization` header's credential scope names (what the
/// request was signed for), before anything is verified.
pub fn signed_service(authorization: &str) -> Option<String> {
    parse_authorization(authorization)
        .ok()?
        .service()
        .map(str::to_string)
}

fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or(AuthError::Malformed)?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for field in rest.split(',') {
        let (k, v) = field.trim().split_once('=').ok_or(AuthError::Malformed)?;
        match k {
            "Credential" => credential = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.to_string()),
            "Signature" => signature = Some(v.to_string()),
            _ => {}
        }
    }
    let credential = credential.ok_or(AuthError::Malformed)?;
    let (access_key, scope) = credential.split_once('/').ok_or(AuthError::Malformed)?;
    if scope.split('/').count() != 4 || !scope.ends_with("/aws4_request") {
        return Err(AuthError::Malformed);
    }
    Ok(Authorization {
        access_key: access_key.to_string(),
        scope: scope.to_string(),
        signed_headers: signed
            .ok_or(AuthError::Malformed)?
            .split(';')
            .map(str::to_string)
            .collect(),
        signature: signature.ok_or(AuthError::Malformed)?,
    })
}

/// A key's secret, and the session token a temporary key must be presented with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret: String,
    /// Set for temporary credentials: the request's `x-amz-security-token` must equal it.
    pub session_token: Option<String>,
}

/// Where verification finds the secret of an access key id.
pub trait Keyring {
    fn credential(&self, access_key: &str) -> Option<Credential>;
}

/// Configured keys: access key id -> secret, no session token.
impl Keyring for std::collections::HashMap<String, String> {
    fn credential(&self, access_key: &str) -> Option<Credential> {
        self.get(access_key).map(|secret| Credential {
            secret: secret.clone(),
            session_token: None,
        })
    }
}

impl<K: Keyring + ?Sized> Keyring for &K {
    fn credential(&self, access_key: &str) -> Option<Credential> {
        (**self).credential(access_key)
    }
}

/// Two keyrings in turn: the first one's keys, then the second one's.
impl<A: Keyring, B: Keyring> Keyring for (A, B) {
    fn credential(&self, access_key: &str) -> Option<Credential> {
        self.0
            .credential(access_key)
            .or_else(|| self.1.credential(access_key))
    }
}

/// Compares two strings in time that depends on their lengths only.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Verifies a signed request against a keyring. The checks that need no body: a
/// well-formed `Authorization` for `service`, a known key (with its session token, for
/// a temporary one), a date within the skew window. Run before a body is read, so that
/// an unauthenticated client cannot make the server buffer anything.
pub fn check_headers(
    parts: &RequestParts<'_>,
    keys: &impl Keyring,
    now_epoch_secs: u64,
    service: &str,
) -> Result<(), AuthError> {
    authorize(parts, keys, now_epoch_secs, service).map(|_| ())
}

struct Authorized<'a> {
    auth: Authorization,
    secret: String,
    date_time: &'a str,
}

fn authorize<'a>(
    parts: &'a RequestParts<'_>,
    keys: &impl Keyring,
    now_epoch_secs: u64,
    service: &str,
) -> Result<Authorized<'a>, AuthError> {
    let header = |name: &str| {
        parts
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let authorization = header("authorization").ok_or(AuthError::Missing)?;
    let auth = parse_authorization(authorization)?;
    if auth.service() != Some(service) {
        return Err(AuthError::Mismatch);
    }
    let credential = keys
        .credential(&auth.access_key)
        .ok_or(AuthError::UnknownKey)?;
    if let Some(token) = &credential.session_token
        && !header("x-amz-security-token").is_some_and(|sent| constant_time_eq(sent, token))
    {
        return Err(AuthError::UnknownKey);
    }
    let date_time = header("x-amz-date").ok_or(AuthError::Malformed)?;
    let signed_at = crate::timefmt::parse_amz_date(date_time).ok_or(AuthError::Malformed)?;
    if (signed_at as i64 - now_epoch_secs as i64).abs() > MAX_SKEW_SECS {
        return Err(AuthError::Expired(date_time.to_string()));
    }
    if !auth.scope.starts_with(&date_time[..8]) {
        return Err(AuthError::Mismatch);
    }
    Ok(Authorized {
        auth,
        secret: credential.secret,
        date_time,
    })
}

/// Verifies a signed request for `service` against a keyring; returns the access key id.
pub fn verify(
    parts: &RequestParts<'_>,
    keys: &impl Keyring,
    now_epoch_secs: u64,
    service: &str,
) -> Result<String, AuthError> {
    let Authorized {
        auth,
        secret,
        date_time,
    } = authorize(parts, keys, now_epoch_secs, service)?;
    let canonical = canonical_request(parts, &auth.signed_headers);
    let expected = signature(&secret, date_time, &auth.scope, &canonical);
    if constant_time_eq(&expected, &auth.signature) {
        Ok(auth.access_key)
    } else {
        Err(AuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> std::collections::HashMap<String, String> {
        [(
            "AKIDEXAMPLE".to_string(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn the_signed_service_is_read_from_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signed_service(header).as_deref(), Some("sqs"));
        for malformed in [
            "",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs, SignedHeaders=host, Signature=abc",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
            "Basic dXNlcjpwYXNz",
        ] {
            assert_eq!(signed_service(malformed), None, "{malformed}");
        }
    }

    /// AWS's published example (get-vanilla-query-order-key-case, service "service").
    #[test]
    fn matches_the_aws_test_suite() {
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: vec![
                ("Host".into(), "example.amazonaws.com".into()),
                ("X-Amz-Date".into(), "20150830T123600Z".into()),
            ],
            payload_sha256: sha256_hex(b""),
        };
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let canonical = canonical_request(&parts, &signed);
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical,
        );
        assert_eq!(
            sig,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn sign_then_verify_round_trips_and_detects_tampering() {
        let now = 1_700_000_000;
        let base = RequestParts {
            method: "POST",
            path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations",
            query: "Qualifier=live",
            headers: vec![("host".into(), "127.0.0.1:9600".into())],
            payload_sha256: sha256_hex(b"{}"),
        };
        let added = sign(
            &base,
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "lambda",
            now,
        );
        let mut headers = base.headers.clone();
        headers.extend(added.into_iter().map(|(k, v)| (k.to_string(), v)));
        let signed = RequestParts {
            headers: headers.clone(),
            ..base
        };
        assert_eq!(
            verify(&signed, &keys(), now, "lambda"),
            Ok("AKIDEXAMPLE".to_string())
        );
        let tampered = RequestParts {
            payload_sha256: sha256_hex(b"{\"x\":1}"),
            headers: headers.clone(),
            ..signed
        };
        assert_eq!(
            verify(&tampered, &keys(), now, "lambda"),
            Err(AuthError::Mismatch)
        );
        let late = RequestParts {
            headers: headers.clone(),
            ..tampered
        };
        let late = RequestParts {
            payload_sha256: sha256_hex(b"{}"),
            ..late
        };
        assert!(matches!(
            verify(&late, &keys(), now + 16 * 60, "lambda"),
            Err(AuthError::Expired(_))
        ));
        let unsigned = RequestParts {
            headers: vec![("host".into(), "x".into())],
            ..late
        };
        assert_eq!(
            verify(&unsigned, &keys(), now, "lambda"),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn a_temporary_key_needs_its_session_token() {
        struct Temporary;
        impl Keyring for Temporary {
            fn credential(&self, access_key: &str) -> Option<Credential> {
                (access_key == "ASIATEMPORARY").then(|| Credential {
                    secret: "temporary-secret".into(),
                    session_token: Some("the-token".into()),
                })
            }
        }
        let now = 1_700_000_000;
        let signed_with = |token: Option<&str>| {
            let mut headers = vec![("host".to_string(), "127.0.0.1:9002".to_string())];
            if let Some(token) = token {
                headers.push(("x-amz-security-token".into(), token.into()));
            }
            let base = RequestParts {
                method: "GET",
                path: "/2015-03-31/functions",
                query: "",
                headers: headers.clone(),
                payload_sha256: sha256_hex(b""),
            };
            let added = sign(
                &base,
                "ASIATEMPORARY",
                "temporary-secret",
                "us-east-1",
                "lambda",
                now,
            );
            headers.extend(added.into_iter().map(|(k, v)| (k.to_string(), v)));
            RequestParts { headers, ..base }
        };
        // Configured keys first, then the temporary ones.
        let keyring = (keys(), Temporary);
        assert_eq!(
            verify(&signed_with(Some("the-token")), &keyring, now, "lambda"),
            Ok("ASIATEMPORARY".to_string())
        );
        assert_eq!(
            verify(&signed_with(None), &keyring, now, "lambda"),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&signed_with(Some("another-token")), &keyring, now, "lambda"),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&signed_with(Some("the-token")), &keys(), now, "lambda"),
            Err(AuthError::UnknownKey)
        );
    }
}
