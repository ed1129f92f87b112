//! `shoal deploy` and `shoal dev`: a folder, a zip or a Cargo project made a function
//! (created, or its code and configuration updated), optionally wired to a queue and
//! given a public URL; with `--watch` (`shoal dev`) redeployed on every change.

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use hyper::Method;
use serde_json::json;

use super::client::{Client, ClientError};
use super::{Endpoint, FUNCTIONS, MAPPINGS, TAGS, aws, build, inputs, print_json, queue, watch};

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
    /// A command to run (with `sh -c`, in the folder) before each deploy, e.g.
    /// `cargo lambda build --release` or `npm run build`.
    #[arg(long, value_name = "COMMAND")]
    pub build: Option<String>,
    /// What to deploy when it is not PATH itself: the folder or zip the build writes.
    #[arg(long, value_name = "PATH")]
    pub code: Option<PathBuf>,
    /// The binary of a Cargo project to deploy as bootstrap, when it builds several.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// Keep watching PATH and redeploy on every change (what `shoal dev` does).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// The function's name: `--name`, else the folder's (or zip's) name.
pub(super) fn function_name(args: &DeployArgs) -> anyhow::Result<String> {
    if let Some(name) = &args.name {
        return Ok(name.clone());
    }
    let path = std::fs::canonicalize(&args.path).unwrap_or_else(|_| args.path.clone());
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .context("give the function a --name")
}

/// Builds what `args` asks to build (`--build`, else a Cargo project's bootstrap for a
/// `provided` runtime) and returns the zip to deploy.
pub(super) fn build_package(args: &DeployArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(command) = &args.build {
        let dir = if args.path.is_dir() {
            args.path.as_path()
        } else {
            args.path.parent().unwrap_or(std::path::Path::new("."))
        };
        eprintln!("building: {command}");
        build::run_command(command, dir)?;
    } else if args.code.is_none() && build::is_cargo_project(&args.path, &args.runtime) {
        eprintln!(
            "building {} with cargo build --release (a Cargo project: its binary is deployed as bootstrap)",
            args.path.display()
        );
        let executable = build::cargo_build(&args.path, args.bin.as_deref())?;
        return build::bootstrap_zip(&executable);
    }
    package(args.code.as_ref().unwrap_or(&args.path))
}

fn package(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        crate::code::zip_directory(path).with_context(|| format!("zipping {}", path.display()))
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    if args.watch {
        return watch::run(args).await;
    }
    let client = args.endpoint.client().with_progress();
    let name = function_name(&args)?;
    let zip = build_package(&args)?;
    let result = apply(&client, &args, &name, &zip).await?;
    print_json(&result);
    finish(&client, &args, &name).await
}

/// Creates function `name` from `zip` and the configuration `args` give, or updates its
/// code and configuration; returns its configuration.
pub(super) async fn apply(
    client: &Client,
    args: &DeployArgs,
    name: &str,
    zip: &[u8],
) -> anyhow::Result<serde_json::Value> {
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
        update_code(client, name, zip).await?;
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
        create["Code"] =
            json!({ "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) });
        if let Some(tags) = network_tag {
            create["Tags"] = tags;
        }
        client.send_json(Method::POST, FUNCTIONS, &create).await?
    };
    Ok(result)
}

/// What follows a first deploy: a word on the interpreter, the --queue and --url wiring.
pub(super) async fn finish(client: &Client, args: &DeployArgs, name: &str) -> anyhow::Result<()> {
    warn_of_interpreter(client, &args.runtime).await;
    if let Some(queue) = &args.queue {
        wire_queue(client, name, queue, args.batch_size).await?;
    }
    if args.url {
        let url = public_url(client, name).await?;
        eprintln!("function URL: {url}");
    }
    Ok(())
}

/// Replaces function `name`'s code with `zip`: the quick redeploy of `shoal dev`.
pub(super) async fn update_code(client: &Client, name: &str, zip: &[u8]) -> anyhow::Result<()> {
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(zip);
    client
        .send_json(
            Method::PUT,
            &format!("{FUNCTIONS}/{name}/code"),
            &json!({ "ZipFile": zip_b64 }),
        )
        .await?;
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
