//! The friendly CLI: `deploy`, `invoke`, `logs`, `ls`, `rm`, `routes`, `queue ...`,
//! `topic ...`.
//! Every command talks to a server through the same public API any other client uses
//! (never around it): Lambda's REST API, API Gateway's (`apigatewayv2`), SQS's JSON
//! protocol and SNS's query protocol (`aws.rs`).

pub mod client;

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use client::{Client, ClientError};

pub(crate) const FUNCTIONS: &str = "/2015-03-31/functions";
const TAGS: &str = "/2017-03-31/tags";
const MAPPINGS: &str = "/2015-03-31/event-source-mappings";

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
mod inputs;
pub mod logs;
mod progress;
pub mod queue;
pub mod routes;
pub mod topic;
pub mod versions;

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
pub struct DeployArgs {
    /// A folder (zipped for you) or a .zip file.
    pub path: PathBuf,
    /// Function name (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Runtime identifier: python3.12, nodejs20.x, provided.al2023, ...
    #[arg(long)]
    pub runtime: String,
    /// Handler: module.function (Python; default app.handler), file.export (Node.js;
    /// default index.handler); provided runtimes run `bootstrap`.
    #[arg(long)]
    pub handler: Option<String>,
    /// Memory size in MB (128-10240).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout in seconds (1-900).
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Environment variables from a dotenv file (KEY=VALUE lines; `--env` wins over it).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Network mode of isolated environments: `none` (loopback only) or `egress`
    /// (outbound connections); sets the function's `shoal:network` tag.
    #[arg(long, value_parser = ["none", "egress"])]
    pub network: Option<String>,
    /// Wire a queue to the function: the queue (created if missing) drives it through an
    /// event source mapping.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Messages per batch of the --queue mapping (1-10,000; over 10 waits up to a second
    /// to fill a batch).
    #[arg(long, default_value_t = 10, requires = "queue")]
    pub batch_size: u32,
    /// Give the function a public URL (auth type NONE, with the permission that needs)
    /// and print it.
    #[arg(long)]
    pub url: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
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

fn package(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        crate::code::zip_directory(path).with_context(|| format!("zipping {}", path.display()))
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn print_json(value: &serde_json::Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client().with_progress();
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .context("give the function a --name")?,
    };
    let zip = package(&args.path)?;
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let mut variables = serde_json::Map::new();
    if let Some(file) = &args.env_file {
        for (k, v) in inputs::dotenv(file)? {
            variables.insert(k, json!(v));
        }
    }
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
        variables.insert(k.to_string(), json!(v));
    }
    let handler = match &args.handler {
        Some(handler) => handler.clone(),
        None => inputs::default_handler(&args.runtime)?.to_string(),
    };
    let mut config = json!({ "Runtime": args.runtime, "Handler": handler });
    if let Some(memory) = args.memory {
        config["MemorySize"] = json!(memory);
    }
    if let Some(timeout) = args.timeout {
        config["Timeout"] = json!(timeout);
    }
    if !variables.is_empty() {
        config["Environment"] = json!({ "Variables": variables });
    }
    let existing = match client
        .get_json(&format!("{FUNCTIONS}/{name}/configuration"))
        .await
    {
        Ok(current) => Some(current),
        Err(ClientError::Api { code, .. }) if code == "ResourceNotFoundException" => None,
        Err(e) => return Err(e.into()),
    };
    let network_tag = args
        .network
        .as_ref()
        .map(|mode| json!({ crate::function::NETWORK_TAG: mode }));
    let result = if let Some(current) = existing {
        // A redeploy without --handler keeps the function's handler when the runtime stays.
        if args.handler.is_none() && current["Runtime"].as_str() == Some(args.runtime.as_str()) {
            config["Handler"] = current["Handler"].clone();
        }
        if let (Some(tags), Some(arn)) = (&network_tag, current["FunctionArn"].as_str()) {
            client
                .send_json(
                    Method::POST,
                    &format!("{TAGS}/{arn}"),
                    &json!({ "Tags": tags }),
                )
                .await?;
        }
        client
            .send_json(
                Method::PUT,
                &format!("{FUNCTIONS}/{name}/code"),
                &json!({ "ZipFile": zip_b64 }),
            )
            .await?;
        client
            .send_json(
                Method::PUT,
                &format!("{FUNCTIONS}/{name}/configuration"),
                &config,
            )
            .await?
    } else {
        let mut create = config;
        create["FunctionName"] = json!(name);
        create["Role"] = json!("arn:aws:iam::000000000000:role/shoal");
        create["Code"] = json!({ "ZipFile": zip_b64 });
        if let Some(tags) = network_tag {
            create["Tags"] = tags;
        }
        client.send_json(Method::POST, FUNCTIONS, &create).await?
    };
    print_json(&result);
    warn_of_interpreter(&client, &args.runtime).await;
    if let Some(queue) = &args.queue {
        wire_queue(&client, &name, queue, args.batch_size).await?;
    }
    if args.url {
        let url = public_url(&client, &name).await?;
        eprintln!("function URL: {url}");
    }
    Ok(())
}

/// The public URL of function `name`: its URL (made with auth type NONE if it has none),
/// and the permission that lets everyone invoke it.
async fn public_url(client: &Client, name: &str) -> anyhow::Result<String> {
    let path = format!("/2021-10-31/functions/{name}/url");
    let config = match client.get_json(&path).await {
        Ok(config) => config,
        Err(ClientError::Api { code, .. }) if code == "ResourceNotFoundException" => {
            client
                .send_json(Method::POST, &path, &json!({ "AuthType": "NONE" }))
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    if config["AuthType"] == "NONE" {
        let permission = json!({
            "StatementId": "FunctionURLAllowPublicAccess",
            "Action": "lambda:InvokeFunctionUrl",
            "Principal": "*",
            "FunctionUrlAuthType": "NONE",
        });
        let added = client
            .send_json(
                Method::POST,
                &format!("{FUNCTIONS}/{name}/policy"),
                &permission,
            )
            .await;
        match added {
            Ok(_) => {}
            Err(ClientError::Api { code, .. }) if code == "ResourceConflictException" => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(config["FunctionUrl"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Makes `queue` (created if missing) drive function `name` through an event source
/// mapping of `batch_size` (an existing mapping of the two is updated to it).
async fn wire_queue(
    client: &Client,
    name: &str,
    queue: &str,
    batch_size: u32,
) -> anyhow::Result<()> {
    let queues = client.for_service("sqs");
    let url = match queue::queue_url(&queues, queue).await {
        Ok(url) => url,
        Err(e)
            if e.downcast_ref::<ClientError>().is_some_and(|e| {
                matches!(e, ClientError::Api { code, .. } if code.ends_with("NonExistentQueue"))
            }) =>
        {
            let mut attributes = json!({});
            if crate::queues::is_fifo_name(queue) {
                attributes["FifoQueue"] = json!("true");
                attributes["ContentBasedDeduplication"] = json!("true");
            }
            let out = aws::sqs(
                &queues,
                "CreateQueue",
                &json!({ "QueueName": queue, "Attributes": attributes }),
            )
            .await?;
            eprintln!("created queue {queue}");
            out["QueueUrl"].as_str().unwrap_or_default().to_string()
        }
        Err(e) => return Err(e),
    };
    let arn = queue::queue_arn(&queues, &url).await?;
    let mut window = json!({});
    if batch_size > 10 {
        window = json!({ "MaximumBatchingWindowInSeconds": 1 });
    }
    let listed = client
        .get_json(&format!(
            "{MAPPINGS}?FunctionName={name}&EventSourceArn={}",
            form_urlencoded::byte_serialize(arn.as_bytes()).collect::<String>()
        ))
        .await?;
    let existing = listed["EventSourceMappings"]
        .as_array()
        .and_then(|list| list.first())
        .and_then(|m| m["UUID"].as_str())
        .map(str::to_string);
    let mapping = match existing {
        Some(uuid) => {
            let mut change = json!({ "BatchSize": batch_size, "Enabled": true });
            if let Some(w) = window.get("MaximumBatchingWindowInSeconds") {
                change["MaximumBatchingWindowInSeconds"] = w.clone();
            }
            client
                .send_json(Method::PUT, &format!("{MAPPINGS}/{uuid}"), &change)
                .await?
        }
        None => {
            let mut create = json!({
                "EventSourceArn": arn, "FunctionName": name, "BatchSize": batch_size,
            });
            if let Some(w) = window.get("MaximumBatchingWindowInSeconds") {
                create["MaximumBatchingWindowInSeconds"] = w.clone();
            }
            client.send_json(Method::POST, MAPPINGS, &create).await?
        }
    };
    eprintln!(
        "queue {queue} drives {name} (event source mapping {}, batches of {batch_size})",
        mapping["UUID"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// Says on stderr when the server runs `runtime` on an interpreter of another version
/// (e.g. `python3.12` functions on the host's Python 3.11).
async fn warn_of_interpreter(client: &Client, runtime: &str) {
    let Ok(report) = client
        .get_json(&format!("/shoal/v1/runtimes/{runtime}"))
        .await
    else {
        return;
    };
    if report["Matches"] == json!(false) {
        eprintln!(
            "warning: {runtime} functions run on this server's interpreter {} (version {}), not on {runtime}",
            report["Interpreter"].as_str().unwrap_or("?"),
            report["Version"].as_str().unwrap_or("?"),
        );
    }
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
