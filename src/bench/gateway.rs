//! HTTP API figures: the path of a request through an HTTP API (quick create in front of
//! a function), and storage-first routes (`SQS-SendMessage`) beside the queue's own
//! SendMessage, each message committed before its answer in both. (`apigatewayv2` speaks
//! camelCase JSON.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use super::{Latencies, rate_header, row};
use crate::cli::client::Client;

/// The `apigatewayv2` client of `client`'s server.
fn apigw(client: &Client) -> Client {
    client.for_service("apigateway")
}

/// An HTTP API made by quick create in front of `function` (and API Gateway's permission
/// on it); the path form of its root on this server.
pub async fn quick_api_path(
    client: &Client,
    (region, account): (&str, &str),
    function: &str,
) -> anyhow::Result<String> {
    let api = apigw(client)
        .send_json(
            Method::POST,
            "/v2/apis",
            &json!({
                "name": format!("bench-{function}"),
                "protocolType": "HTTP",
                "target": format!("arn:aws:lambda:{region}:{account}:function:{function}"),
            }),
        )
        .await?;
    let id = api["apiId"].as_str().unwrap_or_default().to_string();
    client
        .send_json(
            Method::POST,
            &format!("/2015-03-31/functions/{function}/policy"),
            &json!({
                "StatementId": format!("apigw-{id}"), "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": format!("arn:aws:execute-api:{region}:{account}:{id}/*"),
            }),
        )
        .await?;
    Ok(format!("{}{id}", crate::gateway::PATH_PREFIX))
}

/// Sends `n` requests from `clients` concurrent clients, each `send(i)`; the time and each
/// request's latency.
async fn concurrently<F, Fut>(
    n: usize,
    clients: usize,
    send: F,
) -> anyhow::Result<(Duration, Latencies)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let left = Arc::new(AtomicUsize::new(n));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (left, send) = (left.clone(), send.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                .is_ok()
            {
                let sent = Instant::now();
                send().await?;
                samples.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok((start.elapsed(), Latencies::of(samples)))
}

/// Storage-first: `n` requests into a queue through an `SQS-SendMessage` route, beside
/// `n` SendMessage calls to a queue of its own, from `clients` clients.
pub async fn storage_first(client: &Client, n: usize, clients: usize) -> anyhow::Result<()> {
    rate_header("storage-first routes");
    let mut urls = Vec::new();
    for name in ["bench-send", "bench-storage-first"] {
        let out =
            crate::cli::aws::sqs(client, "CreateQueue", &json!({ "QueueName": name })).await?;
        urls.push(out["QueueUrl"].as_str().unwrap_or_default().to_string());
    }
    let direct = {
        let (client, url) = (client.clone(), urls[0].clone());
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                crate::cli::aws::sqs(
                    &client,
                    "SendMessage",
                    &json!({ "QueueUrl": url, "MessageBody": "{\"bench\":true}" }),
                )
                .await?;
                Ok(())
            }
        }
    };
    let (took, lat) = concurrently(n, clients, direct).await?;
    row(
        &format!("SendMessage ({clients} clients)"),
        n,
        took,
        Some(&lat),
    );

    let gateway = apigw(client);
    let api = gateway
        .send_json(
            Method::POST,
            "/v2/apis",
            &json!({ "name": "bench-storage-first", "protocolType": "HTTP" }),
        )
        .await?;
    let id = api["apiId"].as_str().unwrap_or_default().to_string();
    let integration = gateway
        .send_json(
            Method::POST,
            &format!("/v2/apis/{id}/integrations"),
            &json!({
                "integrationType": "AWS_PROXY",
                "integrationSubtype": "SQS-SendMessage",
                "payloadFormatVersion": "1.0",
                "requestParameters": { "QueueUrl": urls[1], "MessageBody": "$request.body" },
            }),
        )
        .await?;
    let target = format!(
        "integrations/{}",
        integration["integrationId"].as_str().unwrap_or_default()
    );
    gateway
        .send_json(
            Method::POST,
            &format!("/v2/apis/{id}/routes"),
            &json!({ "routeKey": "POST /orders", "target": target }),
        )
        .await?;
    gateway
        .send_json(
            Method::POST,
            &format!("/v2/apis/{id}/stages"),
            &json!({ "stageName": "$default", "autoDeploy": true }),
        )
        .await?;
    let path = format!("{}{id}/orders", crate::gateway::PATH_PREFIX);
    let routed = {
        let client = client.clone();
        move || {
            let (client, path) = (client.clone(), path.clone());
            async move {
                let reply = client
                    .send(
                        Method::POST,
                        &path,
                        &[],
                        Some(Bytes::from_static(b"{\"bench\":true}")),
                    )
                    .await?;
                let answer: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                anyhow::ensure!(
                    answer["SendMessageResponse"]["SendMessageResult"]["MessageId"].is_string(),
                    "the storage-first route answered {answer}"
                );
                Ok(())
            }
        }
    };
    let (took, lat) = concurrently(n, clients, routed).await?;
    row(
        &format!("HTTP API -> queue ({clients} clients)"),
        n,
        took,
        Some(&lat),
    );
    let depth = crate::cli::aws::sqs(
        client,
        "GetQueueAttributes",
        &json!({ "QueueUrl": urls[1], "AttributeNames": ["ApproximateNumberOfMessages"] }),
    )
    .await?;
    println!(
        "  (the storage-first queue holds {} messages of the {n} sent)",
        depth["Attributes"]["ApproximateNumberOfMessages"]
            .as_str()
            .unwrap_or("?")
    );
    Ok(())
}
