//! `shoal topic ...`: the common actions on topics, by name.

use anyhow::Context;

use super::aws::{sns, xml_element, xml_elements};
use super::client::Client;
use super::{Endpoint, FUNCTIONS};

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic (a `.fifo` name makes a FIFO topic); prints its ARN.
    Create { name: String },
    /// List topics.
    Ls,
    /// Publish a message; prints its id.
    Publish {
        name: String,
        message: String,
        #[arg(long)]
        subject: Option<String>,
        /// String message attribute NAME=VALUE (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// Message group (FIFO topics).
        #[arg(long)]
        group: Option<String>,
    },
    /// Subscribe a function, a queue or an HTTP endpoint; prints the subscription's ARN.
    Subscribe {
        name: String,
        /// A function's name.
        #[arg(long, group = "subscriber")]
        function: Option<String>,
        /// A queue's name.
        #[arg(long, group = "subscriber")]
        queue: Option<String>,
        /// An http:// URL (it is sent a confirmation request).
        #[arg(long, group = "subscriber")]
        http: Option<String>,
        /// A filter policy (JSON) on the message attributes.
        #[arg(long)]
        filter: Option<String>,
        /// Deliver the bare message (queues and HTTP endpoints).
        #[arg(long)]
        raw: bool,
    },
    /// List a topic's subscriptions.
    Subs { name: String },
    /// Delete a subscription (by its ARN).
    Unsubscribe { arn: String },
    /// Delete a topic and its subscriptions.
    Rm { name: String },
}

/// A topic's ARN, from its name (or an ARN given as it is).
async fn topic_arn(client: &Client, name: &str) -> anyhow::Result<String> {
    if name.starts_with("arn:") {
        return Ok(name.to_string());
    }
    let suffix = format!(":{name}");
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![("Action", "ListTopics")];
        if let Some(token) = &token {
            params.push(("NextToken", token));
        }
        let out = sns(client, &params).await?;
        if let Some(arn) = xml_elements(&out, "TopicArn")
            .into_iter()
            .find(|arn| arn.ends_with(&suffix))
        {
            return Ok(arn);
        }
        match xml_element(&out, "NextToken") {
            Some(next) => token = Some(next),
            None => anyhow::bail!("no topic is named {name}"),
        }
    }
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let base = args.endpoint.client();
    let client = base.for_service("sns");
    match args.command {
        TopicCommand::Create { name } => {
            let mut params = vec![("Action", "CreateTopic"), ("Name", name.as_str())];
            if crate::queues::is_fifo_name(&name) {
                params.extend([
                    ("Attributes.entry.1.key", "FifoTopic"),
                    ("Attributes.entry.1.value", "true"),
                ]);
            }
            let out = sns(&client, &params).await?;
            say!("{}", xml_element(&out, "TopicArn").unwrap_or_default());
        }
        TopicCommand::Ls => {
            let mut token: Option<String> = None;
            loop {
                let mut params = vec![("Action", "ListTopics")];
                if let Some(token) = &token {
                    params.push(("NextToken", token));
                }
                let out = sns(&client, &params).await?;
                for arn in xml_elements(&out, "TopicArn") {
                    say!("{arn}");
                }
                match xml_element(&out, "NextToken") {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        TopicCommand::Publish {
            name,
            message,
            subject,
            attributes,
            group,
        } => {
            let arn = topic_arn(&client, &name).await?;
            let mut params: Vec<(String, String)> = vec![
                ("Action".into(), "Publish".into()),
                ("TopicArn".into(), arn),
                ("Message".into(), message),
            ];
            if let Some(subject) = subject {
                params.push(("Subject".into(), subject));
            }
            if let Some(group) = group {
                params.push(("MessageGroupId".into(), group));
            }
            for (i, (key, value)) in super::queue::pairs(&attributes, "--attr")?
                .into_iter()
                .enumerate()
            {
                let n = i + 1;
                params.push((format!("MessageAttributes.entry.{n}.Name"), key));
                params.push((
                    format!("MessageAttributes.entry.{n}.Value.DataType"),
                    "String".into(),
                ));
                params.push((
                    format!("MessageAttributes.entry.{n}.Value.StringValue"),
                    value.as_str().unwrap_or_default().to_string(),
                ));
            }
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let out = sns(&client, &borrowed).await?;
            say!("{}", xml_element(&out, "MessageId").unwrap_or_default());
        }
        TopicCommand::Subscribe {
            name,
            function,
            queue,
            http,
            filter,
            raw,
        } => {
            let arn = topic_arn(&client, &name).await?;
            let (protocol, endpoint) = if let Some(function) = function {
                let config = base
                    .get_json(&format!("{FUNCTIONS}/{function}/configuration"))
                    .await?;
                let function_arn = config["FunctionArn"]
                    .as_str()
                    .context("the function has no ARN")?
                    .to_string();
                ("lambda", function_arn)
            } else if let Some(queue) = queue {
                let queues = base.for_service("sqs");
                let url = super::queue::queue_url(&queues, &queue).await?;
                ("sqs", super::queue::queue_arn(&queues, &url).await?)
            } else if let Some(http) = http {
                ("http", http)
            } else {
                anyhow::bail!("say what to subscribe: --function, --queue or --http");
            };
            let mut params = vec![
                ("Action", "Subscribe"),
                ("TopicArn", arn.as_str()),
                ("Protocol", protocol),
                ("Endpoint", endpoint.as_str()),
                ("ReturnSubscriptionArn", "true"),
            ];
            let mut owned: Vec<(String, String)> = Vec::new();
            if let Some(filter) = &filter {
                owned.push(("FilterPolicy".into(), filter.clone()));
            }
            if raw {
                owned.push(("RawMessageDelivery".into(), "true".into()));
            }
            let fields: Vec<(String, String)> = owned
                .iter()
                .enumerate()
                .flat_map(|(i, (k, v))| {
                    [
                        (format!("Attributes.entry.{}.key", i + 1), k.clone()),
                        (format!("Attributes.entry.{}.value", i + 1), v.clone()),
                    ]
                })
                .collect();
            params.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let out = sns(&client, &params).await?;
            say!(
                "{}",
                xml_element(&out, "SubscriptionArn").unwrap_or_default()
            );
        }
        TopicCommand::Subs { name } => {
            let arn = topic_arn(&client, &name).await?;
            let mut token: Option<String> = None;
            loop {
                let mut params = vec![
                    ("Action", "ListSubscriptionsByTopic"),
                    ("TopicArn", arn.as_str()),
                ];
                if let Some(token) = &token {
                    params.push(("NextToken", token));
                }
                let out = sns(&client, &params).await?;
                for member in xml_elements(&out, "member") {
                    say!(
                        "{}\t{}\t{}",
                        xml_element(&member, "Protocol").unwrap_or_default(),
                        xml_element(&member, "Endpoint").unwrap_or_default(),
                        xml_element(&member, "SubscriptionArn").unwrap_or_default()
                    );
                }
                match xml_element(&out, "NextToken") {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        TopicCommand::Unsubscribe { arn } => {
            sns(
                &client,
                &[("Action", "Unsubscribe"), ("SubscriptionArn", &arn)],
            )
            .await?;
        }
        TopicCommand::Rm { name } => {
            let arn = topic_arn(&client, &name).await?;
            sns(&client, &[("Action", "DeleteTopic"), ("TopicArn", &arn)]).await?;
        }
    }
    Ok(())
}
