//! The replayer: an event source that works through replays, and keeps archives within
//! their retention.
//!
//! Each pass takes every active replay a step: up to [`BATCH`] archived events after its
//! place, those in its window put on its destination bus (with `replay-name`, matched only
//! against the rules it names) and committed with their deliveries and the replay's new
//! place in one transaction. A replay that has looked at everything it started with is
//! `COMPLETED`; one being cancelled is `CANCELLED` at its next step. After a restart a
//! replay goes on from its last committed place.

use std::sync::Arc;
use std::time::Duration;

use super::EventBusService;
use super::archive::{REPLAY_FIELD, Replay};
use super::outbox::Accepted;
use crate::invoke::BoxFuture;
use crate::sources::{EventSource, SourceContext};

/// Archived events looked at per replay per step.
const BATCH: usize = 500;
/// The longest the replayer sleeps when no replay is under way.
const IDLE: Duration = Duration::from_millis(500);
/// How often archives are cut to their retention.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

pub struct Replayer {
    bus: Arc<EventBusService>,
}

impl Replayer {
    pub fn new(bus: Arc<EventBusService>) -> Arc<Self> {
        Arc::new(Self { bus })
    }
}

impl EventSource for Replayer {
    fn name(&self) -> String {
        "replays".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut retention_due = tokio::time::Instant::now();
            loop {
                if tokio::time::Instant::now() >= retention_due {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.expire()).await;
                    retention_due = tokio::time::Instant::now() + RETENTION_EVERY;
                }
                let me = self.clone();
                let busy = match tokio::task::spawn_blocking(move || me.step()).await {
                    Ok(busy) => busy,
                    Err(e) => {
                        tracing::error!(error = %e, "a replay step failed");
                        false
                    }
                };
                if busy {
                    self.bus.committed.notify_one();
                    if context.shutdown.is_started() {
                        return;
                    }
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(IDLE) => {}
                    () = self.bus.replays_changed.notified() => {}
                    () = context.shutdown.started() => return,
                }
            }
        })
    }
}

impl Replayer {
    /// Takes every active replay a step; whether any replayed something or changed state.
    fn step(&self) -> bool {
        let outbox = self.bus.outbox();
        let replays = match outbox.replays() {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "reading the replays failed");
                return false;
            }
        };
        let mut busy = false;
        for (key, replay) in replays.into_iter().filter(|(_, r)| r.active()) {
            let span = tracing::info_span!("replay", replay = %replay.name);
            let _enter = span.enter();
            match self.advance(&key, &replay) {
                Ok(()) => busy = true,
                Err(e) => tracing::error!(error = %e, "a replay step was not committed"),
            }
        }
        busy
    }

    /// One step of one replay.
    fn advance(&self, key: &str, replay: &Replay) -> Result<(), super::BusError> {
        let outbox = self.bus.outbox();
        let now = crate::timefmt::now_ms();
        let finish = |state: &'static str, reason: Option<String>| {
            move |r: &mut Replay| {
                r.state = state.into();
                r.reason = reason;
                r.replay_end_ms = Some(now);
                Ok(())
            }
        };
        if replay.state == "CANCELLING" {
            outbox.update_replay(key, &[], now, finish("CANCELLED", None))?;
            return Ok(());
        }
        let Some(bus) = self.bus.bus(&replay.region, &replay.bus).ok() else {
            let reason = format!("Event bus {} does not exist.", replay.bus);
            outbox.update_replay(key, &[], now, finish("FAILED", Some(reason)))?;
            return Ok(());
        };
        let archive_name = replay.archive.rsplit('/').next().unwrap_or_default();
        if self.bus.archive(&replay.region, archive_name).is_err() {
            let reason = format!("Archive {archive_name} does not exist.");
            outbox.update_replay(key, &[], now, finish("FAILED", Some(reason)))?;
            return Ok(());
        }
        let (events, last) = outbox.archived(
            &replay.archive,
            replay.cursor,
            replay.through,
            (replay.start_ms, replay.end_ms),
            BATCH,
        )?;
        let mut accepted = Vec::with_capacity(events.len());
        let mut last_time = replay.last_replayed_ms;
        for archived in events {
            let mut event = archived.event;
            if let Some(object) = event.as_object_mut() {
                object.insert(REPLAY_FIELD.into(), replay.name.clone().into());
            }
            let deliveries = self
                .bus
                .matches(&bus, &event)
                .into_iter()
                .filter(|(rule, _)| {
                    replay.filter_arns.is_empty() || replay.filter_arns.contains(rule)
                })
                .collect();
            last_time = Some(last_time.unwrap_or(0).max(archived.time_ms));
            accepted.push(Accepted {
                event,
                deliveries,
                archives: Vec::new(),
            });
        }
        let done = last >= replay.through || last == replay.cursor;
        let replayed = accepted.len();
        outbox.update_replay(key, &accepted, now, |r| {
            r.cursor = last;
            r.last_replayed_ms = last_time;
            if r.state == "STARTING" {
                r.state = "RUNNING".into();
            }
            if done && r.state == "RUNNING" {
                r.state = "COMPLETED".into();
                r.replay_end_ms = Some(now);
            }
            Ok(())
        })?;
        tracing::debug!(replayed, done, "a replay step");
        Ok(())
    }

    /// Deletes archived events older than their archive's retention.
    fn expire(&self) {
        let outbox = self.bus.outbox();
        let now = crate::timefmt::now_ms();
        for archive in self.bus.all_archives() {
            if archive.retention_days == 0 {
                continue;
            }
            let before = now.saturating_sub(archive.retention_days * 86_400_000);
            match outbox.expire_archive(&archive.key(), before) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(archive = %archive.name, expired = n, "archived events past their retention deleted")
                }
                Err(e) => {
                    tracing::error!(error = %e, archive = %archive.name, "cutting an archive to its retention failed")
                }
            }
        }
    }
}
