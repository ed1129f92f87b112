//! `shoal publish`, `shoal alias ...` and `shoal concurrency`: versions, aliases (with
//! weighted routing) and reserved concurrency, over Lambda's REST API.

use anyhow::Context;
use hyper::Method;
use serde_json::{Value, json};

use super::client::ClientError;
use super::{Endpoint, FUNCTIONS};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The function's name.
    pub name: String,
    /// What this version is.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Args)]
pub struct AliasArgs {
    #[command(subcommand)]
    pub command: AliasCommand,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS of function NAME at VERSION (created if missing), optionally sending a
    /// share of its traffic to a second version.
    Set {
        name: String,
        alias: String,
        version: String,
        /// VERSION=SHARE: that version gets SHARE (0 to 1) of the alias's invocations.
        #[arg(long, value_name = "VERSION=SHARE")]
        weight: Option<String>,
    },
    /// List the aliases of function NAME.
    Ls {
        name: String,
        /// `text` (a table) or `json`.
        #[arg(long, short, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Delete ALIAS of function NAME.
    Rm { name: String, alias: String },
}

#[derive(Debug, clap::Args)]
pub struct ConcurrencyArgs {
    /// The function's name.
    pub name: String,
    /// Reserve this many concurrent executions (0 stops the function); without it, print
    /// the reservation.
    pub reserved: Option<u32>,
    /// Remove the reservation.
    #[arg(long, conflicts_with = "reserved")]
    pub clear: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    let mut body = json!({});
    if let Some(d) = &args.description {
        body["Description"] = json!(d);
    }
    let made = client
        .send_json(
            Method::POST,
            &format!("{FUNCTIONS}/{}/versions", args.name),
            &body,
        )
        .await?;
    say!(
        "published {} version {}",
        args.name,
        made["Version"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `{"AdditionalVersionWeights": {version: share}}` of a `VERSION=SHARE` flag.
fn routing(weight: &str) -> anyhow::Result<Value> {
    let (version, share) = weight
        .split_once('=')
        .with_context(|| format!("--weight {weight}: expected VERSION=SHARE"))?;
    let share: f64 = share
        .parse()
        .ok()
        .filter(|s| (0.0..=1.0).contains(s))
        .with_context(|| format!("--weight {weight}: the share is a number from 0 to 1"))?;
    Ok(json!({ "AdditionalVersionWeights": { version: share } }))
}

pub async fn alias(args: AliasArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    match args.command {
        AliasCommand::Set {
            name,
            alias,
            version,
            weight,
        } => {
            let mut body = json!({ "FunctionVersion": version });
            body["RoutingConfig"] = match &weight {
                Some(w) => routing(w)?,
                None => json!({ "AdditionalVersionWeights": {} }),
            };
            let path = format!("{FUNCTIONS}/{name}/aliases/{alias}");
            let exists = match client.get_json(&path).await {
                Ok(_) => true,
                Err(ClientError::Api { code, .. }) if code == "ResourceNotFoundException" => false,
                Err(e) => return Err(e.into()),
            };
            let set = if exists {
                client.send_json(Method::PUT, &path, &body).await?
            } else {
                body["Name"] = json!(alias);
                client
                    .send_json(Method::POST, &format!("{FUNCTIONS}/{name}/aliases"), &body)
                    .await?
            };
            say!(
                "{name}:{alias} -> version {}{}",
                set["FunctionVersion"].as_str().unwrap_or("?"),
                weight.map(|w| format!(" (and {w})")).unwrap_or_default()
            );
        }
        AliasCommand::Ls { name, output } => {
            let listed = client
                .get_json(&format!("{FUNCTIONS}/{name}/aliases"))
                .await?;
            let aliases = listed["Aliases"].as_array().cloned().unwrap_or_default();
            if output == "json" {
                say!("{}", Value::Array(aliases));
                return Ok(());
            }
            say!("{:<24} {:<10} WEIGHTS", "ALIAS", "VERSION");
            for a in aliases {
                let weights = a["RoutingConfig"]["AdditionalVersionWeights"]
                    .as_object()
                    .map(|w| {
                        w.iter()
                            .map(|(v, s)| format!("{v}={s}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                say!(
                    "{:<24} {:<10} {}",
                    a["Name"].as_str().unwrap_or_default(),
                    a["FunctionVersion"].as_str().unwrap_or_default(),
                    weights
                );
            }
        }
        AliasCommand::Rm { name, alias } => {
            client
                .send(
                    Method::DELETE,
                    &format!("{FUNCTIONS}/{name}/aliases/{alias}"),
                    &[],
                    None,
                )
                .await?;
            say!("deleted {name}:{alias}");
        }
    }
    Ok(())
}

pub async fn concurrency(args: ConcurrencyArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    let path = format!("/2017-10-31/functions/{}/concurrency", args.name);
    if args.clear {
        client.send(Method::DELETE, &path, &[], None).await?;
        say!("{}: no reserved concurrency", args.name);
        return Ok(());
    }
    let current = match args.reserved {
        Some(n) => {
            client
                .send_json(
                    Method::PUT,
                    &path,
                    &json!({ "ReservedConcurrentExecutions": n }),
                )
                .await?
        }
        None => {
            client
                .get_json(&format!("/2019-09-30/functions/{}/concurrency", args.name))
                .await?
        }
    };
    match current["ReservedConcurrentExecutions"].as_u64() {
        Some(n) => say!("{}: {n} reserved concurrent executions", args.name),
        None => say!("{}: no reserved concurrency", args.name),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(
            routing("2=0.1").unwrap(),
            json!({"AdditionalVersionWeights": {"2": 0.1}})
        );
        assert!(routing("2").is_err());
        assert!(routing("2=1.5").is_err());
    }
}
