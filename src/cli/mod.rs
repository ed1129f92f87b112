//! The friendly CLI: `deploy` and `dev`, `invoke`, `logs`, `ls`, `rm`, `pending`,
//! `publish`, `alias ...`, `concurrency`, `routes`, `queue ...`, `topic ...`.
//! Every command talks to a server through the same public API any other client uses
//! (never around it): Lambda's REST API, API Gateway's (`apigatewayv2`), SQS's JSON
//! protocol and SNS's query protocol (`aws.rs`).

pub mod client;

use anyhow::bail;
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use client::Client;

pub(crate) const FUNCTIONS: &str = "/2015-03-31/functions";
pub(crate) const TAGS: &str = "/2017-03-31/tags";
pub(crate) const MAPPINGS: &str = "/2015-03-31/event-source-mappings";

/// Writes a line to stdout; a closed pipe (`shoal logs f | head`) ends the command quietly.
pub(crate) fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::emit(format_args!($($arg)*)) };
}

pub mod aws;
mod build;
mod deploy;
mod filter_pattern;
mod inputs;
pub mod logs;
mod progress;
pub mod queue;
pub mod routes;
pub mod topic;
pub mod versions;
mod watch;

pub use deploy::{DeployArgs, deploy};

#[derive(Debug, clap::Args)]
pub struct Endpoint {
    /// URL of the Shoal server.
    #[arg(
        long,
        env = "SHOAL_ENDPOINT",
        default_value = "http://127.0.0.1:9600",
        global = true
    )]
    pub endpoint: String,
    /// Region to act in (else AWS_REGION or AWS_DEFAULT_REGION; unsigned requests to an
    /// open server act in the server's `--region`).
    #[arg(long, env = "SHOAL_REGION", global = true)]
    pub region: Option<String>,
}

impl Endpoint {
    /// A client of the server, signing with the keys of the environment, in the region.
    pub fn client(&self) -> Client {
        Client::new(&self.endpoint).signed(client::Credentials::from_env(self.region.as_deref()))
    }
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function's name, or NAME:QUALIFIER (a version or alias).
    pub name: String,
    /// The event: JSON text, `@FILE` for a file's content, or `-` for standard input.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// The version or alias to invoke (also `NAME:QUALIFIER`).
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Print the version that ran on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print the invocation's log tail on stderr.
    #[arg(long, conflicts_with = "async")]
    pub tail: bool,
    /// Invoke asynchronously: the event is queued and the request id printed.
    #[arg(long = "async")]
    pub r#async: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// `--output`: a table (or line) for people, or JSON for scripts.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// `text`, or `json` (what the API answered, for scripts).
    #[arg(long, short, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
}

impl Output {
    fn json(&self) -> bool {
        self.output == "json"
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct PendingArgs {
    /// The function's name.
    pub name: String,
    /// How many of the waiting events to list (1-1,000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The function's name.
    pub name: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

fn print_json(value: &serde_json::Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub async fn invoke(args: InvokeArgs) -> anyhow::Result<bool> {
    let client = args.endpoint.client();
    let mut headers = Vec::new();
    if args.tail {
        headers.push(("x-amz-log-type", "Tail".to_string()));
    }
    if args.r#async {
        headers.push(("x-amz-invocation-type", "Event".to_string()));
    }
    let payload = inputs::payload(&args.payload)?;
    let path = match &args.qualifier {
        Some(q) => format!("{FUNCTIONS}/{}/invocations?Qualifier={q}", args.name),
        None => format!("{FUNCTIONS}/{}/invocations", args.name),
    };
    let reply = client
        .send(Method::POST, &path, &headers, Some(Bytes::from(payload)))
        .await?;
    if args.verbose
        && let Some(version) = reply
            .headers
            .get("x-amz-executed-version")
            .and_then(|v| v.to_str().ok())
    {
        eprintln!("executed version: {version}");
    }
    if args.r#async {
        let id = reply
            .headers
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        say!("accepted {id}");
        return Ok(true);
    }
    say!("{}", String::from_utf8_lossy(&reply.body));
    if let Some(tail) = reply
        .headers
        .get("x-amz-log-result")
        .and_then(|v| v.to_str().ok())
    {
        let text = base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&text));
    }
    if let Some(error) = reply
        .headers
        .get("x-amz-function-error")
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("FunctionError: {error}");
        return Ok(false);
    }
    Ok(true)
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    let mut marker: Option<String> = None;
    let mut header = false;
    let mut all = Vec::new();
    loop {
        let path = match &marker {
            Some(m) => format!("{FUNCTIONS}/?MaxItems=50&Marker={m}"),
            None => format!("{FUNCTIONS}/?MaxItems=50"),
        };
        let page = client.get_json(&path).await?;
        if args.output.json() {
            all.extend(page["Functions"].as_array().cloned().unwrap_or_default());
            match page["NextMarker"].as_str() {
                Some(next) => marker = Some(next.to_string()),
                None => {
                    say!("{}", serde_json::Value::Array(all));
                    return Ok(());
                }
            }
            continue;
        }
        if !header {
            say!(
                "{:<32} {:<16} {:>7} {:>8}  LAST_MODIFIED",
                "NAME",
                "RUNTIME",
                "MEMORY",
                "TIMEOUT"
            );
            header = true;
        }
        for f in page["Functions"].as_array().cloned().unwrap_or_default() {
            say!(
                "{:<32} {:<16} {:>7} {:>8}  {}",
                f["FunctionName"].as_str().unwrap_or_default(),
                f["Runtime"].as_str().unwrap_or_default(),
                f["MemorySize"].as_u64().unwrap_or_default(),
                f["Timeout"].as_u64().unwrap_or_default(),
                f["LastModified"].as_str().unwrap_or_default()
            );
        }
        match page["NextMarker"].as_str() {
            Some(next) => marker = Some(next.to_string()),
            None => return Ok(()),
        }
    }
}

/// Prints how many asynchronous events of a function wait and the oldest one's age, then
/// the first of them (next due first): attempts made, when the next is due, last error.
pub async fn pending(args: PendingArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    let page = client
        .get_json(&format!(
            "/shoal/v1/functions/{}/async-events?limit={}",
            args.name, args.limit
        ))
        .await?;
    if args.output.json() {
        say!("{page}");
        return Ok(());
    }
    let pending = page["pending"].as_u64().unwrap_or_default();
    say!(
        "{pending} pending, oldest {} ms",
        page["oldestAgeMs"].as_u64().unwrap_or_default()
    );
    let events = page["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        return Ok(());
    }
    say!(
        "{:<36}  {:<9} {:>9} {:>8}  {:<24}  LAST_ERROR",
        "REQUEST_ID",
        "QUALIFIER",
        "AGE",
        "ATTEMPTS",
        "NEXT_ATTEMPT"
    );
    let now = crate::timefmt::now_ms();
    for e in &events {
        let due = e["nextAttemptMs"].as_u64().unwrap_or_default();
        let next = if e["running"] == json!(true) {
            "running".to_string()
        } else if due <= now {
            "now".to_string()
        } else {
            crate::timefmt::iso_timestamp(due)
        };
        say!(
            "{:<36}  {:<9} {:>9} {:>8}  {:<24}  {}",
            e["requestId"].as_str().unwrap_or_default(),
            e["qualifier"].as_str().unwrap_or_default(),
            short_age(e["ageMs"].as_u64().unwrap_or_default()),
            e["attempts"].as_u64().unwrap_or_default(),
            next,
            e["lastError"].as_str().unwrap_or("-").replace('\n', " ")
        );
    }
    if (events.len() as u64) < pending {
        say!(
            "... and {} more (--limit to list more)",
            pending - events.len() as u64
        );
    }
    Ok(())
}

/// An age as people read it: `850ms`, `42s`, `3m05s`, `2h10m`.
fn short_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub async fn remove(args: NameArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    client
        .send(
            Method::DELETE,
            &format!("{FUNCTIONS}/{}", args.name),
            &[],
            None,
        )
        .await?;
    say!("deleted {}", args.name);
    Ok(())
}

/// Fails with the server's message for a missing name.
pub fn require_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("a function name is required");
    }
    Ok(())
}
