//! Queue URLs: made from the host a request was sent to and this server's account, and
//! checked against them (`http[s]://host/<account>/<name>`).

use axum::http::StatusCode;

use super::error::SqsError;

/// The address queue URLs are made of and checked against: the host a request was sent
/// to and this server's account.
pub(super) struct Endpoint {
    pub host: String,
    /// The public listener's `host:port`: queue URLs naming it are ours on every
    /// listener (a function given a queue URL from outside uses it on its own endpoint).
    pub public: Option<String>,
    pub account: String,
}

impl Endpoint {
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{}/{name}", self.host, self.account)
    }

    /// The queue name of a queue URL (`http[s]://host/<account>/<name>`), refused as SQS
    /// refuses it when it names another account's queue or another endpoint.
    pub fn queue_name(&self, url: &str) -> Result<String, SqsError> {
        let invalid = || SqsError::invalid(format!("Invalid QueueUrl: {url}"));
        let (host, path) = match url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        {
            Some(rest) => match rest.split_once('/') {
                Some((host, path)) => (Some(host), path),
                None => return Err(invalid()),
            },
            None => (None, url.strip_prefix('/').ok_or_else(invalid)?),
        };
        let mut parts = path.trim_end_matches('/').split('/');
        let (Some(account), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        if name.is_empty() || account.is_empty() {
            return Err(invalid());
        }
        let ours = |h: &str| {
            same_host(h, &self.host) || self.public.as_deref().is_some_and(|p| same_host(h, p))
        };
        if let Some(host) = host.filter(|h| !ours(h)) {
            return Err(SqsError {
                status: StatusCode::NOT_FOUND,
                shape: "InvalidAddress",
                code: "InvalidAddress",
                message: format!(
                    "The address {url} is not valid for this endpoint ({host} is not {})",
                    self.host
                ),
            });
        }
        if account != self.account {
            return Err(SqsError {
                status: StatusCode::FORBIDDEN,
                shape: "AccessDenied",
                code: "AccessDenied",
                message: format!("Access to the resource {url} is denied."),
            });
        }
        Ok(name.to_string())
    }
}

/// Whether two `host[:port]`s name this server alike: equal, or both loopback names
/// (`localhost`, `127.x.y.z`, `[::1]`) with the same port.
fn same_host(a: &str, b: &str) -> bool {
    fn split(h: &str) -> (String, &str) {
        let h = h.trim();
        match h.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && !port.contains(']') => {
                (name.to_ascii_lowercase(), port)
            }
            _ => (h.to_ascii_lowercase(), ""),
        }
    }
    let loopback = |name: &str| {
        name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let ((name_a, port_a), (name_b, port_b)) = (split(a), split(b));
    port_a == port_b && (name_a == name_b || (loopback(&name_a) && loopback(&name_b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Endpoint {
        Endpoint {
            host: "127.0.0.1:9600".into(),
            public: None,
            account: "000000000000".into(),
        }
    }

    #[test]
    fn queue_urls_of_the_public_listener_are_ours_on_a_functions_endpoint() {
        // A function's own endpoint (127.0.0.1:9002 inside its namespace) is given a URL
        // made by the public listener.
        let inside = Endpoint {
            host: "127.0.0.1:9002".into(),
            public: Some("127.0.0.1:9600".into()),
            account: "000000000000".into(),
        };
        let public = "http://127.0.0.1:9600/000000000000/jobs";
        assert_eq!(inside.queue_name(public).unwrap(), "jobs");
        assert_eq!(inside.queue_name(&inside.url("jobs")).unwrap(), "jobs");
        let other_port = inside
            .queue_name("http://127.0.0.1:9700/000000000000/jobs")
            .unwrap_err();
        assert_eq!(other_port.code, "InvalidAddress");
        assert_eq!(ours().queue_name(public).unwrap(), "jobs");
    }

    #[test]
    fn queue_urls_of_this_endpoint_and_account_only() {
        let e = ours();
        assert_eq!(e.queue_name(&e.url("jobs")).unwrap(), "jobs");
        assert_eq!(
            e.queue_name("http://localhost:9600/000000000000/jobs")
                .unwrap(),
            "jobs"
        );
        assert_eq!(e.queue_name("/000000000000/jobs/").unwrap(), "jobs");
        let other_account = e
            .queue_name("http://127.0.0.1:9600/123456789012/jobs")
            .unwrap_err();
        assert_eq!(
            (other_account.status, other_account.code),
            (StatusCode::FORBIDDEN, "AccessDenied")
        );
        let other_host = e
            .queue_name("https://sqs.us-east-1.amazonaws.com/000000000000/jobs")
            .unwrap_err();
        assert_eq!(other_host.code, "InvalidAddress");
        let other_port = e
            .queue_name("http://127.0.0.1:9700/000000000000/jobs")
            .unwrap_err();
        assert_eq!(other_port.code, "InvalidAddress");
        for bad in [
            "jobs",
            "http://127.0.0.1:9600",
            "http://127.0.0.1:9600/jobs",
            "/a/b/c",
        ] {
            assert_eq!(
                e.queue_name(bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }
}
