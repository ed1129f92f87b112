//! Archives and replays: what makes a bus an event store.
//!
//! An [`Archive`] (one document each in the store, kind [`KIND`], keyed
//! `<region>/<name>`) keeps a copy of every event put on its bus that its optional pattern
//! matches, written in the transaction that accepts the event (`archive_log`). Replayed
//! events are not archived again. Retention counts from when an event was archived; `0`
//! keeps events for ever.
//!
//! A [`Replay`] puts the events of an archive whose `time` lies in `[EventStartTime,
//! EventEndTime)` on a bus again, in the order they arrived, each with the field
//! `replay-name` added, matched only against the rules `FilterArns` names (all of the
//! bus's rules when it names none). It replays what the archive held when it started.
//! Unlike EventBridge, which replays only to the archive's own bus, any bus of the
//! account and region may be the destination. The replayer (`replayer.rs`) does the
//! work; a replay's record and place live in the outbox's database.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::service::{EventBusService, blocking, compile};
use super::{Bus, BusError};

/// The store's kind for archive documents.
pub const KIND: &str = "event-archive";
/// The field a replayed event carries, naming its replay.
pub const REPLAY_FIELD: &str = "replay-name";

/// One archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    pub name: String,
    pub arn: String,
    pub region: String,
    /// The name of the bus it archives.
    pub bus: String,
    pub event_source_arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_pattern: Option<String>,
    /// Days an event is kept; 0: for ever.
    #[serde(default)]
    pub retention_days: u64,
    pub created_ms: u64,
}

impl Archive {
    pub fn key(&self) -> String {
        format!("{}/{}", self.region, self.name)
    }
}

/// One replay, with where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub name: String,
    pub arn: String,
    pub region: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The archive's key and ARN.
    pub archive: String,
    pub archive_arn: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The destination bus's name and ARN.
    pub bus: String,
    pub bus_arn: String,
    #[serde(default)]
    pub filter_arns: Vec<String>,
    /// `STARTING`, `RUNNING`, `CANCELLING`, `COMPLETED`, `CANCELLED` or `FAILED`.
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub replay_start_ms: u64,
    #[serde(default)]
    pub replay_end_ms: Option<u64>,
    #[serde(default)]
    pub last_replayed_ms: Option<u64>,
    /// The last archive sequence looked at, and the last it replays.
    pub cursor: i64,
    pub through: i64,
}

impl Replay {
    /// Whether the replayer still has work with it.
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "STARTING" | "RUNNING" | "CANCELLING")
    }
}

/// What `CreateArchive` and `UpdateArchive` set.
#[derive(Debug, Clone, Default)]
pub struct ArchiveInput {
    pub description: Option<String>,
    pub event_pattern: Option<String>,
    pub retention_days: Option<u64>,
}

/// What `StartReplay` asks for.
#[derive(Debug, Clone)]
pub struct ReplayInput {
    pub name: String,
    pub description: Option<String>,
    pub archive_arn: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub destination_arn: String,
    pub filter_arns: Vec<String>,
}

/// `[\.\-_A-Za-z0-9]{1,limit}`.
fn valid_name(name: &str, limit: usize) -> bool {
    (1..=limit).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

fn name_error(what: &str, field: &str, name: &str, limit: usize) -> BusError {
    BusError::Validation(format!(
        "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and {limit} ({what} name)."
    ))
}

fn key(region: &str, name: &str) -> String {
    format!("{region}/{name}")
}

impl EventBusService {
    fn archive_arn(&self, region: &str, name: &str) -> String {
        format!("arn:aws:events:{region}:{}:archive/{name}", self.account())
    }

    /// Archive `name` of `region`.
    pub fn archive(&self, region: &str, name: &str) -> Result<Arc<Archive>, BusError> {
        self.archives
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(region, name))
            .cloned()
            .ok_or_else(|| BusError::NotFound(format!("Archive {name} does not exist.")))
    }

    /// The archives of `region`, by name.
    pub fn archives(&self, region: &str) -> Vec<Arc<Archive>> {
        let mut all = self.all_archives();
        all.retain(|a| a.region == region);
        all
    }

    /// Every archive of every region.
    pub fn all_archives(&self) -> Vec<Arc<Archive>> {
        self.archives
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// How many events archive `archive` holds, and their size in bytes.
    pub async fn archive_stats(&self, archive: &Archive) -> Result<(u64, u64), BusError> {
        let outbox = self.outbox();
        let key = archive.key();
        blocking(move || outbox.archive_stats(&key)).await
    }

    /// The keys of the archives of `bus` that keep `event`.
    pub(super) fn archiving(&self, bus: &Bus, event: &Value) -> Vec<String> {
        if event.get(REPLAY_FIELD).is_some() {
            return Vec::new();
        }
        let archives = self.archives.read().unwrap_or_else(|p| p.into_inner());
        archives
            .values()
            .filter(|a| a.region == bus.region && a.bus == bus.name)
            .filter(|a| match &a.event_pattern {
                None => true,
                Some(text) => self.pattern(&a.arn, text).is_some_and(|p| p.matches(event)),
            })
            .map(|a| a.key())
            .collect()
    }

    fn check_archive_input(input: &ArchiveInput) -> Result<(), BusError> {
        if let Some(text) = &input.event_pattern {
            compile(text)?;
        }
        if let Some(d) = &input.description
            && d.chars().count() > 512
        {
            return Err(BusError::Validation(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 512".into(),
            ));
        }
        Ok(())
    }

    /// Commits an archive's document, then serves it from memory.
    async fn keep_archive(&self, archive: Archive) -> Result<Arc<Archive>, BusError> {
        let k = archive.key();
        self.put_document(KIND, &k, &archive).await?;
        let archive = Arc::new(archive);
        self.archives
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, archive.clone());
        Ok(archive)
    }

    /// `CreateArchive`.
    pub async fn create_archive(
        &self,
        region: &str,
        name: &str,
        event_source_arn: &str,
        input: ArchiveInput,
    ) -> Result<Arc<Archive>, BusError> {
        if !valid_name(name, 48) {
            return Err(name_error("archive", "archiveName", name, 48));
        }
        Self::check_archive_input(&input)?;
        let bus_name = super::bus_name(event_source_arn, region, self.account())
            .filter(|_| event_source_arn.starts_with("arn:"))
            .ok_or_else(|| {
                BusError::Validation(format!(
                    "Parameter EventSourceArn is not valid. Reason: {event_source_arn} is not an event bus ARN."
                ))
            })?
            .to_string();
        let _guard = self.writes.lock().await;
        let bus = self.bus(region, &bus_name)?;
        if self.archive(region, name).is_ok() {
            return Err(BusError::AlreadyExists(format!(
                "Archive {name} already exists."
            )));
        }
        let archive = Archive {
            name: name.to_string(),
            arn: self.archive_arn(region, name),
            region: region.to_string(),
            bus: bus.name.clone(),
            event_source_arn: bus.arn.clone(),
            description: input.description,
            event_pattern: input.event_pattern,
            retention_days: input.retention_days.unwrap_or(0),
            created_ms: crate::timefmt::now_ms(),
        };
        self.keep_archive(archive).await
    }

    /// `UpdateArchive`: what is given replaces what was.
    pub async fn update_archive(
        &self,
        region: &str,
        name: &str,
        input: ArchiveInput,
    ) -> Result<Arc<Archive>, BusError> {
        Self::check_archive_input(&input)?;
        let _guard = self.writes.lock().await;
        let mut archive = (*self.archive(region, name)?).clone();
        if input.description.is_some() {
            archive.description = input.description;
        }
        if input.event_pattern.is_some() {
            archive.event_pattern = input.event_pattern;
        }
        if let Some(days) = input.retention_days {
            archive.retention_days = days;
        }
        self.keep_archive(archive).await
    }

    /// `DeleteArchive`: the archive and every event it kept.
    pub async fn delete_archive(&self, region: &str, name: &str) -> Result<(), BusError> {
        let _guard = self.writes.lock().await;
        let archive = self.archive(region, name)?;
        let store = self.store.clone();
        let outbox = self.outbox();
        let k = archive.key();
        blocking(move || {
            store.delete_document(KIND, &k)?;
            outbox.drop_archive(&k)
        })
        .await?;
        self.archives
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&archive.key());
        Ok(())
    }

    /// `StartReplay`.
    pub async fn start_replay(&self, region: &str, input: ReplayInput) -> Result<Replay, BusError> {
        let name = input.name.clone();
        if !valid_name(&name, 64) {
            return Err(name_error("replay", "replayName", &name, 64));
        }
        let prefix = format!("arn:aws:events:{region}:{}:archive/", self.account());
        let archive_name = input.archive_arn.strip_prefix(&prefix).ok_or_else(|| {
            BusError::Validation(format!(
                "Parameter EventSourceArn is not valid. Reason: {} is not an archive ARN of this account and region.",
                input.archive_arn
            ))
        })?;
        let archive = self.archive(region, archive_name)?;
        if input.start_ms >= input.end_ms {
            return Err(BusError::Validation(
                "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.".into(),
            ));
        }
        let bus_name = super::bus_name(&input.destination_arn, region, self.account())
            .filter(|_| input.destination_arn.starts_with("arn:"))
            .ok_or_else(|| {
                BusError::Validation(format!(
                    "Parameter Destination.Arn is not valid. Reason: {} is not an event bus ARN.",
                    input.destination_arn
                ))
            })?
            .to_string();
        let bus = self.bus(region, &bus_name)?;
        for arn in &input.filter_arns {
            if !bus.rules.values().any(|r| &r.arn == arn) {
                return Err(BusError::Validation(format!(
                    "Parameter Destination.FilterArns is not valid. Reason: {arn} is not a rule of event bus {bus_name}."
                )));
            }
        }
        let outbox = self.outbox();
        let archive_key = archive.key();
        let through = blocking(move || outbox.archive_head(&archive_key)).await?;
        let replay = Replay {
            arn: format!("arn:aws:events:{region}:{}:replay/{name}", self.account()),
            name: name.clone(),
            region: region.to_string(),
            description: input.description,
            archive: archive.key(),
            archive_arn: archive.arn.clone(),
            start_ms: input.start_ms,
            end_ms: input.end_ms,
            bus: bus.name.clone(),
            bus_arn: bus.arn.clone(),
            filter_arns: input.filter_arns,
            state: "STARTING".into(),
            reason: None,
            replay_start_ms: crate::timefmt::now_ms(),
            replay_end_ms: None,
            last_replayed_ms: None,
            cursor: 0,
            through,
        };
        let outbox = self.outbox();
        let (k, record) = (key(region, &name), replay.clone());
        if !blocking(move || outbox.create_replay(&k, &record)).await? {
            return Err(BusError::AlreadyExists(format!(
                "Replay {name} already exists."
            )));
        }
        self.replays_changed.notify_one();
        Ok(replay)
    }

    /// Replay `name` of `region`.
    pub async fn replay(&self, region: &str, name: &str) -> Result<Replay, BusError> {
        let outbox = self.outbox();
        let k = key(region, name);
        blocking(move || outbox.replay(&k))
            .await?
            .ok_or_else(|| BusError::NotFound(format!("Replay {name} does not exist.")))
    }

    /// The replays of `region`, by name.
    pub async fn replays(&self, region: &str) -> Result<Vec<Replay>, BusError> {
        let outbox = self.outbox();
        let all = blocking(move || outbox.replays()).await?;
        Ok(all
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.region == region)
            .collect())
    }

    /// `CancelReplay`: a replay under way stops after the events it is committing.
    pub async fn cancel_replay(&self, region: &str, name: &str) -> Result<Replay, BusError> {
        let outbox = self.outbox();
        let k = key(region, name);
        let owned = name.to_string();
        let replay = blocking(move || {
            outbox.update_replay(&k, &[], 0, |r| {
                if !matches!(r.state.as_str(), "STARTING" | "RUNNING") {
                    return Err(BusError::IllegalStatus(format!(
                        "Replay {owned} is not in a state that can be cancelled."
                    )));
                }
                r.state = "CANCELLING".into();
                Ok(())
            })
        })
        .await?;
        self.replays_changed.notify_one();
        Ok(replay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("orders-2026.v1_a", 48));
        assert!(!valid_name("", 48));
        assert!(!valid_name("a/b", 48));
        assert!(!valid_name(&"x".repeat(49), 48));
        assert!(valid_name(&"x".repeat(64), 64));
    }
}
