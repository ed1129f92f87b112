//! `shoal queue ...`: the common actions on built-in queues, by name.

use serde_json::{Value, json};

use super::aws::sqs;
use super::client::Client;
use super::{Endpoint, print_json};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Create a queue (a `.fifo` name makes a FIFO queue); prints its URL.
    Create {
        name: String,
        /// Queue attribute NAME=VALUE (repeatable), e.g. VisibilityTimeout=60.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// List queues (those whose name starts with PREFIX).
    Ls { prefix: Option<String> },
    /// Send a message; prints its id.
    Send {
        name: String,
        body: String,
        /// Message group (FIFO queues).
        #[arg(long)]
        group: Option<String>,
        /// Deduplication id (FIFO queues without content-based deduplication).
        #[arg(long)]
        dedup: Option<String>,
        /// Delay in seconds (standard queues).
        #[arg(long)]
        delay: Option<u32>,
    },
    /// Receive messages and print them; they are deleted unless --keep.
    Receive {
        name: String,
        /// At most this many (1-10).
        #[arg(long, default_value_t = 10)]
        max: u32,
        /// Wait up to this many seconds for a message (0-20).
        #[arg(long, default_value_t = 1)]
        wait: u32,
        /// Leave the messages in the queue (they reappear after the visibility timeout).
        #[arg(long)]
        keep: bool,
    },
    /// Print a queue's attributes (counts, ARN, redrive policy, ...).
    Attrs { name: String },
    /// Delete every message of a queue.
    Purge { name: String },
    /// Move a dead-letter queue's messages back to the queues they came from.
    Redrive { name: String },
    /// Delete a queue.
    Rm { name: String },
}

/// A queue's URL, from its name (or a URL given as it is).
pub(super) async fn queue_url(client: &Client, name: &str) -> anyhow::Result<String> {
    if name.starts_with("http://") || name.starts_with("https://") {
        return Ok(name.to_string());
    }
    let out = sqs(client, "GetQueueUrl", &json!({ "QueueName": name })).await?;
    Ok(out["QueueUrl"].as_str().unwrap_or_default().to_string())
}

/// A queue's ARN.
pub(super) async fn queue_arn(client: &Client, url: &str) -> anyhow::Result<String> {
    let out = sqs(
        client,
        "GetQueueAttributes",
        &json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }),
    )
    .await?;
    Ok(out["Attributes"]["QueueArn"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// NAME=VALUE pairs as a JSON object.
pub(super) fn pairs(list: &[String], flag: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for pair in list {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{flag} {pair}: expected NAME=VALUE"))?;
        map.insert(k.to_string(), json!(v));
    }
    Ok(map)
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client().for_service("sqs");
    match args.command {
        QueueCommand::Create { name, attributes } => {
            let mut attrs = pairs(&attributes, "--attr")?;
            if crate::queues::is_fifo_name(&name) {
                attrs.entry("FifoQueue").or_insert(json!("true"));
            }
            let out = sqs(
                &client,
                "CreateQueue",
                &json!({ "QueueName": name, "Attributes": attrs }),
            )
            .await?;
            say!("{}", out["QueueUrl"].as_str().unwrap_or_default());
        }
        QueueCommand::Ls { prefix } => {
            let mut input = json!({ "MaxResults": 1000 });
            if let Some(prefix) = prefix {
                input["QueueNamePrefix"] = json!(prefix);
            }
            loop {
                let out = sqs(&client, "ListQueues", &input).await?;
                for url in out["QueueUrls"].as_array().into_iter().flatten() {
                    say!("{}", url.as_str().unwrap_or_default());
                }
                match out["NextToken"].as_str() {
                    Some(next) => input["NextToken"] = json!(next),
                    None => break,
                }
            }
        }
        QueueCommand::Send {
            name,
            body,
            group,
            dedup,
            delay,
        } => {
            let url = queue_url(&client, &name).await?;
            let mut input = json!({ "QueueUrl": url, "MessageBody": body });
            if let Some(group) = group {
                input["MessageGroupId"] = json!(group);
            }
            if let Some(dedup) = dedup {
                input["MessageDeduplicationId"] = json!(dedup);
            }
            if let Some(delay) = delay {
                input["DelaySeconds"] = json!(delay);
            }
            let out = sqs(&client, "SendMessage", &input).await?;
            say!("{}", out["MessageId"].as_str().unwrap_or_default());
        }
        QueueCommand::Receive {
            name,
            max,
            wait,
            keep,
        } => {
            let url = queue_url(&client, &name).await?;
            let out = sqs(
                &client,
                "ReceiveMessage",
                &json!({
                    "QueueUrl": url, "MaxNumberOfMessages": max, "WaitTimeSeconds": wait,
                    "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["All"],
                }),
            )
            .await?;
            let messages = out["Messages"].as_array().cloned().unwrap_or_default();
            for message in &messages {
                say!("{}", serde_json::to_string(message).unwrap_or_default());
            }
            if !keep && !messages.is_empty() {
                let entries: Vec<Value> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({ "Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"] }))
                    .collect();
                sqs(
                    &client,
                    "DeleteMessageBatch",
                    &json!({ "QueueUrl": url, "Entries": entries }),
                )
                .await?;
            }
        }
        QueueCommand::Attrs { name } => {
            let url = queue_url(&client, &name).await?;
            let out = sqs(
                &client,
                "GetQueueAttributes",
                &json!({ "QueueUrl": url, "AttributeNames": ["All"] }),
            )
            .await?;
            print_json(&out["Attributes"]);
        }
        QueueCommand::Purge { name } => {
            let url = queue_url(&client, &name).await?;
            sqs(&client, "PurgeQueue", &json!({ "QueueUrl": url })).await?;
        }
        QueueCommand::Redrive { name } => {
            let url = queue_url(&client, &name).await?;
            let arn = queue_arn(&client, &url).await?;
            let out = sqs(
                &client,
                "StartMessageMoveTask",
                &json!({ "SourceArn": arn }),
            )
            .await?;
            say!("{}", out["TaskHandle"].as_str().unwrap_or_default());
        }
        QueueCommand::Rm { name } => {
            let url = queue_url(&client, &name).await?;
            sqs(&client, "DeleteQueue", &json!({ "QueueUrl": url })).await?;
        }
    }
    Ok(())
}
