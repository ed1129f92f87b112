//! EventBridge's archive and replay operations: `CreateArchive`, `DescribeArchive`,
//! `ListArchives`, `UpdateArchive`, `DeleteArchive`, `StartReplay`, `DescribeReplay`,
//! `ListReplays` and `CancelReplay`, over `crate::bus::archive`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, EventsAction, EventsError, paged};
use crate::bus::archive::{Archive, ArchiveInput, Replay, ReplayInput};

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn archive_view(archive: &Archive, stats: Option<(u64, u64)>) -> Value {
    let mut out = json!({
        "ArchiveName": archive.name,
        "EventSourceArn": archive.event_source_arn,
        "State": "ENABLED",
        "RetentionDays": archive.retention_days,
        "CreationTime": seconds(archive.created_ms),
    });
    if let Some((count, size)) = stats {
        out["EventCount"] = json!(count);
        out["SizeBytes"] = json!(size);
    }
    out
}

fn replay_view(replay: &Replay) -> Value {
    let mut out = json!({
        "ReplayName": replay.name,
        "EventSourceArn": replay.archive_arn,
        "State": replay.state,
        "EventStartTime": seconds(replay.start_ms),
        "EventEndTime": seconds(replay.end_ms),
        "ReplayStartTime": seconds(replay.replay_start_ms),
    });
    if let Some(reason) = &replay.reason {
        out["StateReason"] = json!(reason);
    }
    if let Some(t) = replay.last_replayed_ms {
        out["EventLastReplayedTime"] = seconds(t);
    }
    if let Some(t) = replay.replay_end_ms {
        out["ReplayEndTime"] = seconds(t);
    }
    out
}

/// A required timestamp (epoch seconds as botocore sends them, or ISO-8601).
fn timestamp(value: Option<&Value>, field: &str) -> Result<u64, EventsError> {
    let value = value.ok_or_else(|| {
        EventsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    crate::bus::event::time_of(value).ok_or_else(|| {
        EventsError::validation(format!(
            "Parameter {field} is not valid. Reason: it is not a time."
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ArchiveFields {
    archive_name: String,
    event_source_arn: Option<String>,
    description: Option<String>,
    event_pattern: Option<String>,
    retention_days: Option<i64>,
}

impl ArchiveFields {
    fn input(&self) -> Result<ArchiveInput, EventsError> {
        let retention_days = match self.retention_days {
            Some(d) if d < 0 => {
                return Err(EventsError::validation(format!(
                    "1 validation error detected: Value '{d}' at 'retentionDays' failed to satisfy constraint: Member must have value greater than or equal to 0"
                )));
            }
            other => other.map(|d| d as u64),
        };
        Ok(ArchiveInput {
            description: self.description.clone(),
            event_pattern: self.event_pattern.clone(),
            retention_days,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Listing {
    name_prefix: Option<String>,
    event_source_arn: Option<String>,
    state: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

impl Listing {
    fn keeps(&self, name: &str, source: &str, state: &str) -> bool {
        self.name_prefix
            .as_deref()
            .is_none_or(|p| name.starts_with(p))
            && self.event_source_arn.as_deref().is_none_or(|a| a == source)
            && self.state.as_deref().is_none_or(|s| s == state)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReplayNamed {
    replay_name: String,
}

pub(super) async fn run(action: EventsAction, call: &Call<'_>) -> Result<Value, EventsError> {
    use EventsAction as A;
    let bus = &call.state.bus;
    let region = call.region().to_string();
    match action {
        A::CreateArchive => {
            let input: ArchiveFields = call.input()?;
            let source = input.event_source_arn.clone().ok_or_else(|| {
                EventsError::validation(
                    "1 validation error detected: Value null at 'eventSourceArn' failed to satisfy constraint: Member must not be null",
                )
            })?;
            let archive = bus
                .create_archive(&region, &input.archive_name, &source, input.input()?)
                .await?;
            Ok(json!({
                "ArchiveArn": archive.arn, "State": "ENABLED",
                "CreationTime": seconds(archive.created_ms),
            }))
        }
        A::UpdateArchive => {
            let input: ArchiveFields = call.input()?;
            let archive = bus
                .update_archive(&region, &input.archive_name, input.input()?)
                .await?;
            Ok(json!({
                "ArchiveArn": archive.arn, "State": "ENABLED",
                "CreationTime": seconds(archive.created_ms),
            }))
        }
        A::DescribeArchive => {
            let input: ArchiveFields = call.input()?;
            let archive = bus.archive(&region, &input.archive_name)?;
            let stats = bus.archive_stats(&archive).await?;
            let mut out = archive_view(&archive, Some(stats));
            out["ArchiveArn"] = json!(archive.arn);
            if let Some(d) = &archive.description {
                out["Description"] = json!(d);
            }
            if let Some(p) = &archive.event_pattern {
                out["EventPattern"] = json!(p);
            }
            Ok(out)
        }
        A::ListArchives => {
            let input: Listing = call.input()?;
            let mut items = Vec::new();
            for archive in bus.archives(&region) {
                if input.keeps(&archive.name, &archive.event_source_arn, "ENABLED") {
                    let stats = bus.archive_stats(&archive).await?;
                    items.push(archive_view(&archive, Some(stats)));
                }
            }
            paged("Archives", items, input.limit, input.next_token.as_deref())
        }
        A::DeleteArchive => {
            let input: ArchiveFields = call.input()?;
            bus.delete_archive(&region, &input.archive_name).await?;
            Ok(json!({}))
        }
        A::StartReplay => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Destination {
                arn: String,
                #[serde(default)]
                filter_arns: Vec<String>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                replay_name: String,
                description: Option<String>,
                event_source_arn: String,
                event_start_time: Option<Value>,
                event_end_time: Option<Value>,
                destination: Destination,
            }
            let input: Input = call.input()?;
            let replay = bus
                .start_replay(
                    &region,
                    ReplayInput {
                        name: input.replay_name,
                        description: input.description,
                        archive_arn: input.event_source_arn,
                        start_ms: timestamp(input.event_start_time.as_ref(), "EventStartTime")?,
                        end_ms: timestamp(input.event_end_time.as_ref(), "EventEndTime")?,
                        destination_arn: input.destination.arn,
                        filter_arns: input.destination.filter_arns,
                    },
                )
                .await?;
            Ok(json!({
                "ReplayArn": replay.arn, "State": replay.state,
                "ReplayStartTime": seconds(replay.replay_start_ms),
            }))
        }
        A::DescribeReplay => {
            let input: ReplayNamed = call.input()?;
            let replay = bus.replay(&region, &input.replay_name).await?;
            let mut out = replay_view(&replay);
            out["ReplayArn"] = json!(replay.arn);
            let mut destination = json!({ "Arn": replay.bus_arn });
            if !replay.filter_arns.is_empty() {
                destination["FilterArns"] = json!(replay.filter_arns);
            }
            out["Destination"] = destination;
            if let Some(d) = &replay.description {
                out["Description"] = json!(d);
            }
            Ok(out)
        }
        A::ListReplays => {
            let input: Listing = call.input()?;
            let items = bus
                .replays(&region)
                .await?
                .iter()
                .filter(|r| input.keeps(&r.name, &r.archive_arn, &r.state))
                .map(replay_view)
                .collect();
            paged("Replays", items, input.limit, input.next_token.as_deref())
        }
        A::CancelReplay => {
            let input: ReplayNamed = call.input()?;
            let replay = bus.cancel_replay(&region, &input.replay_name).await?;
            Ok(json!({ "ReplayArn": replay.arn, "State": replay.state }))
        }
        _ => Err(EventsError::validation(
            "not an archive or replay operation",
        )),
    }
}
