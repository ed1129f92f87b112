//! The platform API endpoint of one environment: the whole Shoal API, served on a
//! listener of the environment's own (`AWS_ENDPOINT_URL`), so that a function's SDK
//! reaches the platform from inside (network mode `none` included) as a Lambda function
//! reaches AWS.
//!
//! Owns the second listener every environment has beside its Runtime API: inside the
//! network namespace at [`crate::environment::isolation::plan::PLATFORM_API_ADDR`]
//! (isolated), or on an ephemeral port of the host's loopback with the same peer check
//! as the Runtime API (unisolated). Every request goes to the same router as the public
//! listener (set once at start by [`PlatformApi::route_to`]: the router is built after
//! the environments' launcher), with the calling environment's [`Caller`] as a request
//! extension, which the API's request span shows. Authentication is the router's own:
//! on a keyed server the request must be signed, with the credentials the environment
//! was issued ([`CredentialRegistry`]) or any other valid ones.
//!
//! A port of its own rather than paths of the Runtime API's: the Runtime API keeps its
//! limits and its slots for the runtime (an SDK's connection pool would take them), and
//! API requests get the API's head limit, not the 1 MiB the Runtime API allows.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;

use super::listener::{self, ListenerLimits};
use super::peer::PeerCheck;
use crate::credentials::{Caller, CredentialRegistry};

/// Connections one environment's platform endpoint serves at once: an SDK client pools
/// up to 10, and a function may hold a few clients.
pub const PLATFORM_API_MAX_CONNECTIONS: usize = 32;

/// What environments reach the platform through, shared by all of them.
pub struct PlatformApi {
    /// Issues each environment its credentials (and revokes them when it ends).
    pub credentials: Arc<CredentialRegistry>,
    /// The public listener's router (it holds the server's state, which holds this: the
    /// cycle is broken at shutdown by [`PlatformApi::stop_routing`]).
    router: RwLock<Option<axum::Router>>,
    limits: ListenerLimits,
}

impl PlatformApi {
    /// An endpoint whose connections have `header_timeout` to send a request head of at
    /// most `max_header_bytes` (the public listener's limits).
    pub fn new(
        credentials: Arc<CredentialRegistry>,
        header_timeout: Duration,
        max_header_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            router: RwLock::new(None),
            limits: ListenerLimits {
                max_connections: PLATFORM_API_MAX_CONNECTIONS,
                header_timeout,
                max_buf: max_header_bytes.max(crate::api::connections::MIN_HEADER_BYTES),
            },
        })
    }

    /// Serves `router` to every environment from now on.
    pub fn route_to(&self, router: axum::Router) {
        *self.router.write().unwrap_or_else(|p| p.into_inner()) = Some(router);
    }

    /// Lets the router go (at shutdown, once every environment is gone); requests get 503.
    pub fn stop_routing(&self) {
        self.router
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn router(&self) -> Option<axum::Router> {
        self.router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves the endpoint of the environment `caller` on `listener` until aborted.
    pub(super) fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        peers: Option<Arc<PeerCheck>>,
        caller: Arc<Caller>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let env: Arc<str> = caller.environment.as_str().into();
        let service = ForCaller {
            api: self.clone(),
            caller,
        };
        let connections = listener::hyper_connections(self.limits, service);
        listener::serve(
            listener,
            self.limits,
            peers,
            env,
            "platform API",
            connections,
        )
    }
}

/// The API router, for the requests of one environment.
#[derive(Clone)]
struct ForCaller {
    api: Arc<PlatformApi>,
    caller: Arc<Caller>,
}

type Answer =
    Pin<Box<dyn Future<Output = Result<hyper::Response<axum::body::Body>, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for ForCaller {
    type Response = hyper::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.caller.clone());
        match self.api.router() {
            Some(router) => {
                let service = TowerToHyperService::new(router);
                Box::pin(async move { hyper::service::Service::call(&service, request).await })
            }
            None => Box::pin(async { Ok(not_serving()) }),
        }
    }
}

/// The answer before the server has built its router (the first moments of a start) or
/// after it let it go: 503 `ServiceException`, which SDKs retry.
fn not_serving() -> hyper::Response<axum::body::Body> {
    let body = serde_json::json!({
        "Type": "Service",
        "Message": "the API is not serving",
    });
    hyper::Response::builder()
        .status(hyper::StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", "ServiceException")
        .body(axum::body::Body::from(body.to_string()))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn caller() -> Arc<Caller> {
        Arc::new(Caller {
            function: "sender".into(),
            version: "$LATEST".into(),
            environment: "e1".into(),
            role: "arn:aws:iam::000000000000:role/r".into(),
        })
    }

    /// A router that answers with the caller the request carries.
    fn echo_caller() -> axum::Router {
        axum::Router::new().route(
            "/2015-03-31/functions",
            axum::routing::get(|request: axum::extract::Request| async move {
                request
                    .extensions()
                    .get::<Arc<Caller>>()
                    .map(|caller| caller.to_string())
                    .unwrap_or_default()
            }),
        )
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("answered within 5 s")
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn requests_reach_the_router_with_the_callers_identity() {
        let api = PlatformApi::new(CredentialRegistry::new(), Duration::from_secs(10), 65536);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(api.serve(listener, None, caller()));
        let early = get(addr, "/2015-03-31/functions").await;
        assert!(early.starts_with("HTTP/1.1 503"), "{early}");
        assert!(early.contains("ServiceException"), "{early}");
        api.route_to(echo_caller());
        let answer = get(addr, "/2015-03-31/functions").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("sender:$LATEST/e1"), "{answer}");
        api.stop_routing();
        let late = get(addr, "/2015-03-31/functions").await;
        assert!(late.starts_with("HTTP/1.1 503"), "{late}");
        server.abort();
    }

    #[tokio::test]
    async fn the_runtime_api_and_the_platform_api_are_apart() {
        // The same path on each listener of one environment: the Runtime API knows
        // nothing of the platform's routes, the platform endpoint nothing of the runtime's.
        let api = PlatformApi::new(CredentialRegistry::new(), Duration::from_secs(10), 65536);
        api.route_to(echo_caller());
        let platform = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let platform_addr = platform.local_addr().unwrap();
        let platform_server = tokio::spawn(api.serve(platform, None, caller()));
        let runtime = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let runtime_addr = runtime.local_addr().unwrap();
        let (_inbox, inbox_rx) = tokio::sync::mpsc::channel(1);
        let state = Arc::new(super::super::runtime_api::RuntimeApiState::new(inbox_rx));
        let runtime_server = tokio::spawn(super::super::serve_runtime_api(
            runtime,
            state,
            None,
            "e1".into(),
        ));
        let on_runtime = get(runtime_addr, "/2015-03-31/functions").await;
        assert!(on_runtime.starts_with("HTTP/1.1 404"), "{on_runtime}");
        assert!(
            on_runtime.contains("unknown Runtime API path"),
            "{on_runtime}"
        );
        let next = "/2018-06-01/runtime/invocation/none/response";
        let on_platform = get(platform_addr, next).await;
        assert!(on_platform.starts_with("HTTP/1.1 404"), "{on_platform}");
        let listed = get(platform_addr, "/2015-03-31/functions").await;
        assert!(listed.ends_with("sender:$LATEST/e1"), "{listed}");
        platform_server.abort();
        runtime_server.abort();
    }
}
