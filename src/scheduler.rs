//! The scheduler: which environment runs an invocation.
//!
//! Per function it keeps a pool: a stack of idle environments (the most recently used
//! on top, so the warmest one is reused) and a count of busy ones. [`Scheduler::acquire`]
//! pops an idle environment or starts a new one (outside the lock, so starts run in
//! parallel); [`Lease::release`] returns a healthy environment to the stack or destroys
//! it. Environments of an older revision of a function are never reused. The reaper
//! destroys environments idle longer than the keep-alive (scale to zero).
//!
//! Admission (account and reserved concurrency, memory capacity) is decided here too, in
//! `acquire`, before any environment is started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::environment::{Environment, Launcher, StartError};
use crate::function::FunctionRecord;

#[derive(Default)]
struct Pool {
    revision_id: String,
    /// Idle environments, most recently used last.
    idle: Vec<Arc<Environment>>,
    /// Environments running an invocation or starting for one.
    busy: usize,
}

pub struct Scheduler {
    launcher: Arc<Launcher>,
    pools: Mutex<HashMap<String, Pool>>,
    keep_alive: Duration,
}

/// An environment held for one invocation. Dropping a lease without releasing it
/// destroys the environment (the invocation's state is unknown).
pub struct Lease {
    env: Option<Arc<Environment>>,
    scheduler: Arc<Scheduler>,
    pub cold: bool,
}

impl Lease {
    pub fn env(&self) -> &Arc<Environment> {
        self.env
            .as_ref()
            .expect("a lease holds its environment until released")
    }

    /// Returns the environment: reused if `healthy`, destroyed otherwise.
    pub fn release(mut self, healthy: bool) {
        if let Some(env) = self.env.take() {
            self.scheduler.give_back(env, healthy);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            self.scheduler.give_back(env, false);
        }
    }
}

impl Scheduler {
    pub fn new(launcher: Arc<Launcher>, keep_alive: Duration) -> Arc<Self> {
        Arc::new(Self {
            launcher,
            pools: Mutex::new(HashMap::new()),
            keep_alive,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An environment for one invocation of `function`: a warm one if any is idle.
    pub async fn acquire(self: &Arc<Self>, function: &FunctionRecord) -> Result<Lease, StartError> {
        let mut stale = Vec::new();
        let warm = {
            let mut pools = self.lock();
            let pool = pools.entry(function.spec.name.clone()).or_default();
            if pool.revision_id != function.revision_id {
                stale.append(&mut pool.idle);
                pool.revision_id = function.revision_id.clone();
            }
            let mut warm = None;
            while let Some(env) = pool.idle.pop() {
                if env.is_alive() {
                    warm = Some(env);
                    break;
                }
                stale.push(env);
            }
            pool.busy += 1;
            warm
        };
        for env in stale {
            env.destroy();
        }
        if let Some(env) = warm {
            return Ok(Lease {
                env: Some(env),
                scheduler: self.clone(),
                cold: false,
            });
        }
        match self.launcher.start(function).await {
            Ok(env) => Ok(Lease {
                env: Some(env),
                scheduler: self.clone(),
                cold: true,
            }),
            Err(e) => {
                if let Some(pool) = self.lock().get_mut(&function.spec.name) {
                    pool.busy = pool.busy.saturating_sub(1);
                }
                Err(e)
            }
        }
    }

    fn give_back(&self, env: Arc<Environment>, healthy: bool) {
        let destroy = {
            let mut pools = self.lock();
            match pools.get_mut(&env.function_name) {
                Some(pool) => {
                    pool.busy = pool.busy.saturating_sub(1);
                    if healthy && env.is_alive() && pool.revision_id == env.revision_id {
                        env.touch();
                        pool.idle.push(env);
                        None
                    } else {
                        Some(env)
                    }
                }
                None => Some(env),
            }
        };
        if let Some(env) = destroy {
            env.destroy();
        }
    }

    /// Destroys the idle environments of `name`; busy ones are destroyed when released.
    /// Called when a function is updated or deleted.
    pub fn retire(&self, name: &str) {
        let idle = {
            let mut pools = self.lock();
            match pools.get_mut(name) {
                Some(pool) => {
                    pool.revision_id.clear();
                    std::mem::take(&mut pool.idle)
                }
                None => Vec::new(),
            }
        };
        for env in idle {
            env.destroy();
        }
    }

    /// Destroys environments idle longer than the keep-alive, and those whose process died.
    pub fn reap(&self) -> usize {
        let mut expired = Vec::new();
        {
            let mut pools = self.lock();
            for pool in pools.values_mut() {
                let (keep, gone): (Vec<_>, Vec<_>) = pool
                    .idle
                    .drain(..)
                    .partition(|env| env.is_alive() && env.idle_for() < self.keep_alive);
                pool.idle = keep;
                expired.extend(gone);
            }
            pools.retain(|_, pool| pool.busy > 0 || !pool.idle.is_empty());
        }
        let count = expired.len();
        for env in expired {
            env.destroy();
        }
        count
    }

    /// Runs [`Scheduler::reap`] periodically until the scheduler is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period =
            (self.keep_alive / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(scheduler) = weak.upgrade() else {
                    break;
                };
                let reaped = scheduler.reap();
                if reaped > 0 {
                    tracing::debug!(reaped, "idle environments shut down");
                }
            }
        });
    }

    /// Destroys every idle environment (server shutdown).
    pub fn shutdown(&self) {
        let all: Vec<_> = self
            .lock()
            .values_mut()
            .flat_map(|p| p.idle.drain(..))
            .collect();
        for env in all {
            env.destroy();
        }
    }
}
