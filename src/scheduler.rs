//! The scheduler: whether an invocation may run, and in which environment.
//!
//! Per function version it keeps a pool: a stack of idle on-demand environments (the most
//! recently used on top, so the warmest one is reused), the idle provisioned ones (used
//! first), and counts of starting and busy ones. [`Scheduler::acquire`] first admits the
//! invocation against the limits — the function's reserved concurrency, else the
//! unreserved share of the account limit, and the memory capacity (evicting idle
//! environments, least recently used first) — then pops an idle environment or starts a
//! new one outside the lock, so starts run in parallel. [`Lease::release`] returns a
//! healthy environment to its stack or shuts it down. Environments of an older revision
//! are never reused. The maintenance tick reaps environments idle past the keep-alive
//! (scale to zero) and keeps provisioned pools at their target size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::environment::{Environment, Launcher, StartError};
use crate::function::FunctionRecord;
use crate::metrics::{self, Metrics, names};

/// Environments are never shared between functions or versions: one pool per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub function: String,
    pub version: String,
}

impl PoolKey {
    pub fn of(record: &FunctionRecord) -> Self {
        Self {
            function: record.spec.name.clone(),
            version: record.version.clone(),
        }
    }
}

/// The scheduler's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Account-wide concurrent executions.
    pub concurrency: usize,
    /// Sum of the memory sizes of live environments may not exceed this.
    pub memory_capacity_mb: u64,
    pub keep_alive: Duration,
    /// Between SIGTERM and SIGKILL when an idle environment is shut down.
    pub shutdown_grace: Duration,
    /// Longest init phase of a provisioned environment.
    pub init_timeout: Duration,
}

/// Why an invocation was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    ReservedConcurrency,
    AccountConcurrency,
    MemoryCapacity,
}

impl Throttle {
    /// Lambda's `Reason` for the 429.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ReservedConcurrency => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Self::AccountConcurrency | Self::MemoryCapacity => "ConcurrentInvocationLimitExceeded",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::ReservedConcurrency => "Rate Exceeded.",
            Self::AccountConcurrency => "Rate Exceeded.",
            Self::MemoryCapacity => {
                "Rate Exceeded: the server has no memory capacity left for another environment."
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("throttled: {}", .0.reason())]
    Throttled(Throttle),
    #[error(transparent)]
    Start(#[from] StartError),
}

#[derive(Default)]
struct Provisioned {
    target: usize,
    /// Initialised provisioned environments, idle or busy.
    live: usize,
    starting: usize,
    record: Option<Arc<FunctionRecord>>,
    /// The target could not be met for lack of memory capacity (said once, not each tick).
    short_of_memory: bool,
}

#[derive(Default)]
struct Pool {
    revision_id: String,
    /// Idle on-demand environments, most recently used last.
    idle: Vec<Arc<Environment>>,
    /// Idle provisioned environments.
    provisioned_idle: Vec<Arc<Environment>>,
    /// On-demand environments starting for an invocation.
    starting: usize,
    /// Environments running an invocation.
    busy: usize,
    provisioned: Provisioned,
}

impl Pool {
    fn is_empty(&self) -> bool {
        self.idle.is_empty()
            && self.provisioned_idle.is_empty()
            && self.starting == 0
            && self.busy == 0
            && self.provisioned.target == 0
            && self.provisioned.live == 0
            && self.provisioned.starting == 0
    }
}

#[derive(Default)]
struct State {
    pools: HashMap<PoolKey, Pool>,
    /// In-flight invocations per function (all versions).
    inflight: HashMap<String, usize>,
    account_inflight: usize,
    /// In-flight invocations of functions without reserved concurrency.
    unreserved_inflight: usize,
    reserved: HashMap<String, u32>,
    reserved_sum: usize,
    memory_used_mb: u64,
}

impl State {
    /// Removes the least recently used idle on-demand environment anywhere.
    fn evict_one(&mut self) -> Option<Arc<Environment>> {
        let (key, index) = self
            .pools
            .iter()
            .flat_map(|(key, pool)| {
                pool.idle
                    .iter()
                    .enumerate()
                    .map(move |(i, env)| (key, i, env.idle_for()))
            })
            .max_by_key(|(_, _, idle)| *idle)
            .map(|(key, i, _)| (key.clone(), i))?;
        let env = self.pools.get_mut(&key)?.idle.remove(index);
        self.memory_used_mb = self.memory_used_mb.saturating_sub(u64::from(env.memory_mb));
        Some(env)
    }

    /// Makes room for `mb` more, evicting idle environments; false if it cannot.
    fn reserve_memory(
        &mut self,
        mb: u64,
        capacity: u64,
        evicted: &mut Vec<Arc<Environment>>,
    ) -> bool {
        while self.memory_used_mb + mb > capacity {
            match self.evict_one() {
                Some(env) => evicted.push(env),
                None => return false,
            }
        }
        self.memory_used_mb += mb;
        true
    }
}

pub struct Scheduler {
    launcher: Arc<Launcher>,
    state: Mutex<State>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// An environment held for one invocation. Dropping a lease without releasing it
/// destroys the environment (the invocation's state is unknown).
pub struct Lease {
    env: Option<Arc<Environment>>,
    key: PoolKey,
    scheduler: Arc<Scheduler>,
    /// A new environment, still in its init phase until [`Lease::ready`].
    pub cold: bool,
    initializing: bool,
    /// Counted against the unreserved share of the account limit.
    unreserved: bool,
}

impl Lease {
    pub fn env(&self) -> &Arc<Environment> {
        self.env
            .as_ref()
            .expect("a lease holds its environment until released")
    }

    /// The environment finished its init phase: it is now busy with the invocation.
    pub fn ready(&mut self) {
        if self.initializing {
            self.initializing = false;
            let mut state = self.scheduler.lock();
            if let Some(pool) = state.pools.get_mut(&self.key) {
                pool.starting = pool.starting.saturating_sub(1);
                pool.busy += 1;
            }
        }
    }

    /// Returns the environment: reused if `healthy`, destroyed otherwise.
    pub fn release(mut self, healthy: bool) {
        if let Some(env) = self.env.take() {
            self.scheduler.give_back(&self, env, healthy);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            let scheduler = self.scheduler.clone();
            scheduler.give_back(self, env, false);
        }
    }
}

/// Gauges of one function, for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FunctionLoad {
    pub inflight: usize,
    pub initializing: usize,
    pub idle: usize,
    pub busy: usize,
}

/// Provisioned concurrency of one pool: (requested, allocated).
pub type ProvisionedStatus = (usize, usize);

/// Shuts environments down outside the lock: gracefully unless they failed.
fn shut_down(envs: Vec<Arc<Environment>>, grace: Duration) {
    for env in envs {
        env.shutdown(grace);
    }
}

impl Scheduler {
    pub fn new(launcher: Arc<Launcher>, limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            launcher,
            state: Mutex::new(State::default()),
            limits,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sets (or clears) a function's reserved concurrency.
    pub fn set_reserved(&self, function: &str, reserved: Option<u32>) {
        let mut state = self.lock();
        match reserved {
            Some(r) => {
                state.reserved.insert(function.to_string(), r);
            }
            None => {
                state.reserved.remove(function);
            }
        }
        state.reserved_sum = state.reserved.values().map(|r| *r as usize).sum();
    }

    /// Admits an invocation of `record` and gives it an environment: a warm one if any
    /// is idle (provisioned first), else a new one.
    pub async fn acquire(self: &Arc<Self>, record: &FunctionRecord) -> Result<Lease, AcquireError> {
        let key = PoolKey::of(record);
        let name = &record.spec.name;
        let memory = u64::from(record.spec.memory_mb);
        let mut discard = Vec::new();
        let mut evicted = Vec::new();
        let admitted = {
            let mut state = self.lock();
            let reserved = state.reserved.get(name).copied();
            let throttle = match reserved {
                Some(r) if state.inflight.get(name).copied().unwrap_or(0) >= r as usize => {
                    Some(Throttle::ReservedConcurrency)
                }
                Some(_) => None,
                None if state.unreserved_inflight
                    >= self.limits.concurrency.saturating_sub(state.reserved_sum) =>
                {
                    Some(Throttle::AccountConcurrency)
                }
                None => None,
            };
            match throttle {
                Some(t) => Err(t),
                None => {
                    let mut freed = 0u64;
                    let mut provisioned_lost = 0usize;
                    let warm = {
                        let pool = state.pools.entry(key.clone()).or_default();
                        if pool.revision_id != record.revision_id {
                            discard.append(&mut pool.idle);
                            provisioned_lost += pool.provisioned_idle.len();
                            discard.append(&mut pool.provisioned_idle);
                            pool.revision_id = record.revision_id.clone();
                        }
                        let mut warm = None;
                        while let Some(env) =
                            pool.provisioned_idle.pop().or_else(|| pool.idle.pop())
                        {
                            if env.is_alive() {
                                warm = Some(env);
                                break;
                            }
                            if env.provisioned {
                                provisioned_lost += 1;
                            }
                            discard.push(env);
                        }
                        pool.provisioned.live =
                            pool.provisioned.live.saturating_sub(provisioned_lost);
                        warm
                    };
                    for env in &discard {
                        freed += u64::from(env.memory_mb);
                    }
                    state.memory_used_mb = state.memory_used_mb.saturating_sub(freed);
                    let admitted = match warm {
                        Some(env) => {
                            if let Some(pool) = state.pools.get_mut(&key) {
                                pool.busy += 1;
                            }
                            Ok(Some(env))
                        }
                        None => {
                            if state.reserve_memory(
                                memory,
                                self.limits.memory_capacity_mb,
                                &mut evicted,
                            ) {
                                if let Some(pool) = state.pools.get_mut(&key) {
                                    pool.starting += 1;
                                }
                                Ok(None)
                            } else {
                                Err(Throttle::MemoryCapacity)
                            }
                        }
                    };
                    if admitted.is_ok() {
                        *state.inflight.entry(name.clone()).or_default() += 1;
                        state.account_inflight += 1;
                        if reserved.is_none() {
                            state.unreserved_inflight += 1;
                        }
                    }
                    admitted.map(|warm| (warm, reserved.is_none()))
                }
            }
        };
        if !evicted.is_empty() {
            self.metrics
                .add(names::EVICTIONS, &[], evicted.len() as u64);
        }
        shut_down(discard, self.limits.shutdown_grace);
        shut_down(evicted, self.limits.shutdown_grace);
        let (warm, unreserved) = match admitted {
            Ok(admitted) => admitted,
            Err(throttle) => {
                self.metrics.inc(
                    names::THROTTLES,
                    &[("function", name), ("reason", throttle.reason())],
                );
                return Err(AcquireError::Throttled(throttle));
            }
        };
        let lease = |env, cold| Lease {
            env: Some(env),
            key: key.clone(),
            scheduler: self.clone(),
            cold,
            initializing: cold,
            unreserved,
        };
        if let Some(env) = warm {
            return Ok(lease(env, false));
        }
        self.metrics.inc(names::COLD_STARTS, &[("function", name)]);
        match self.launcher.start(record, false).await {
            Ok(env) => Ok(lease(env, true)),
            Err(e) => {
                let mut state = self.lock();
                if let Some(pool) = state.pools.get_mut(&key) {
                    pool.starting = pool.starting.saturating_sub(1);
                }
                state.memory_used_mb = state.memory_used_mb.saturating_sub(memory);
                Self::uncount(&mut state, name, unreserved);
                Err(e.into())
            }
        }
    }

    fn uncount(state: &mut State, name: &str, unreserved: bool) {
        if let Some(n) = state.inflight.get_mut(name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.inflight.remove(name);
            }
        }
        state.account_inflight = state.account_inflight.saturating_sub(1);
        if unreserved {
            state.unreserved_inflight = state.unreserved_inflight.saturating_sub(1);
        }
    }

    fn give_back(&self, lease: &Lease, env: Arc<Environment>, healthy: bool) {
        let discard = {
            let mut state = self.lock();
            Self::uncount(&mut state, &lease.key.function, lease.unreserved);
            let keep = match state.pools.get_mut(&lease.key) {
                Some(pool) => {
                    if lease.initializing {
                        pool.starting = pool.starting.saturating_sub(1);
                    } else {
                        pool.busy = pool.busy.saturating_sub(1);
                    }
                    if healthy && env.is_alive() && pool.revision_id == env.revision_id {
                        env.touch();
                        if env.provisioned {
                            pool.provisioned_idle.push(env.clone());
                        } else {
                            pool.idle.push(env.clone());
                        }
                        true
                    } else {
                        if env.provisioned {
                            pool.provisioned.live = pool.provisioned.live.saturating_sub(1);
                        }
                        false
                    }
                }
                None => false,
            };
            if !keep {
                state.memory_used_mb = state
                    .memory_used_mb
                    .saturating_sub(u64::from(env.memory_mb));
            }
            (!keep).then_some(env)
        };
        if let Some(env) = discard {
            if healthy {
                env.shutdown(self.limits.shutdown_grace);
            } else {
                env.destroy();
            }
        }
    }

    /// Shuts down the idle environments of a function (every version when `version` is
    /// `None`); busy ones are shut down when released. Called on update and delete.
    pub fn retire(&self, function: &str, version: Option<&str>) {
        let mut discard = Vec::new();
        {
            let mut state = self.lock();
            let mut freed = 0u64;
            for (key, pool) in state.pools.iter_mut() {
                if key.function != function || version.is_some_and(|v| v != key.version) {
                    continue;
                }
                pool.revision_id.clear();
                pool.provisioned.live = pool
                    .provisioned
                    .live
                    .saturating_sub(pool.provisioned_idle.len());
                discard.append(&mut pool.idle);
                discard.append(&mut pool.provisioned_idle);
                if version.is_none() {
                    pool.provisioned.target = 0;
                    pool.provisioned.record = None;
                }
            }
            for env in &discard {
                freed += u64::from(env.memory_mb);
            }
            state.memory_used_mb = state.memory_used_mb.saturating_sub(freed);
            if version.is_none() {
                state.reserved.remove(function);
                state.reserved_sum = state.reserved.values().map(|r| *r as usize).sum();
            }
        }
        shut_down(discard, self.limits.shutdown_grace);
    }

    /// Sets the provisioned concurrency of a function's versions: each listed version
    /// gets its target, every other version of the function none.
    pub fn sync_provisioned(
        self: &Arc<Self>,
        function: &str,
        targets: Vec<(Arc<FunctionRecord>, usize)>,
    ) {
        {
            let mut state = self.lock();
            for (key, pool) in state.pools.iter_mut() {
                if key.function == function {
                    pool.provisioned.target = 0;
                    pool.provisioned.record = None;
                }
            }
            for (record, target) in targets {
                let pool = state.pools.entry(PoolKey::of(&record)).or_default();
                if pool.revision_id.is_empty() {
                    pool.revision_id = record.revision_id.clone();
                }
                pool.provisioned.target = target;
                pool.provisioned.record = (target > 0).then_some(record);
            }
        }
        self.maintain_provisioned();
    }

    /// (requested, allocated) provisioned environments of a version.
    pub fn provisioned_status(&self, key: &PoolKey) -> ProvisionedStatus {
        let state = self.lock();
        state
            .pools
            .get(key)
            .map(|p| (p.provisioned.target, p.provisioned.live))
            .unwrap_or_default()
    }

    /// Starts provisioned environments up to each target; shuts down the surplus.
    fn maintain_provisioned(self: &Arc<Self>) {
        let mut to_start = Vec::new();
        let mut surplus = Vec::new();
        let mut evicted = Vec::new();
        {
            let mut state = self.lock();
            // Surplus first, so that its memory is free for every pool's missing ones.
            for pool in state.pools.values_mut() {
                let p = &mut pool.provisioned;
                while p.live > p.target {
                    match pool.provisioned_idle.pop() {
                        Some(env) => {
                            p.live -= 1;
                            surplus.push(env);
                        }
                        None => break,
                    }
                }
            }
            let freed: u64 = surplus.iter().map(|e| u64::from(e.memory_mb)).sum();
            state.memory_used_mb = state.memory_used_mb.saturating_sub(freed);
            let keys: Vec<PoolKey> = state.pools.keys().cloned().collect();
            for key in keys {
                let (missing, record, memory) = {
                    let Some(pool) = state.pools.get_mut(&key) else {
                        continue;
                    };
                    let p = &mut pool.provisioned;
                    let Some(record) = p.record.clone() else {
                        continue;
                    };
                    let missing = p.target.saturating_sub(p.live + p.starting);
                    (missing, record.clone(), u64::from(record.spec.memory_mb))
                };
                for _ in 0..missing {
                    let reserved =
                        state.reserve_memory(memory, self.limits.memory_capacity_mb, &mut evicted);
                    let Some(pool) = state.pools.get_mut(&key) else {
                        break;
                    };
                    if !reserved {
                        if !pool.provisioned.short_of_memory {
                            tracing::warn!(function = %key.function, version = %key.version,
                                "no memory capacity left for a provisioned environment (retried \
                                 each tick; said once until the target is met)");
                        }
                        pool.provisioned.short_of_memory = true;
                        break;
                    }
                    pool.provisioned.starting += 1;
                    to_start.push((key.clone(), record.clone()));
                }
                if let Some(pool) = state.pools.get_mut(&key)
                    && missing > 0
                    && pool.provisioned.live + pool.provisioned.starting >= pool.provisioned.target
                {
                    pool.provisioned.short_of_memory = false;
                }
            }
        }
        if !evicted.is_empty() {
            self.metrics
                .add(names::EVICTIONS, &[], evicted.len() as u64);
        }
        shut_down(evicted, self.limits.shutdown_grace);
        shut_down(surplus, self.limits.shutdown_grace);
        for (key, record) in to_start {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.start_provisioned(key, record).await });
        }
    }

    async fn start_provisioned(self: Arc<Self>, key: PoolKey, record: Arc<FunctionRecord>) {
        let memory = u64::from(record.spec.memory_mb);
        let env = match self.launcher.start(&record, true).await {
            Ok(env) => match env.wait_ready(self.limits.init_timeout).await {
                Ok(_) => Some(env),
                Err(failure) => {
                    tracing::warn!(function = %key.function, version = %key.version, ?failure,
                        "a provisioned environment failed to initialise");
                    env.destroy();
                    None
                }
            },
            Err(e) => {
                tracing::warn!(function = %key.function, error = %e, "a provisioned environment failed to start");
                None
            }
        };
        let mut state = self.lock();
        let mut kept = false;
        if let Some(pool) = state.pools.get_mut(&key) {
            pool.provisioned.starting = pool.provisioned.starting.saturating_sub(1);
            let current = pool
                .provisioned
                .record
                .as_ref()
                .is_some_and(|r| r.revision_id == record.revision_id);
            if let Some(env) = &env
                && current
                && pool.provisioned.live < pool.provisioned.target
            {
                env.touch();
                pool.provisioned.live += 1;
                pool.provisioned_idle.push(env.clone());
                kept = true;
            }
        }
        if !kept {
            state.memory_used_mb = state.memory_used_mb.saturating_sub(memory);
        }
        drop(state);
        if let (false, Some(env)) = (kept, env) {
            env.shutdown(self.limits.shutdown_grace);
        }
    }

    /// Shuts down environments idle longer than the keep-alive, and those whose process
    /// died; drops empty pools. Provisioned environments are never reaped.
    pub fn reap(&self) -> usize {
        let mut expired = Vec::new();
        {
            let mut state = self.lock();
            let mut freed = 0u64;
            for pool in state.pools.values_mut() {
                let (keep, gone): (Vec<_>, Vec<_>) = pool
                    .idle
                    .drain(..)
                    .partition(|env| env.is_alive() && env.idle_for() < self.limits.keep_alive);
                pool.idle = keep;
                let (alive, dead): (Vec<_>, Vec<_>) = pool
                    .provisioned_idle
                    .drain(..)
                    .partition(|env| env.is_alive());
                pool.provisioned_idle = alive;
                pool.provisioned.live = pool.provisioned.live.saturating_sub(dead.len());
                expired.extend(gone);
                expired.extend(dead);
            }
            for env in &expired {
                freed += u64::from(env.memory_mb);
            }
            state.memory_used_mb = state.memory_used_mb.saturating_sub(freed);
            state.pools.retain(|_, pool| !pool.is_empty());
        }
        let count = expired.len();
        if count > 0 {
            self.metrics.add(names::REAPED, &[], count as u64);
        }
        shut_down(expired, self.limits.shutdown_grace);
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

    /// Gauges for `/metrics`: per-function load, account concurrency and memory in use.
    pub fn gauges(&self) -> Vec<metrics::Gauge> {
        let state = self.lock();
        let mut per_function: HashMap<String, FunctionLoad> = HashMap::new();
        for (key, pool) in &state.pools {
            let load = per_function.entry(key.function.clone()).or_default();
            load.initializing += pool.starting + pool.provisioned.starting;
            load.idle += pool.idle.len() + pool.provisioned_idle.len();
            load.busy += pool.busy;
        }
        for (name, inflight) in &state.inflight {
            per_function.entry(name.clone()).or_default().inflight = *inflight;
        }
        let mut gauges = Vec::new();
        let mut names_sorted: Vec<_> = per_function.into_iter().collect();
        names_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (function, load) in names_sorted {
            gauges.push(metrics::Gauge {
                name: names::CONCURRENT,
                labels: vec![("function", function.clone())],
                value: load.inflight as u64,
            });
            for (state_name, value) in [
                ("initializing", load.initializing),
                ("idle", load.idle),
                ("busy", load.busy),
            ] {
                gauges.push(metrics::Gauge {
                    name: names::ENVIRONMENTS,
                    labels: vec![("function", function.clone()), ("state", state_name.into())],
                    value: value as u64,
                });
            }
        }
        gauges.push(metrics::Gauge {
            name: names::ACCOUNT_CONCURRENT,
            labels: Vec::new(),
            value: state.account_inflight as u64,
        });
        gauges.push(metrics::Gauge {
            name: names::MEMORY_USED,
            labels: Vec::new(),
            value: state.memory_used_mb,
        });
        gauges
    }

    /// Shuts down every idle environment and waits until they are gone (server
    /// shutdown): SIGTERM, then SIGKILL after the grace period.
    pub async fn shutdown(&self) {
        let all: Vec<_> = {
            let mut state = self.lock();
            state
                .pools
                .values_mut()
                .flat_map(|p| {
                    p.idle
                        .drain(..)
                        .chain(p.provisioned_idle.drain(..))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for env in &all {
            env.terminate();
        }
        let deadline = tokio::time::Instant::now() + self.limits.shutdown_grace;
        for env in &all {
            let _ = tokio::time::timeout_at(deadline, env.exited()).await;
        }
        for env in all {
            env.destroy_now().await;
        }
    }
}
