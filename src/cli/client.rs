//! A small HTTP client for Shoal's public API, used by the CLI and the benchmark.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach Shoal at {endpoint}: {reason} (is `shoal server` running? set --endpoint or SHOAL_ENDPOINT)"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "the connection to {endpoint} was cut while sending a request of {megabytes} MB ({reason}): \
         the server most likely refused a request this large (Lambda takes code of up to 50 MB \
         zipped in a request)"
    )]
    UploadCut {
        endpoint: String,
        megabytes: u64,
        reason: String,
    },
    #[error("{code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// What the user can do about this error, when the CLI knows more than the server
    /// said: which variables hold the keys the CLI signs with, for an authentication
    /// failure.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Api { code, .. } if AUTH_ERRORS.contains(&code.as_str()) => Some(
                "the CLI signs requests with SHOAL_ACCESS_KEY_ID and SHOAL_SECRET_ACCESS_KEY \
                 (else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), in the region of --region, \
                 SHOAL_REGION, AWS_REGION or AWS_DEFAULT_REGION (else us-east-1); set them to \
                 a key pair the server was started with (its --access-key-id and \
                 --secret-access-key, or its --keys-file)",
            ),
            _ => None,
        }
    }
}

/// The codes of answers that refuse a request's signature or keys.
const AUTH_ERRORS: [&str; 4] = [
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
];

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// Keys that sign requests (AWS SigV4), for servers that require them.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl Credentials {
    /// `SHOAL_ACCESS_KEY_ID`/`SHOAL_SECRET_ACCESS_KEY`, else the AWS variables of the
    /// same name, in `region` (else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`).
    /// Without keys, a region given still signs, with anonymous credentials an open
    /// server does not check, so that the request acts in that region.
    pub fn from_env(region: Option<&str>) -> Option<Self> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let region = region
            .map(str::to_string)
            .or_else(|| var(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
        let keys = var(&["SHOAL_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"])
            .zip(var(&["SHOAL_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]));
        let (access_key_id, secret_access_key) = match (keys, &region) {
            (Some(keys), _) => keys,
            (None, Some(_)) => ("ANONYMOUS".to_string(), "anonymous".to_string()),
            (None, None) => return None,
        };
        Some(Self {
            access_key_id,
            secret_access_key,
            region: region.unwrap_or_else(|| "us-east-1".to_string()),
        })
    }
}

#[derive(Clone)]
pub struct Client {
    endpoint: String,
    http: HyperClient<HttpConnector, BoxBody<Bytes, Infallible>>,
    credentials: Option<Credentials>,
    /// Large request bodies say on stderr how much of them has been sent.
    progress: bool,
    /// The service requests are signed for (`lambda`, `sqs`, `sns`).
    service: &'static str,
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http,
            credentials: None,
            progress: false,
            service: "lambda",
        }
    }

    /// The same client, showing the progress of large uploads on stderr.
    pub fn with_progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// The same client, for another service's requests (signed for it). A query-protocol
    /// service is told apart by its signature's scope, so without keys its requests are
    /// signed with anonymous credentials (in `us-east-1`, or the keys' region), which an
    /// open server does not check.
    pub fn for_service(&self, service: &'static str) -> Self {
        let mut client = self.clone();
        client.service = service;
        if client.credentials.is_none() && service != "lambda" {
            client.credentials = Some(Credentials {
                access_key_id: "ANONYMOUS".into(),
                secret_access_key: "anonymous".into(),
                region: "us-east-1".into(),
            });
        }
        client
    }

    /// The same client, signing every request with `credentials`.
    pub fn signed(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`] with Lambda's code and message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        let reply = self.send_raw(method, path, headers, body).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        let parsed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let code = reply
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Error")
            .to_string();
        let message = parsed["message"]
            .as_str()
            .or(parsed["Message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).to_string());
        Err(ClientError::Api {
            status: reply.status,
            code,
            message,
        })
    }

    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        let uri = format!("{}{}", self.endpoint, path);
        let mut builder = Request::builder().method(method).uri(&uri);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/json");
        }
        let body = body.unwrap_or_default();
        if let Some(credentials) = &self.credentials {
            let uri: hyper::Uri = uri
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ClientError::Invalid(e.to_string()))?;
            let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let mut signed_headers = vec![("host".to_string(), host)];
            for (name, value) in builder.headers_ref().into_iter().flatten() {
                signed_headers.push((
                    name.as_str().to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                ));
            }
            let parts = crate::sigv4::RequestParts {
                method: builder.method_ref().map(|m| m.as_str()).unwrap_or("GET"),
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                headers: signed_headers,
                payload_sha256: crate::sigv4::sha256_hex(&body),
            };
            let added = crate::sigv4::sign(
                &parts,
                &credentials.access_key_id,
                &credentials.secret_access_key,
                &credentials.region,
                self.service,
                crate::timefmt::now_ms() / 1000,
            );
            for (name, value) in added {
                builder = builder.header(name, value);
            }
        }
        let size = body.len();
        let body = if self.progress && size >= super::progress::PROGRESS_MIN_BYTES {
            super::progress::ProgressBody::new(body).boxed()
        } else {
            Full::new(body).boxed()
        };
        let request = builder
            .body(body)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let unreachable = |reason: String| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let response = self.http.request(request).await.map_err(|e| {
            // A large body cut off on a connection that was made: refused for its size.
            if !e.is_connect() && size >= super::progress::PROGRESS_MIN_BYTES {
                ClientError::UploadCut {
                    endpoint: self.endpoint.clone(),
                    megabytes: (size as u64).div_ceil(1024 * 1024),
                    reason: e.to_string(),
                }
            } else {
                unreachable(e.to_string())
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let reply = self.send(Method::GET, path, &[], None).await?;
        serde_json::from_slice(&reply.body)
            .map_err(|e| ClientError::Invalid(format!("unreadable answer: {e}")))
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let reply = self
            .send(method, path, &[], Some(Bytes::from(body.to_string())))
            .await?;
        if reply.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| ClientError::Invalid(format!("unreadable answer: {e}")))
    }
}
