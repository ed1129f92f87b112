//! Deliveries to HTTP and HTTPS endpoints: one POST per attempt, as SNS makes it (its
//! headers, a 15 s limit), over a client that keeps connections to an endpoint alive
//! between deliveries. HTTPS endpoints must present a certificate the host trusts (its
//! certificate store, or the file `SSL_CERT_FILE` names), as SNS requires a trusted one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one attempt may take, answer included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Checks an endpoint URL of `scheme` (`http` or `https`): `scheme://host[:port][/path]`.
pub fn parse_endpoint(endpoint: &str, scheme: &str) -> Result<Uri, String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint} is not a URL: {e}"))?;
    if uri.scheme_str() != Some(scheme) {
        return Err(format!("{endpoint} must start with {scheme}://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint} names no host"));
    }
    Ok(uri)
}

/// How an attempt ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// The endpoint answered with a status outside 200–299.
    Status(u16),
    /// No answer: refused, reset, timed out.
    Unreachable(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status) => write!(f, "the endpoint answered {status}"),
            Self::Unreachable(reason) => write!(f, "the endpoint could not be reached: {reason}"),
        }
    }
}

#[derive(Clone)]
pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpSender {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no trusted certificates found (the host's store, SSL_CERT_FILE): deliveries to https endpoints will fail");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        };
        let https = tls.https_or_http().enable_http1().wrap_connector(connector);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
        }
    }

    /// POSTs `body` with `headers`; `Ok` for a 2xx answer.
    pub async fn post(
        &self,
        endpoint: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<(), HttpFailure> {
        let uri = endpoint
            .parse::<Uri>()
            .map_err(|e| HttpFailure::Unreachable(e.to_string()))?;
        let mut request = hyper::Request::post(uri);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpFailure::Unreachable(e.to_string()))?;
        let attempt = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpFailure::Unreachable(error_chain(&e)))?;
            let status = response.status();
            // Read the answer so the connection can be used again.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(HttpFailure::Status(status.as_u16()))
            }
        };
        tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(HttpFailure::Unreachable(format!(
                    "no answer within {ATTEMPT_TIMEOUT:?}"
                )))
            })
    }
}

/// An error with its sources, for a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_urls_of_their_scheme_with_a_host() {
        assert!(parse_endpoint("http://127.0.0.1:8080/hook", "http").is_ok());
        assert!(parse_endpoint("http://localhost", "http").is_ok());
        assert!(parse_endpoint("https://localhost/x", "https").is_ok());
        for bad in [
            "https://x/",
            "ftp://x/",
            "127.0.0.1:80",
            "not a url",
            "http:///path",
        ] {
            assert!(parse_endpoint(bad, "http").is_err(), "{bad}");
        }
        assert!(parse_endpoint("http://x/", "https").is_err());
    }

    #[tokio::test]
    async fn a_post_reports_the_status_or_that_nothing_answered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut statuses = ["200 OK", "500 Internal Server Error"].into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                let status = statuses.next().unwrap_or("404 Not Found");
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let sender = HttpSender::new();
        let url = format!("http://{addr}/");
        let headers = [("x-amz-sns-message-type", "Notification".to_string())];
        assert_eq!(sender.post(&url, &headers, "{}".into()).await, Ok(()));
        assert_eq!(
            sender.post(&url, &headers, "{}".into()).await,
            Err(HttpFailure::Status(500))
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert!(matches!(
            sender.post(&gone, &headers, "{}".into()).await,
            Err(HttpFailure::Unreachable(_))
        ));
    }
}
