//! Event bus figures: from `PutEvents` to the START line of the function a rule targets
//! (an asynchronous invocation, as on EventBridge), on an otherwise idle server.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::{latest_log, print_start_latency, start_after};
use crate::cli::client::Client;

/// `samples` events, 20 ms apart, each timed from its `PutEvents` to its function's START.
pub async fn put_events_latency(
    client: &Client,
    (region, account): (&str, &str),
    function: &str,
    samples: usize,
) -> anyhow::Result<()> {
    let events = client.for_service("events");
    let rule = crate::cli::aws::events(
        &events,
        "PutRule",
        &json!({ "Name": "bench-latency", "EventPattern": "{\"source\":[\"bench\"]}" }),
    )
    .await?;
    // The rule may invoke the function (its resource policy allows it).
    client
        .send_json(
            Method::POST,
            &format!("/2015-03-31/functions/{function}/policy"),
            &json!({
                "StatementId": "bench-latency", "Action": "lambda:InvokeFunction",
                "Principal": "events.amazonaws.com", "SourceArn": rule["RuleArn"],
            }),
        )
        .await?;
    crate::cli::aws::events(
        &events,
        "PutTargets",
        &json!({ "Rule": "bench-latency", "Targets": [{
            "Id": "f", "Arn": format!("arn:aws:lambda:{region}:{account}:function:{function}"),
        }] }),
    )
    .await?;
    let logs_path = format!("/shoal/v1/functions/{function}/logs");
    let mut after = latest_log(client, &logs_path).await?;
    let mut got = Vec::new();
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent_ms = crate::timefmt::now_ms();
        crate::cli::aws::events(
            &events,
            "PutEvents",
            &json!({ "Entries": [{ "Source": "bench", "DetailType": "tick", "Detail": "{}" }] }),
        )
        .await?;
        if let Some(d) = start_after(client, &logs_path, &mut after, sent_ms, None).await? {
            got.push(d);
        }
    }
    print_start_latency(
        &format!("PutEvents to START of a function target ({samples} events, ms resolution)"),
        got,
    );
    Ok(())
}
