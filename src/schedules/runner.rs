//! The schedule runner: an event source that fires the Scheduler's schedules.
//!
//! Timers are durable in the event bus's outbox (`bus_schedules`, keyed by the schedule's
//! ARN, reset when the schedule is made or changed): a firing commits the target's
//! delivery and the time it fired in one transaction, so a restart neither loses nor
//! repeats one; a firing due while the server was down fires once on start, never once per
//! missed period; the next firing is computed from the last, so two never overlap. A
//! flexible time window puts a firing off by a fixed share of the window drawn from the
//! schedule and the firing (the same after a restart). A schedule with no firing left
//! (a one-time `at` that fired, or past its `EndDate`) is deleted when its
//! `ActionAfterCompletion` is `DELETE`.
//!
//! Runs on the bus's schedule clock (`SHOAL_SCHEDULE_SPEEDUP`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::expression::Expression;
use super::service::bus_target;
use super::{Schedule, SchedulerService};
use crate::bus::outbox::Accepted;
use crate::bus::ticker::Clock;
use crate::invoke::BoxFuture;
use crate::sources::{EventSource, SourceContext};

/// The longest the runner sleeps between looks at the schedules.
const TICK: Duration = Duration::from_millis(200);

pub struct Runner {
    scheduler: Arc<SchedulerService>,
    clock: Clock,
}

impl Runner {
    pub fn new(scheduler: Arc<SchedulerService>, clock: Clock) -> Arc<Self> {
        Arc::new(Self { scheduler, clock })
    }
}

/// What one look at the schedules did.
#[derive(Default)]
struct Pass {
    fired: bool,
    /// Schedules with no firing left whose action after completion is `DELETE`.
    completed: Vec<Arc<Schedule>>,
    /// The earliest firing still to come (schedule time).
    next_due: Option<u64>,
}

impl EventSource for Runner {
    fn name(&self) -> String {
        "scheduler".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let me = self.clone();
                let pass = match tokio::task::spawn_blocking(move || me.pass()).await {
                    Ok(pass) => pass,
                    Err(e) => {
                        tracing::error!(error = %e, "a scheduler pass failed");
                        Pass::default()
                    }
                };
                if pass.fired {
                    self.scheduler.bus().committed.notify_one();
                }
                for schedule in pass.completed {
                    match self.scheduler.delete_completed(&schedule).await {
                        Ok(()) => {
                            tracing::info!(schedule = %schedule.arn, "a completed schedule deleted")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, schedule = %schedule.arn, "deleting a completed schedule failed")
                        }
                    }
                }
                let wait = pass
                    .next_due
                    .map(|due| self.clock.real_wait(due))
                    .map_or(TICK, |w| w.min(TICK));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = context.shutdown.started() => return,
                }
            }
        })
    }
}

impl Runner {
    fn pass(&self) -> Pass {
        let now = self.clock.now();
        let mut pass = Pass::default();
        for schedule in self.scheduler.all() {
            if !schedule.enabled() {
                continue;
            }
            let span = tracing::debug_span!("schedule", schedule = %schedule.arn);
            let _enter = span.enter();
            match self.consider(&schedule, now, &mut pass) {
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "a schedule's firing was not committed"),
            }
        }
        pass
    }

    /// Fires `schedule` if it is due at `now`.
    fn consider(
        &self,
        schedule: &Arc<Schedule>,
        now: u64,
        pass: &mut Pass,
    ) -> Result<(), crate::bus::BusError> {
        let Ok(expression) = Expression::parse(&schedule.expression, schedule.timezone.as_deref())
        else {
            return Ok(());
        };
        let outbox = self.scheduler.bus().outbox();
        // When the schedule was made or changed, on the schedule clock (a rate counts from
        // there, or from its StartDate).
        let (made, last) = outbox.schedule_state(&schedule.arn, now)?;
        let origin = schedule.start_ms.unwrap_or(made);
        let after = match schedule.start_ms {
            Some(start) => last.max(start.saturating_sub(1)),
            None => last,
        };
        let next = expression
            .next_after(after, origin)
            .filter(|n| schedule.end_ms.is_none_or(|end| *n <= end));
        let Some(next) = next else {
            if schedule.action_after_completion == "DELETE" {
                pass.completed.push(schedule.clone());
            }
            return Ok(());
        };
        let due = next + flexible_delay(schedule, next);
        if due > now {
            pass.next_due = Some(pass.next_due.map_or(due, |d| d.min(due)));
            return Ok(());
        }
        let fired_at = if expression.is_once() {
            next
        } else {
            expression.settled(now, origin)
        };
        let execution = uuid::Uuid::new_v4().to_string();
        let scheduled_time = crate::bus::event::iso_seconds(next);
        let input = context_filled(
            schedule
                .target
                .get("Input")
                .and_then(|i| i.as_str())
                .unwrap_or("{}"),
            &schedule.arn,
            &scheduled_time,
            &execution,
        );
        // The target (and a dead-letter queue) gets the input text as it is.
        let event = Value::String(input);
        let accepted = Accepted {
            event,
            deliveries: vec![(schedule.arn.clone(), bus_target(&schedule.target))],
            archives: Vec::new(),
        };
        outbox.fire(&schedule.arn, accepted, fired_at, crate::timefmt::now_ms())?;
        tracing::debug!(lateness_ms = now.saturating_sub(due), "a schedule fired");
        pass.fired = true;
        if let Some(following) = expression.next_after(fired_at, origin) {
            let due = following + flexible_delay(schedule, following);
            pass.next_due = Some(pass.next_due.map_or(due, |d| d.min(due)));
        }
        Ok(())
    }
}

/// How long a firing due at `next` is put off within the schedule's flexible window.
fn flexible_delay(schedule: &Schedule, next: u64) -> u64 {
    let window = schedule.window_ms();
    if window == 0 {
        return 0;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(schedule.arn.as_bytes());
    hasher.update(&next.to_le_bytes());
    u64::from(hasher.finalize()) % window
}

/// `input` with the Scheduler's context attributes filled in
/// (`<aws.scheduler.schedule-arn>`, `<aws.scheduler.scheduled-time>`,
/// `<aws.scheduler.execution-id>`, and `<aws.scheduler.attempt-number>` as 1: the
/// attempt a delivery is on is not known when the input is made).
fn context_filled(input: &str, arn: &str, scheduled_time: &str, execution: &str) -> String {
    if !input.contains("<aws.scheduler.") {
        return input.to_string();
    }
    input
        .replace("<aws.scheduler.schedule-arn>", arn)
        .replace("<aws.scheduler.scheduled-time>", scheduled_time)
        .replace("<aws.scheduler.execution-id>", execution)
        .replace("<aws.scheduler.attempt-number>", "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_attributes_are_filled_in() {
        let out = context_filled(
            r#"{"arn":"<aws.scheduler.schedule-arn>","at":"<aws.scheduler.scheduled-time>","n":<aws.scheduler.attempt-number>,"x":"<other>"}"#,
            "arn:s",
            "2026-01-01T00:00:00Z",
            "e1",
        );
        assert_eq!(
            out,
            r#"{"arn":"arn:s","at":"2026-01-01T00:00:00Z","n":1,"x":"<other>"}"#
        );
    }
}
