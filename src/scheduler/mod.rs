//! The scheduler: whether an invocation may run, and in which environment.
//!
//! Per function version it keeps a [`pool`]: a stack of idle on-demand environments (the
//! most recently used on top, so the warmest one is reused), the idle provisioned ones
//! (used first), and the census of those starting and busy; every environment moves
//! through the [`lifecycle`] `Starting → Idle ⇄ Busy → Gone`. [`Scheduler::acquire`] first
//! admits the invocation ([`admission`]: the function's reserved concurrency, else the
//! unreserved share of the account limit, then the memory capacity, counting what
//! evicting idle environments, least recently used first, would free), then takes an idle
//! environment or starts a new one outside the lock, so starts run in parallel.
//! [`Lease::release`] returns a healthy environment to its stack or shuts it down.
//! Environments of an older revision are never reused. The [`maintenance`] tick reaps
//! environments idle past the keep-alive (scale to zero) and keeps provisioned pools at
//! their target size. Environments are started and stopped through the [`Launch`] seam.

pub mod admission;
pub mod host;
pub mod launch;
pub mod lifecycle;
mod maintenance;
pub mod pool;
mod tally;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::environment::sandbox::SandboxError;
use crate::environment::{Launcher, StartError};
use crate::function::FunctionRecord;
use crate::metrics::{self, Metrics, names};
use admission::{Admit, Ask, Caps, Load, Reservations, Share};
use lifecycle::{Kind, Phase};
use pool::{Member, Pools, memory_of};

pub use admission::Throttle;
pub use launch::Launch;
pub use pool::PoolKey;

/// The scheduler's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Account-wide concurrent executions.
    pub concurrency: usize,
    /// Sum of the memory sizes of live environments may not exceed this.
    pub memory_capacity_mb: u64,
    /// Memory the host keeps available (MB; 0: no floor): below it cold starts evict
    /// idle environments first, or are throttled.
    pub memory_floor_mb: u64,
    pub keep_alive: Duration,
    /// Between SIGTERM and SIGKILL when an idle environment is shut down.
    pub shutdown_grace: Duration,
    /// Longest init phase of a provisioned environment.
    pub init_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("throttled: {}", .0.reason())]
    Throttled(Throttle),
    #[error(transparent)]
    Start(#[from] StartError),
}

struct State<E> {
    pools: Pools<E>,
    load: Load,
    reservations: Reservations,
}

impl<E> State<E> {
    /// Evicts idle on-demand environments until `mb` is freed and claims `claim_mb`.
    fn make_room(&mut self, evict_mb: u64, claim_mb: u64) -> Vec<Member<E>> {
        let evicted = self.pools.evict(evict_mb);
        self.load.free_memory(memory_of(&evicted));
        self.load.claim_memory(claim_mb);
        evicted
    }
}

pub struct Scheduler<L: Launch = Launcher> {
    launcher: Arc<L>,
    state: Mutex<State<L::Env>>,
    limits: Limits,
    metrics: Arc<Metrics>,
    host: host::HostMemory,
    /// Told (one waiter at a time) whenever an invocation ends or an environment's memory
    /// is given back: what [`Scheduler::acquire_waiting`] waits on.
    capacity_freed: tokio::sync::Notify,
}

/// How often a waiting admission looks again without being told of freed capacity (the
/// one told may have been of a function that could not use it).
const WAIT_RECHECK: Duration = Duration::from_millis(20);

/// How a cold start got its environment.
enum Started<E> {
    New(Arc<E>),
    /// An idle one of its own version, found while it made disk room.
    Warm(Member<E>),
}

/// How many idle environments one cold start may evict for the disk room of its `/tmp`
/// (each frees at least one image; a start needing more than this many is refused).
const DISK_EVICTIONS: usize = 8;

/// An environment held for one invocation. Dropping a lease without releasing it
/// destroys the environment (the invocation's state is unknown).
pub struct Lease<L: Launch = Launcher> {
    member: Option<Member<L::Env>>,
    key: PoolKey,
    scheduler: Arc<Scheduler<L>>,
    /// A new environment, still in its init phase until [`Lease::ready`].
    pub cold: bool,
    /// `Starting` until ready, then `Busy`.
    phase: Phase,
    share: Share,
}

impl<L: Launch> Lease<L> {
    pub fn env(&self) -> &Arc<L::Env> {
        &self
            .member
            .as_ref()
            .expect("a lease holds its environment until released")
            .env
    }

    /// The environment finished its init phase: it is now busy with the invocation.
    pub fn ready(&mut self) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Busy;
            let mut state = self.scheduler.lock();
            if let Some(pool) = state.pools.get_mut(&self.key) {
                pool.shift(Kind::OnDemand, Phase::Starting, Phase::Busy);
            }
        }
    }

    /// Returns the environment: reused if `healthy`, destroyed otherwise.
    pub fn release(mut self, healthy: bool) {
        if let Some(member) = self.member.take() {
            self.scheduler.give_back(&self, member, healthy);
        }
    }
}

impl<L: Launch> Drop for Lease<L> {
    fn drop(&mut self) {
        if let Some(member) = self.member.take() {
            let scheduler = self.scheduler.clone();
            scheduler.give_back(self, member, false);
        }
    }
}

/// Gauges of one function, for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FunctionLoad {
    pub inflight: u64,
    pub initializing: u64,
    pub idle: u64,
    pub busy: u64,
}

/// Provisioned concurrency of one pool: (requested, allocated).
pub type ProvisionedStatus = (usize, usize);

impl<L: Launch> Scheduler<L> {
    pub fn new(launcher: Arc<L>, limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            launcher,
            state: Mutex::new(State {
                pools: Pools::default(),
                load: Load::default(),
                reservations: Reservations::default(),
            }),
            host: host::HostMemory::new(limits.memory_floor_mb),
            capacity_freed: tokio::sync::Notify::new(),
            limits,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<L::Env>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn caps(&self) -> Caps {
        Caps {
            concurrency: self.limits.concurrency as u64,
            memory_capacity_mb: self.limits.memory_capacity_mb,
        }
    }

    /// Shuts healthy environments down outside the lock.
    fn shut_down(&self, members: Vec<Member<L::Env>>) {
        for member in members {
            self.launcher
                .shut_down(&member.env, self.limits.shutdown_grace);
        }
    }

    fn count_evictions(&self, evicted: &[Member<L::Env>]) {
        if !evicted.is_empty() {
            self.metrics
                .add(names::EVICTIONS, &[], evicted.len() as u64);
        }
    }

    /// Sets (or clears) a function's reserved concurrency.
    pub fn set_reserved(&self, function: &str, reserved: Option<u32>) {
        self.lock().reservations.set(function, reserved);
    }

    /// Admits an invocation of `record` and gives it an environment: a warm one if any
    /// is idle (provisioned first), else a new one.
    pub async fn acquire(
        self: &Arc<Self>,
        record: &FunctionRecord,
    ) -> Result<Lease<L>, AcquireError> {
        self.try_acquire(record, true).await
    }

    /// [`Self::acquire`], but a throttle waits up to `wait` for capacity to be freed (an
    /// invocation ending, an environment going), trying again each time: what consumers
    /// of a backlog (the async queue) use, so that they run as many events as the
    /// function can get environments for. A reservation of zero never waits.
    pub async fn acquire_waiting(
        self: &Arc<Self>,
        record: &FunctionRecord,
        wait: Duration,
    ) -> Result<Lease<L>, AcquireError> {
        if wait.is_zero() {
            return self.acquire(record).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.capacity_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let last = tokio::time::Instant::now() >= deadline;
            match self.try_acquire(record, last).await {
                Err(AcquireError::Throttled(_)) if !last && self.may_wait(record) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::time::timeout(left.min(WAIT_RECHECK), freed).await;
                }
                other => return other,
            }
        }
    }

    /// Whether an invocation of `record` can ever be admitted (not a reservation of 0).
    fn may_wait(&self, record: &FunctionRecord) -> bool {
        self.lock().reservations.share_of(&record.spec.key()) != Share::Reserved(0)
    }

    async fn try_acquire(
        self: &Arc<Self>,
        record: &FunctionRecord,
        count_throttle: bool,
    ) -> Result<Lease<L>, AcquireError> {
        let key = PoolKey::of(record);
        let name = key.function.as_str();
        let memory = u64::from(record.spec.memory_mb);
        let (admitted, discard, evicted) = {
            let mut state = self.lock();
            let state = &mut *state;
            // Idle environments that can never serve this invocation go first (another
            // revision, or their process died), so that their memory counts as free.
            let (discard, warm) = match state.pools.get_mut(&key) {
                Some(pool) => {
                    let discard = pool.refresh(&record.revision_id, |e| self.launcher.is_alive(e));
                    (discard, pool.has_warm())
                }
                None => (Vec::new(), false),
            };
            state.load.free_memory(memory_of(&discard));
            let share = state.reservations.share_of(name);
            let ask = Ask {
                share,
                function_inflight: state.load.inflight(name),
                unreserved_inflight: state.load.unreserved(),
                reserved_sum: state.reservations.sum(),
                warm,
                memory_mb: memory,
                memory_used_mb: state.load.memory_mb(),
                evictable_mb: if warm { 0 } else { state.pools.evictable_mb() },
                host_low: !warm && self.host.is_low(),
            };
            let mut evicted = Vec::new();
            let admitted = match admission::admit(&ask, self.caps()) {
                Ok(Admit::Warm) => {
                    let warm = state.pools.get_mut(&key).and_then(|p| p.take_warm());
                    Ok(Some(
                        warm.expect("an idle environment was seen under this lock"),
                    ))
                }
                Ok(Admit::Cold { evict_mb }) => {
                    evicted = state.make_room(evict_mb, memory);
                    let pool = state.pools.entry(&key);
                    pool.adopt(&record.revision_id);
                    pool.begin_start(Kind::OnDemand);
                    Ok(None)
                }
                Err(Throttle::MemoryCapacity) => {
                    // Past the concurrency checks the version has its pool, as it would
                    // with room for a cold start (it shows in the gauges until reaped).
                    state.pools.entry(&key).adopt(&record.revision_id);
                    Err(Throttle::MemoryCapacity)
                }
                Err(throttle) => Err(throttle),
            };
            if admitted.is_ok() {
                state.load.begin(name, share);
            }
            (admitted.map(|warm| (warm, share)), discard, evicted)
        };
        self.count_evictions(&evicted);
        self.shut_down(discard);
        self.shut_down(evicted);
        let (warm, share) = match admitted {
            Ok(admitted) => admitted,
            Err(throttle) => {
                if count_throttle {
                    self.metrics.inc(
                        names::THROTTLES,
                        &[("function", name), ("reason", throttle.reason())],
                    );
                }
                return Err(AcquireError::Throttled(throttle));
            }
        };
        let lease = |member, cold| Lease {
            member: Some(member),
            key: key.clone(),
            scheduler: self.clone(),
            cold,
            phase: if cold { Phase::Starting } else { Phase::Busy },
            share,
        };
        if let Some(member) = warm {
            return Ok(lease(member, false));
        }
        self.metrics.inc(names::COLD_STARTS, &[("function", name)]);
        match self.start_making_disk_room(record, &key, memory).await {
            Ok(Started::New(env)) => Ok(lease(Member::new(env, record, Kind::OnDemand), true)),
            Ok(Started::Warm(member)) => Ok(lease(member, false)),
            Err(e) => {
                let mut state = self.lock();
                if let Some(pool) = state.pools.get_mut(&key) {
                    pool.shift(Kind::OnDemand, Phase::Starting, Phase::Gone);
                }
                state.load.free_memory(memory);
                state.load.end(name, share);
                drop(state);
                self.capacity_freed.notify_one();
                Err(e.into())
            }
        }
    }

    /// Starts an environment for `record`. The `/tmp` images that idle environments hold
    /// count against the data disk as their memory counts against the capacity: when the
    /// disk cannot promise another `/tmp`, the least recently used idle environment (of any
    /// function) goes, waited for until its image is gone, and the start is tried again, up
    /// to [`DISK_EVICTIONS`] times. Only when no idle environment is left does the
    /// invocation get the disk's error.
    ///
    /// While it waits, an environment of its own version may have come back idle (the
    /// burst it is part of is ending): it takes that one instead, warm, and gives back
    /// what it claimed for the cold start.
    async fn start_making_disk_room(
        &self,
        record: &FunctionRecord,
        key: &PoolKey,
        memory: u64,
    ) -> Result<Started<L::Env>, StartError> {
        let mut evictions = 0;
        loop {
            match self.launcher.start(record, false).await {
                Ok(env) => return Ok(Started::New(env)),
                Err(StartError::Sandbox(SandboxError::DiskFull(message)))
                    if evictions < DISK_EVICTIONS =>
                {
                    let (warm, stale, evicted) = {
                        let mut state = self.lock();
                        let state = &mut *state;
                        let (warm, stale) = match state.pools.get_mut(key) {
                            Some(pool) => {
                                let stale = pool
                                    .refresh(&record.revision_id, |e| self.launcher.is_alive(e));
                                let warm = pool.take_warm();
                                if warm.is_some() {
                                    pool.shift(Kind::OnDemand, Phase::Starting, Phase::Gone);
                                    state.load.free_memory(memory);
                                }
                                (warm, stale)
                            }
                            None => (None, Vec::new()),
                        };
                        state.load.free_memory(memory_of(&stale));
                        let evicted = if warm.is_some() {
                            Vec::new()
                        } else {
                            state.pools.evict(1)
                        };
                        state.load.free_memory(memory_of(&evicted));
                        (warm, stale, evicted)
                    };
                    self.shut_down(stale);
                    if let Some(member) = warm {
                        return Ok(Started::Warm(member));
                    }
                    if evicted.is_empty() {
                        return Err(StartError::Sandbox(SandboxError::DiskFull(message)));
                    }
                    evictions += 1;
                    self.count_evictions(&evicted);
                    tracing::debug!(
                        function = %record.spec.name,
                        "an idle environment goes to make disk room for a /tmp"
                    );
                    let envs = evicted.into_iter().map(|m| m.env).collect();
                    self.launcher
                        .stop_all(envs, self.limits.shutdown_grace)
                        .await;
                    self.capacity_freed.notify_one();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn give_back(&self, lease: &Lease<L>, member: Member<L::Env>, healthy: bool) {
        let gone = {
            let mut state = self.lock();
            state.load.end(&lease.key.function, lease.share);
            let reuse = healthy && self.launcher.is_alive(&member.env);
            let gone = match state.pools.get_mut(&lease.key) {
                Some(pool) => pool.settle(member, lease.phase, reuse, Instant::now()),
                None => Some(member),
            };
            if let Some(gone) = &gone {
                state.load.free_memory(gone.memory_mb);
            }
            gone
        };
        self.capacity_freed.notify_one();
        if let Some(gone) = gone {
            if healthy {
                self.launcher
                    .shut_down(&gone.env, self.limits.shutdown_grace);
            } else {
                self.launcher.destroy(&gone.env);
            }
        }
    }

    /// Shuts down the idle environments of a function (every version when `version` is
    /// `None`); busy ones are shut down when released. Called on update and delete.
    pub fn retire(&self, function: &str, version: Option<&str>) {
        let mut discard = Vec::new();
        {
            let mut state = self.lock();
            for pool in state.pools.of(function, version) {
                discard.extend(pool.retire());
                if version.is_none() {
                    pool.provisioned.target = 0;
                    pool.provisioned.record = None;
                }
            }
            state.load.free_memory(memory_of(&discard));
            if version.is_none() {
                state.reservations.set(function, None);
            }
        }
        self.shut_down(discard);
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
            for pool in state.pools.of(function, None) {
                pool.provisioned.target = 0;
                pool.provisioned.record = None;
            }
            for (record, target) in targets {
                let pool = state.pools.entry(&PoolKey::of(&record));
                pool.adopt(&record.revision_id);
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
            .map(|p| (p.provisioned.target, p.live_provisioned()))
            .unwrap_or_default()
    }

    /// Load per function: in flight, and environments initialising, idle and busy.
    fn loads(&self) -> (Vec<(String, FunctionLoad)>, u64, u64) {
        let state = self.lock();
        let mut per_function: HashMap<String, FunctionLoad> = HashMap::new();
        for (key, pool) in state.pools.iter() {
            let load = per_function.entry(key.function.clone()).or_default();
            let (starting, idle, busy) = pool.census();
            load.initializing += starting;
            load.idle += idle;
            load.busy += busy;
        }
        for (name, inflight) in state.load.per_function() {
            per_function.entry(name.to_string()).or_default().inflight = inflight;
        }
        let mut sorted: Vec<_> = per_function.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        (sorted, state.load.account(), state.load.memory_mb())
    }

    /// Gauges for `/metrics`: per-function load, account concurrency and memory in use.
    pub fn gauges(&self) -> Vec<metrics::Gauge> {
        let (per_function, account, memory) = self.loads();
        let mut gauges = Vec::new();
        for (function, load) in per_function {
            gauges.push(metrics::Gauge {
                name: names::CONCURRENT,
                labels: vec![("function", function.clone())],
                value: load.inflight,
            });
            for (state_name, value) in [
                ("initializing", load.initializing),
                ("idle", load.idle),
                ("busy", load.busy),
            ] {
                gauges.push(metrics::Gauge {
                    name: names::ENVIRONMENTS,
                    labels: vec![("function", function.clone()), ("state", state_name.into())],
                    value,
                });
            }
        }
        gauges.push(metrics::Gauge {
            name: names::ACCOUNT_CONCURRENT,
            labels: Vec::new(),
            value: account,
        });
        gauges.push(metrics::Gauge {
            name: names::MEMORY_USED,
            labels: Vec::new(),
            value: memory,
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
                .iter_mut()
                .flat_map(|(_, pool)| pool.drain_idle().map(|m| m.env).collect::<Vec<_>>())
                .collect()
        };
        self.launcher
            .stop_all(all, self.limits.shutdown_grace)
            .await;
    }
}

#[cfg(test)]
mod tests;
