//! A small HTTP client for Shoal's public API, used by the CLI and the benchmark.

use bytes::Bytes;
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
    #[error("{code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Client {
    endpoint: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http,
        }
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
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let unreachable = |reason: String| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
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
