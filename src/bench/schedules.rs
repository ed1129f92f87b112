//! Schedule figures: how late a Scheduler schedule's firing reaches its target, measured
//! from the time it was due (its `<aws.scheduler.scheduled-time>`, the input it hands a
//! queue) to the queue's `SentTimestamp` for the message, on an otherwise idle server.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::Latencies;
use crate::cli::client::Client;

/// `count` one-time schedules due one a second from two seconds on, each timed from when
/// it was due to when its queue got its message.
pub async fn lateness(
    client: &Client,
    (region, account): (&str, &str),
    count: usize,
) -> anyhow::Result<()> {
    let sqs = client.for_service("sqs");
    let scheduler = client.for_service("scheduler");
    let queue = "bench-schedules";
    let url = crate::cli::aws::sqs(&sqs, "CreateQueue", &json!({ "QueueName": queue }))
        .await?["QueueUrl"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first_s = crate::timefmt::now_ms() / 1000 + 2;
    for i in 0..count {
        let due = crate::timefmt::iso_timestamp((first_s + i as u64) * 1000);
        scheduler
            .send_json(
                Method::POST,
                &format!("/schedules/bench-at-{i}"),
                &json!({
                    "ScheduleExpression": format!("at({})", &due[..19]),
                    "FlexibleTimeWindow": { "Mode": "OFF" },
                    "ActionAfterCompletion": "DELETE",
                    "Target": {
                        "Arn": format!("arn:aws:sqs:{region}:{account}:{queue}"),
                        "RoleArn": format!("arn:aws:iam::{account}:role/bench"),
                        "Input": "<aws.scheduler.scheduled-time>",
                    },
                }),
            )
            .await?;
    }
    let mut samples = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(count as u64 + 15);
    while samples.len() < count && tokio::time::Instant::now() < deadline {
        let got = crate::cli::aws::sqs(
            &sqs,
            "ReceiveMessage",
            &json!({ "QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1,
                     "AttributeNames": ["SentTimestamp"] }),
        )
        .await?;
        for m in got["Messages"].as_array().into_iter().flatten() {
            let due = m["Body"].as_str().and_then(crate::timefmt::parse_iso);
            let sent = m["Attributes"]["SentTimestamp"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(due), Some(sent)) = (due, sent) {
                samples.push(Duration::from_millis(sent.saturating_sub(due)));
            }
            crate::cli::aws::sqs(
                &sqs,
                "DeleteMessage",
                &json!({ "QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"] }),
            )
            .await?;
        }
    }
    let fired = samples.len();
    let latency = Latencies::of(samples);
    println!(
        "  schedule lateness, due to the target queue ({fired} of {count} one-time schedules): p50 {} ms, p99 {} ms",
        super::ms(latency.percentile(0.5)),
        super::ms(latency.percentile(0.99)),
    );
    Ok(())
}
