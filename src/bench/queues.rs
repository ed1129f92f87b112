//! The queue and event-source-mapping figures of `shoal bench`: SendMessageBatch and
//! ReceiveMessage + DeleteMessageBatch throughput over the SQS JSON protocol beside the same
//! rows written and deleted on a bare SQLite database (batches of 10, one transaction each),
//! then messages drained through a mapping to a no-op function at batch sizes 1, 10 and
//! 100, and the latency from SendMessage to the function's START on an idle mapping.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use super::{Latencies, latest_log, print_start_latency, rate_header, row, start_after};
use crate::cli::client::Client;

async fn sqs(client: &Client, action: &str, body: Value) -> anyhow::Result<Value> {
    Ok(crate::cli::aws::sqs(client, action, &body).await?)
}

async fn create_queue(client: &Client, name: &str) -> anyhow::Result<String> {
    let out = sqs(
        client,
        "CreateQueue",
        json!({ "QueueName": name, "Attributes": { "VisibilityTimeout": "30" } }),
    )
    .await?;
    out["QueueUrl"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("CreateQueue answered no QueueUrl: {out}"))
}

/// Sends `n` messages in batches of 10 from `clients` concurrent clients; returns the time
/// and each request's latency.
async fn send_all(
    client: &Client,
    url: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<(Duration, Latencies)> {
    let batches = Arc::new(AtomicUsize::new(n.div_ceil(10)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, batches) = (client.clone(), url.to_string(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while batches
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                .is_ok()
            {
                let entries: Vec<Value> = (0..10)
                    .map(|i| json!({ "Id": format!("m{i}"), "MessageBody": "{\"bench\":true}" }))
                    .collect();
                let sent = Instant::now();
                sqs(
                    &client,
                    "SendMessageBatch",
                    json!({ "QueueUrl": url, "Entries": entries }),
                )
                .await?;
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

/// Receives (10 at a time) and deletes every message of the queue with `clients` clients;
/// returns the messages taken, the time and each receive + delete's latency.
async fn drain_all(
    client: &Client,
    url: &str,
    clients: usize,
) -> anyhow::Result<(usize, Duration, Latencies)> {
    let taken = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, taken) = (client.clone(), url.to_string(), taken.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let began = Instant::now();
                let out = sqs(
                    &client,
                    "ReceiveMessage",
                    json!({ "QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0 }),
                )
                .await?;
                let messages = out["Messages"].as_array().cloned().unwrap_or_default();
                if messages.is_empty() {
                    break;
                }
                let entries: Vec<Value> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({ "Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"] }))
                    .collect();
                sqs(
                    &client,
                    "DeleteMessageBatch",
                    json!({ "QueueUrl": url, "Entries": entries }),
                )
                .await?;
                taken.fetch_add(messages.len(), Ordering::SeqCst);
                samples.push(began.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok((
        taken.load(Ordering::SeqCst),
        start.elapsed(),
        Latencies::of(samples),
    ))
}

/// The store alone: `n` rows inserted in transactions of 10, then deleted 10 at a time.
fn store_baseline(path: &Path, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE m (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT, body TEXT, visible INTEGER);
         CREATE INDEX m_visible ON m (queue, visible);",
    )?;
    let start = Instant::now();
    for _ in 0..n.div_ceil(10) {
        let tx = conn.unchecked_transaction()?;
        for _ in 0..10 {
            tx.execute(
                "INSERT INTO m (queue, body, visible) VALUES ('q', '{\"bench\":true}', 0)",
                [],
            )?;
        }
        tx.commit()?;
    }
    let inserted = start.elapsed();
    let start = Instant::now();
    loop {
        let tx = conn.unchecked_transaction()?;
        let deleted = tx.execute(
            "DELETE FROM m WHERE seq IN (SELECT seq FROM m WHERE queue = 'q' ORDER BY seq LIMIT 10)",
            [],
        )?;
        tx.commit()?;
        if deleted == 0 {
            break;
        }
    }
    Ok((inserted, start.elapsed()))
}

/// Waits until the queue holds no message (visible or in flight); the time it took.
async fn until_empty(client: &Client, url: &str, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let out = sqs(
            client,
            "GetQueueAttributes",
            json!({ "QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }),
        )
        .await?;
        let count = |k: &str| {
            out["Attributes"][k]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
        };
        if count("ApproximateNumberOfMessages") + count("ApproximateNumberOfMessagesNotVisible")
            == 0
        {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < limit, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole section; `function` is a no-op (a minimal Runtime API client).
pub async fn run(
    client: &Client,
    data_dir: &Path,
    (region, account): (&str, &str),
    function: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<()> {
    rate_header("queues and mappings");
    let path = data_dir.join("queue-baseline.db");
    let (inserted, deleted) =
        tokio::task::spawn_blocking(move || store_baseline(&path, n)).await??;
    row("baseline: SQLite insert, 10 a commit", n, inserted, None);
    row("baseline: SQLite delete, 10 a commit", n, deleted, None);

    let url = create_queue(client, "bench-throughput").await?;
    let (took, lat) = send_all(client, &url, n, clients).await?;
    row(
        &format!("SendMessageBatch of 10 ({clients} clients)"),
        n,
        took,
        Some(&lat),
    );
    let (taken, took, lat) = drain_all(client, &url, clients).await?;
    row(
        &format!("Receive 10 + DeleteBatch ({clients} clients)"),
        taken,
        took,
        Some(&lat),
    );

    for batch in [1usize, 10, 100] {
        let url = create_queue(client, &format!("bench-mapping-{batch}")).await?;
        send_all(client, &url, n, clients).await?;
        let queue_arn = format!("arn:aws:sqs:{region}:{account}:bench-mapping-{batch}");
        let mut mapping = json!({
            "EventSourceArn": queue_arn,
            "FunctionName": function,
            "BatchSize": batch,
        });
        if batch > 10 {
            mapping["MaximumBatchingWindowInSeconds"] = json!(1);
        }
        let created = client
            .send_json(Method::POST, "/2015-03-31/event-source-mappings", &mapping)
            .await?;
        let took = until_empty(client, &url, Duration::from_secs(300)).await?;
        row(&format!("mapping drain, batch {batch}"), n, took, None);
        if let Some(uuid) = created["UUID"].as_str() {
            client
                .send(
                    Method::DELETE,
                    &format!("/2015-03-31/event-source-mappings/{uuid}"),
                    &[],
                    None,
                )
                .await?;
        }
    }

    // Latency on an idle mapping: from SendMessage to the START line of the invocation
    // that got it (ms resolution).
    let url = create_queue(client, "bench-latency").await?;
    let queue_arn = format!("arn:aws:sqs:{region}:{account}:bench-latency");
    client
        .send_json(
            Method::POST,
            "/2015-03-31/event-source-mappings",
            &json!({ "EventSourceArn": queue_arn, "FunctionName": function, "BatchSize": 1 }),
        )
        .await?;
    let logs_path = format!("/shoal/v1/functions/{function}/logs");
    let mut after = latest_log(client, &logs_path).await?;
    let mut samples = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent_ms = crate::timefmt::now_ms();
        sqs(
            client,
            "SendMessage",
            json!({ "QueueUrl": url, "MessageBody": "{}" }),
        )
        .await?;
        if let Some(d) = start_after(client, &logs_path, &mut after, sent_ms, None).await? {
            samples.push(d);
        }
    }
    print_start_latency(
        "SendMessage to START on an idle mapping (ms resolution)",
        samples,
    );
    Ok(())
}
