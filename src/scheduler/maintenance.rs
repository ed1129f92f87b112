//! Maintenance of the pools, outside any invocation: the tick that reaps environments idle
//! past the keep-alive (scale to zero) and dead ones, and keeps provisioned pools at their
//! target (starting the missing environments in the background, shutting down the surplus).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lifecycle::{Kind, Phase};
use super::pool::{Member, PoolKey, memory_of};
use super::{Launch, Scheduler, admission};
use crate::function::FunctionRecord;
use crate::metrics::names;

impl<L: Launch> Scheduler<L> {
    /// Starts provisioned environments up to each target; shuts down the surplus.
    pub(super) fn maintain_provisioned(self: &Arc<Self>) {
        let mut to_start = Vec::new();
        let mut surplus = Vec::new();
        let mut evicted = Vec::new();
        {
            let mut state = self.lock();
            let state = &mut *state;
            // Surplus first, so that its memory is free for every pool's missing ones.
            for (_, pool) in state.pools.iter_mut() {
                surplus.extend(pool.surplus());
            }
            state.load.free_memory(memory_of(&surplus));
            for key in state.pools.keys() {
                let Some(pool) = state.pools.get_mut(&key) else {
                    continue;
                };
                let Some(record) = pool.provisioned.record.clone() else {
                    continue;
                };
                let missing = pool.missing_provisioned();
                let memory = u64::from(record.spec.memory_mb);
                for _ in 0..missing {
                    let room = admission::memory(
                        memory,
                        state.load.memory_mb(),
                        state.pools.evictable_mb(),
                        self.limits.memory_capacity_mb,
                    );
                    let pool = match room {
                        Ok(evict_mb) => {
                            evicted.extend(state.make_room(evict_mb, memory));
                            state.pools.entry(&key)
                        }
                        Err(_) => {
                            let pool = state.pools.entry(&key);
                            if !pool.provisioned.short_of_memory {
                                tracing::warn!(function = %key.function, version = %key.version,
                                    "no memory capacity left for a provisioned environment (retried \
                                     each tick; said once until the target is met)");
                            }
                            pool.provisioned.short_of_memory = true;
                            break;
                        }
                    };
                    pool.begin_start(Kind::Provisioned);
                    to_start.push((key.clone(), record.clone()));
                }
                let pool = state.pools.entry(&key);
                if missing > 0 && pool.missing_provisioned() == 0 {
                    pool.provisioned.short_of_memory = false;
                }
            }
        }
        self.count_evictions(&evicted);
        self.shut_down(evicted);
        self.shut_down(surplus);
        for (key, record) in to_start {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.start_provisioned(key, record).await });
        }
    }

    async fn start_provisioned(self: Arc<Self>, key: PoolKey, record: Arc<FunctionRecord>) {
        let memory = u64::from(record.spec.memory_mb);
        let env = match self.launcher.start(&record, true).await {
            Ok(env) => match self
                .launcher
                .wait_ready(&env, self.limits.init_timeout)
                .await
            {
                Ok(_) => Some(env),
                Err(failure) => {
                    tracing::warn!(function = %key.function, version = %key.version, ?failure,
                        "a provisioned environment failed to initialise");
                    self.launcher.destroy(&env);
                    None
                }
            },
            Err(e) => {
                tracing::warn!(function = %key.function, error = %e, "a provisioned environment failed to start");
                None
            }
        };
        let member = env.map(|env| Member::new(env, &record, Kind::Provisioned));
        let mut state = self.lock();
        let (kept, unwanted) = match (state.pools.get_mut(&key), member) {
            (Some(pool), Some(member)) => {
                let unwanted = pool.provisioned_ready(member, Instant::now());
                (unwanted.is_none(), unwanted)
            }
            (Some(pool), None) => {
                pool.shift(Kind::Provisioned, Phase::Starting, Phase::Gone);
                (false, None)
            }
            (None, member) => (false, member),
        };
        if !kept {
            state.load.free_memory(memory);
        }
        drop(state);
        if let Some(unwanted) = unwanted {
            self.shut_down(vec![unwanted]);
        }
    }

    /// Shuts down environments idle longer than the keep-alive, and those whose process
    /// died; drops empty pools. Provisioned environments are never reaped.
    pub fn reap(&self) -> usize {
        let mut expired = Vec::new();
        {
            let mut state = self.lock();
            let now = Instant::now();
            for (_, pool) in state.pools.iter_mut() {
                expired
                    .extend(pool.reap(now, self.limits.keep_alive, |e| self.launcher.is_alive(e)));
            }
            state.load.free_memory(memory_of(&expired));
            state.pools.prune();
        }
        let count = expired.len();
        if count > 0 {
            self.metrics.add(names::REAPED, &[], count as u64);
        }
        self.shut_down(expired);
        count
    }

    /// Runs the maintenance tick (reaping, provisioned pools) until the scheduler is dropped
    /// or the server's shutdown begins.
    pub fn spawn_maintenance(self: &Arc<Self>, shutdown: crate::shutdown::ShutdownSignal) {
        let weak = Arc::downgrade(self);
        let period =
            (self.limits.keep_alive / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.started() => break,
                }
                let Some(scheduler) = weak.upgrade() else {
                    break;
                };
                let reaped = scheduler.reap();
                if reaped > 0 {
                    tracing::debug!(reaped, "idle environments shut down");
                }
                scheduler.maintain_provisioned();
            }
        });
    }
}
