//! Lambda's execution record: what an async invocation's destination receives.

use serde_json::json;

use super::policy::Condition;
use crate::invoke::InvokeResponse;
use crate::store::events::QueuedEvent;
use crate::timefmt::now_ms;

/// Lambda's execution record for an asynchronous invocation.
pub fn execution_record(
    queued: &QueuedEvent,
    function_arn: &str,
    condition: Condition,
    response: Option<&InvokeResponse>,
) -> serde_json::Value {
    let request_payload: serde_json::Value =
        serde_json::from_slice(&queued.event.payload).unwrap_or(serde_json::Value::Null);
    let mut record = json!({
        "version": "1.0",
        "timestamp": crate::timefmt::iso_timestamp(now_ms()),
        "requestContext": {
            "requestId": queued.event.request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": queued.attempts + u32::from(response.is_some()),
        },
        "requestPayload": request_payload,
    });
    if let Some(response) = response {
        let payload: serde_json::Value =
            serde_json::from_slice(&response.payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&response.payload).into())
            });
        let mut context =
            json!({ "statusCode": 200, "executedVersion": response.executed_version });
        if let Some(error) = response.function_error {
            context["functionError"] = json!(error);
        }
        record["responseContext"] = context;
        record["responsePayload"] = payload;
    }
    record
}
