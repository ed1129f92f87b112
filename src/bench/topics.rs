//! The topic figures of `shoal bench`: one topic with ten no-op functions subscribed,
//! `n` publishes from concurrent clients (publish throughput and latency, beside the
//! same number of bare async invokes of one function as the baseline), the time until
//! every subscriber has run every message (10 × `n` invocations, no sender left), and on
//! an idle topic the latency from Publish to each subscriber's START line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use super::{Latencies, latest_log, print_start_latency, rate_header, row, start_after};
use crate::cli::client::Client;

/// Subscribers of the fan-out topic.
const SUBSCRIBERS: usize = 10;

async fn sns(client: &Client, params: &[(&str, &str)]) -> anyhow::Result<String> {
    Ok(crate::cli::aws::sns(client, params).await?)
}

/// Publishes `{}` to `topic`.
async fn publish(topics: &Client, topic: &str) -> anyhow::Result<()> {
    sns(
        topics,
        &[
            ("Action", "Publish"),
            ("TopicArn", topic),
            ("Message", "{}"),
        ],
    )
    .await
    .map(|_| ())
}

fn element(xml: &str, tag: &str) -> Option<String> {
    crate::cli::aws::xml_element(xml, tag)
}

/// Invocations of a function so far (`shoal_invocations_total`).
async fn invocations(client: &Client, functions: &[String]) -> anyhow::Result<u64> {
    let reply = client.send(Method::GET, "/metrics", &[], None).await?;
    let text = String::from_utf8_lossy(&reply.body);
    Ok(functions
        .iter()
        .map(|name| {
            let series = format!("shoal_invocations_total{{function=\"{name}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum())
}

/// Waits until the functions have run `target` invocations in all; the time it took.
async fn until_invoked(
    client: &Client,
    functions: &[String],
    target: u64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while invocations(client, functions).await? < target {
        anyhow::ensure!(
            start.elapsed() < limit,
            "the subscribers did not run every message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

/// Sends `n` requests made by `request` from `clients` concurrent clients; the time and
/// each request's latency.
async fn fire<F, Fut>(n: usize, clients: usize, request: F) -> anyhow::Result<(Duration, Latencies)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let left = Arc::new(AtomicUsize::new(n));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let left = left.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                request().await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok((start.elapsed(), Latencies::of(samples)))
}

/// The whole section; `zip` is a no-op function's package (base64), `baseline` a no-op
/// function that exists already.
pub async fn run(
    client: &Client,
    (region, account): (&str, &str),
    zip: &str,
    baseline: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<()> {
    rate_header("topics (10 function subscribers)");
    let topics = client.for_service("sns");
    let created = sns(
        &topics,
        &[("Action", "CreateTopic"), ("Name", "bench-fanout")],
    )
    .await?;
    let topic = element(&created, "TopicArn")
        .ok_or_else(|| anyhow::anyhow!("CreateTopic answered no TopicArn: {created}"))?;
    let mut functions = Vec::new();
    for i in 0..SUBSCRIBERS {
        let name = format!("bench-fan-{i}");
        super::create(
            client,
            &name,
            "provided.al2023",
            "bootstrap",
            zip.to_string(),
            json!({ super::NOOP_RUNTIME_VAR: "1" }),
        )
        .await?;
        let arn = format!("arn:aws:lambda:{region}:{account}:function:{name}");
        sns(
            &topics,
            &[
                ("Action", "Subscribe"),
                ("TopicArn", &topic),
                ("Protocol", "lambda"),
                ("Endpoint", &arn),
            ],
        )
        .await?;
        functions.push(name);
    }

    // Baseline: the same number of async invokes of one function, straight to Lambda.
    let invoke_path = format!("/2015-03-31/functions/{baseline}/invocations");
    let before = invocations(client, &[baseline.to_string()]).await?;
    let (took, lat) = fire(n, clients, {
        let client = client.clone();
        let path = invoke_path.clone();
        move || {
            let client = client.clone();
            let path = path.clone();
            async move {
                client
                    .send(
                        Method::POST,
                        &path,
                        &[("x-amz-invocation-type", "Event".to_string())],
                        Some(Bytes::from_static(b"{}")),
                    )
                    .await?;
                Ok(())
            }
        }
    })
    .await?;
    row(
        &format!("baseline: async Invoke ({clients} clients)"),
        n,
        took,
        Some(&lat),
    );
    until_invoked(
        client,
        &[baseline.to_string()],
        before + n as u64,
        Duration::from_secs(300),
    )
    .await?;

    let before = invocations(client, &functions).await?;
    let started = Instant::now();
    let (took, lat) = fire(n, clients, {
        let topics = topics.clone();
        let topic = topic.clone();
        move || {
            let topics = topics.clone();
            let topic = topic.clone();
            async move { publish(&topics, &topic).await }
        }
    })
    .await?;
    row(&format!("Publish ({clients} clients)"), n, took, Some(&lat));
    let target = before + (n * SUBSCRIBERS) as u64;
    until_invoked(client, &functions, target, Duration::from_secs(600)).await?;
    let all = started.elapsed();
    row(
        "fan-out: every subscriber ran every one",
        n * SUBSCRIBERS,
        all,
        None,
    );

    // Latency on an idle topic: Publish to each subscriber's START (ms resolution).
    let mut samples = Vec::new();
    let mut positions = Vec::new();
    for name in &functions {
        let path = format!("/shoal/v1/functions/{name}/logs");
        let after = latest_log(client, &path).await?;
        positions.push((path, after));
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent_ms = crate::timefmt::now_ms();
        publish(&topics, &topic).await?;
        for (path, after) in &mut positions {
            if let Some(d) = start_after(client, path, after, sent_ms, None).await? {
                samples.push(d);
            }
        }
    }
    print_start_latency(
        "Publish to a subscriber's START on an idle topic (ms resolution)",
        samples,
    );
    Ok(())
}
