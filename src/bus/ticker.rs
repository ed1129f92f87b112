//! The ticker: an event source that fires scheduled rules (`ScheduleExpression`) as
//! EventBridge does, with a `Scheduled Event` (source `aws.events`, the rule's ARN in
//! `resources`, `detail` `{}`) to each of the rule's targets.
//!
//! Timers are durable: when a rule's schedule began and when it last fired are kept in
//! the outbox's database, and each firing is committed with its event and deliveries in
//! one transaction. After a restart a rule whose firing was due while the server was down
//! fires once (never once per missed period), and then keeps its schedule. Firings of one
//! rule never overlap: the next is computed from the last.
//!
//! `SHOAL_SCHEDULE_SPEEDUP` (a whole number, default 1) runs schedule time that many times
//! faster than the wall clock (from the first start with a speedup, kept in the data
//! directory's `schedule-clock` file, so that it goes on across restarts): a test sees
//! `rate(1 minute)` fire every second with 60.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::EventBusService;
use super::outbox::Accepted;
use super::schedule::Schedule;
use crate::invoke::BoxFuture;
use crate::sources::{EventSource, SourceContext};

/// The longest the ticker sleeps between looks at the schedules.
const TICK: Duration = Duration::from_millis(200);

/// The file (in the data directory) that keeps where a faster schedule clock runs from.
pub const FAST_CLOCK_FILE: &str = "schedule-clock";

/// Schedule time: the wall clock, or one `speedup` times faster from a point kept in the
/// data directory (the wall-clock time of the first start with a speedup), so that
/// schedule time goes on from where it was across restarts.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_ms: u64,
    speedup: u64,
}

impl Clock {
    pub fn from_env(data_dir: &std::path::Path) -> Self {
        let speedup = std::env::var("SHOAL_SCHEDULE_SPEEDUP")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|s| *s >= 1)
            .unwrap_or(1);
        let mut start_ms = 0;
        if speedup > 1 {
            let file = data_dir.join(FAST_CLOCK_FILE);
            start_ms = match std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                Some(ms) => ms,
                None => {
                    let now = crate::timefmt::now_ms();
                    if let Err(e) = std::fs::write(&file, now.to_string()) {
                        tracing::warn!(error = %e, "the faster schedule clock's start was not kept");
                    }
                    now
                }
            };
            tracing::warn!(
                speedup,
                start_ms,
                "schedule time runs faster than the wall clock (SHOAL_SCHEDULE_SPEEDUP)"
            );
        }
        Self { start_ms, speedup }
    }

    pub fn now(&self) -> u64 {
        let real = crate::timefmt::now_ms();
        self.start_ms + real.saturating_sub(self.start_ms) * self.speedup
    }

    /// How long, on the wall clock, until schedule time reaches `due`.
    pub fn real_wait(&self, due: u64) -> Duration {
        Duration::from_millis(due.saturating_sub(self.now()) / self.speedup)
    }
}

pub struct Ticker {
    bus: Arc<EventBusService>,
    clock: Clock,
}

impl Ticker {
    pub fn new(bus: Arc<EventBusService>, clock: Clock) -> Arc<Self> {
        Arc::new(Self { bus, clock })
    }
}

impl EventSource for Ticker {
    fn name(&self) -> String {
        "schedules".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.tick()).await {
                    Ok(true) => self.bus.committed.notify_one(),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "the schedule tick failed"),
                }
                tokio::select! {
                    () = tokio::time::sleep(TICK) => {}
                    () = context.shutdown.started() => return,
                }
            }
        })
    }
}

impl Ticker {
    /// Fires every scheduled rule that is due; whether any fired.
    fn tick(&self) -> bool {
        let now = self.clock.now();
        let outbox = self.bus.outbox();
        let mut fired = false;
        for (region, rule) in self.bus.scheduled_rules() {
            let Some(expression) = &rule.schedule_expression else {
                continue;
            };
            let Ok(schedule) = Schedule::parse(expression) else {
                continue;
            };
            let (origin, last) = match outbox.schedule_state(&rule.arn, now) {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(error = %e, rule = %rule.arn, "reading a schedule failed");
                    continue;
                }
            };
            let Some(due) = schedule.next_after(last, origin) else {
                continue;
            };
            if due > now {
                continue;
            }
            // Missed periods collapse into this one firing: the next counts from now
            // (rates keep their phase from the origin).
            let fired_at = schedule.settled(now, origin);
            let event = json!({
                "version": "0",
                "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": self.bus.account(),
                "time": super::event::iso_seconds(due),
                "region": region,
                "resources": [rule.arn],
                "detail": {},
            });
            let deliveries = rule
                .targets
                .values()
                .map(|t| (rule.arn.clone(), t.clone()))
                .collect();
            match outbox.fire(
                &rule.arn,
                Accepted {
                    event,
                    deliveries,
                    archives: Vec::new(),
                },
                fired_at,
                crate::timefmt::now_ms(),
            ) {
                Ok(()) => {
                    tracing::debug!(rule = %rule.arn, "a schedule fired");
                    fired = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, rule = %rule.arn, "a schedule's firing was not committed")
                }
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faster_clock_runs_from_its_start() {
        let clock = Clock {
            start_ms: crate::timefmt::now_ms() - 1000,
            speedup: 60,
        };
        let ahead = clock.now() - crate::timefmt::now_ms();
        assert!((58_000..=62_000).contains(&ahead), "{ahead}");
    }
}
