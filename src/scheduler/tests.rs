//! The scheduler driven through a launcher that starts no process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::environment::InitFailure;
use crate::function::{FunctionRecord, LATEST, sample_record};

/// How a fake environment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ShutDown,
    Destroyed,
}

struct FakeEnv {
    id: usize,
    function: String,
    provisioned: bool,
    alive: AtomicBool,
    end: Mutex<Option<End>>,
}

impl FakeEnv {
    fn end(&self) -> Option<End> {
        *self.end.lock().unwrap()
    }

    fn stop(&self, how: End) {
        self.alive.store(false, Ordering::SeqCst);
        self.end.lock().unwrap().get_or_insert(how);
    }

    /// Its process died on its own.
    fn die(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct FakeLauncher {
    next_id: AtomicUsize,
    started: Mutex<Vec<Arc<FakeEnv>>>,
    fail_start: AtomicBool,
    /// Running environments whose `/tmp` the disk can hold (none: no limit).
    disk_room: Mutex<Option<usize>>,
}

impl FakeLauncher {
    /// Environments started and not ended, by id.
    fn running(&self) -> Vec<usize> {
        let started = self.started.lock().unwrap();
        started
            .iter()
            .filter(|e| e.end().is_none())
            .map(|e| e.id)
            .collect()
    }

    fn env(&self, id: usize) -> Arc<FakeEnv> {
        self.started.lock().unwrap()[id].clone()
    }
}

impl Launch for FakeLauncher {
    type Env = FakeEnv;

    async fn start(
        &self,
        function: &FunctionRecord,
        provisioned: bool,
    ) -> Result<Arc<FakeEnv>, StartError> {
        if self.fail_start.load(Ordering::SeqCst) {
            return Err(StartError::Runtime("no such runtime".into()));
        }
        if let Some(room) = *self.disk_room.lock().unwrap() {
            if self.running().len() >= room {
                return Err(StartError::Sandbox(SandboxError::DiskFull(
                    "no room for another /tmp".into(),
                )));
            }
        }
        let env = Arc::new(FakeEnv {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            function: function.spec.name.clone(),
            provisioned,
            alive: AtomicBool::new(true),
            end: Mutex::new(None),
        });
        self.started.lock().unwrap().push(env.clone());
        Ok(env)
    }

    async fn wait_ready(&self, env: &FakeEnv, limit: Duration) -> Result<Duration, InitFailure> {
        if env.function.starts_with("broken") {
            return Err(InitFailure::TimedOut(limit));
        }
        Ok(Duration::ZERO)
    }

    fn is_alive(&self, env: &FakeEnv) -> bool {
        env.alive.load(Ordering::SeqCst)
    }

    fn shut_down(&self, env: &Arc<FakeEnv>, _grace: Duration) {
        env.stop(End::ShutDown);
    }

    fn destroy(&self, env: &FakeEnv) {
        env.stop(End::Destroyed);
    }

    async fn stop_all(&self, envs: Vec<Arc<FakeEnv>>, _grace: Duration) {
        for env in envs {
            env.stop(End::ShutDown);
        }
    }
}

const KEEP_ALIVE: Duration = Duration::from_secs(60);

fn limits(concurrency: usize, memory_capacity_mb: u64) -> Limits {
    Limits {
        concurrency,
        memory_capacity_mb,
        memory_floor_mb: 0,
        keep_alive: KEEP_ALIVE,
        shutdown_grace: Duration::from_secs(1),
        init_timeout: Duration::from_secs(1),
    }
}

type Fake = Scheduler<FakeLauncher>;

fn scheduler(limits: Limits) -> (Arc<Fake>, Arc<FakeLauncher>) {
    let launcher = Arc::new(FakeLauncher::default());
    let scheduler = Scheduler::new(launcher.clone(), limits, Arc::new(Metrics::default()));
    (scheduler, launcher)
}

/// A 128 MB function `name`, `version`, at `revision`.
fn record(name: &str, version: &str, revision: &str) -> Arc<FunctionRecord> {
    let mut record = sample_record(name, version, "code");
    record.spec.memory_mb = 128;
    record.revision_id = revision.into();
    Arc::new(record)
}

fn latest(name: &str) -> Arc<FunctionRecord> {
    record(name, LATEST, "r1")
}

/// Acquires an environment and marks it ready if it is new.
async fn busy(s: &Arc<Fake>, record: &FunctionRecord) -> Lease<FakeLauncher> {
    let mut lease = s.acquire(record).await.expect("admitted");
    lease.ready();
    lease
}

/// Runs one invocation to its end; the id of the environment it ran in.
async fn invoke(s: &Arc<Fake>, record: &FunctionRecord) -> usize {
    let lease = busy(s, record).await;
    let id = lease.env().id;
    lease.release(true);
    id
}

fn throttle(result: Result<Lease<FakeLauncher>, AcquireError>) -> Throttle {
    match result {
        Err(AcquireError::Throttled(t)) => t,
        Err(e) => panic!("failed: {e}"),
        Ok(_) => panic!("admitted"),
    }
}

/// (starting, idle, busy) environments of a version.
fn census(s: &Fake, record: &FunctionRecord) -> (u64, u64, u64) {
    let state = s.lock();
    state
        .pools
        .get(&PoolKey::of(record))
        .map(|p| p.census())
        .unwrap_or_default()
}

fn memory_used(s: &Fake) -> u64 {
    s.lock().load.memory_mb()
}

fn account_inflight(s: &Fake) -> u64 {
    s.lock().load.account()
}

/// Lets spawned provisioned starts finish.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_released_environment_is_reused() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let f = latest("f");
    let lease = s.acquire(&f).await.unwrap();
    assert!(lease.cold);
    assert_eq!(census(&s, &f), (1, 0, 0));
    lease.release(true);
    assert_eq!(census(&s, &f), (0, 1, 0));
    let lease = s.acquire(&f).await.unwrap();
    assert!(!lease.cold);
    assert_eq!(lease.env().id, 0);
    assert_eq!(census(&s, &f), (0, 0, 1));
    assert_eq!(account_inflight(&s), 1);
    lease.release(true);
    assert_eq!(launcher.running(), vec![0]);
    assert_eq!((account_inflight(&s), memory_used(&s)), (0, 128));
}

#[tokio::test(start_paused = true)]
async fn the_most_recently_used_environment_is_reused() {
    let (s, _) = scheduler(limits(10, 1024));
    let f = latest("f");
    let first = busy(&s, &f).await;
    let second = busy(&s, &f).await;
    let (first_id, second_id) = (first.env().id, second.env().id);
    second.release(true);
    tokio::time::advance(Duration::from_secs(1)).await;
    first.release(true);
    assert_eq!(invoke(&s, &f).await, first_id);
    assert_ne!(first_id, second_id);
}

#[tokio::test(start_paused = true)]
async fn reserved_concurrency_caps_the_function() {
    let (s, _) = scheduler(limits(10, 1024));
    let f = latest("f");
    s.set_reserved("f", Some(1));
    let held = busy(&s, &f).await;
    assert_eq!(throttle(s.acquire(&f).await), Throttle::ReservedConcurrency);
    held.release(true);
    invoke(&s, &f).await;
    s.set_reserved("f", Some(0));
    assert_eq!(throttle(s.acquire(&f).await), Throttle::ReservedConcurrency);
    s.set_reserved("f", None);
    invoke(&s, &f).await;
}

#[tokio::test(start_paused = true)]
async fn unreserved_functions_share_what_reservations_leave() {
    let (s, _) = scheduler(limits(3, 1024));
    s.set_reserved("r", Some(2));
    let (g, h, r) = (latest("g"), latest("h"), latest("r"));
    let held = busy(&s, &g).await;
    assert_eq!(throttle(s.acquire(&h).await), Throttle::AccountConcurrency);
    // The reserved function draws from its own reservation.
    let reserved = busy(&s, &r).await;
    assert_eq!(account_inflight(&s), 2);
    held.release(true);
    invoke(&s, &h).await;
    reserved.release(true);
    assert_eq!(account_inflight(&s), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_evicts_the_least_recently_used_idle_environment() {
    let (s, launcher) = scheduler(limits(10, 384));
    let (a, b, c, d) = (latest("a"), latest("b"), latest("c"), latest("d"));
    let env_a = invoke(&s, &a).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let env_b = invoke(&s, &b).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let env_c = invoke(&s, &c).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // a is used again: b is now the least recently used.
    assert_eq!(invoke(&s, &a).await, env_a);
    assert_eq!(memory_used(&s), 384);

    let env_d = invoke(&s, &d).await;
    assert_eq!(
        launcher.env(env_b).end(),
        Some(End::ShutDown),
        "b is evicted"
    );
    assert_eq!(launcher.running(), vec![env_a, env_c, env_d]);
    assert_eq!(memory_used(&s), 384);
    assert_eq!(census(&s, &b), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_evicts_as_many_as_it_needs() {
    let (s, launcher) = scheduler(limits(10, 256));
    let (a, b) = (latest("a"), latest("b"));
    invoke(&s, &a).await;
    invoke(&s, &b).await;
    let mut big = sample_record("big", LATEST, "code");
    big.spec.memory_mb = 256;
    let big_env = invoke(&s, &big).await;
    assert_eq!(launcher.running(), vec![big_env]);
    assert_eq!(memory_used(&s), 256);
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_evicts_idle_environments_for_the_disk_room_of_its_tmp() {
    let (s, launcher) = scheduler(limits(10, 10_240));
    *launcher.disk_room.lock().unwrap() = Some(2);
    let (a, b, c) = (latest("a"), latest("b"), latest("c"));
    let env_a = invoke(&s, &a).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let held_b = busy(&s, &b).await;
    // c's /tmp fits once a's idle environment is gone (waited for), never b's busy one.
    let held_c = busy(&s, &c).await;
    assert_eq!(launcher.env(env_a).end(), Some(End::ShutDown));
    assert_eq!(census(&s, &a), (0, 0, 0));
    assert_eq!(memory_used(&s), 256);
    // Nothing idle is left to evict: the disk's error reaches the caller.
    match s.acquire(&a).await {
        Err(AcquireError::Start(StartError::Sandbox(SandboxError::DiskFull(_)))) => {}
        Err(e) => panic!("failed otherwise: {e}"),
        Ok(_) => panic!("admitted"),
    }
    assert_eq!(memory_used(&s), 256);
    assert_eq!(account_inflight(&s), 2);
    held_b.release(true);
    held_c.release(true);
}

#[tokio::test(start_paused = true)]
async fn memory_capacity_throttles_when_nothing_idle_can_be_evicted() {
    let (s, launcher) = scheduler(limits(10, 256));
    let (a, b, c) = (latest("a"), latest("b"), latest("c"));
    let held_a = busy(&s, &a).await;
    let held_b = busy(&s, &b).await;
    assert_eq!(throttle(s.acquire(&c).await), Throttle::MemoryCapacity);
    assert_eq!(throttle(s.acquire(&a).await), Throttle::MemoryCapacity);
    assert_eq!(account_inflight(&s), 2);
    // A warm environment needs no memory.
    held_a.release(true);
    let again = busy(&s, &a).await;
    assert_eq!(launcher.running().len(), 2);
    again.release(true);
    held_b.release(true);
    invoke(&s, &c).await;
    assert_eq!(memory_used(&s), 256);
}

#[tokio::test(start_paused = true)]
async fn provisioned_environments_are_used_first_and_never_evicted() {
    let (s, launcher) = scheduler(limits(10, 384));
    let p = record("p", "1", "r1");
    s.sync_provisioned("p", vec![(p.clone(), 1)]);
    settle().await;
    assert_eq!(s.provisioned_status(&PoolKey::of(&p)), (1, 1));
    let provisioned = launcher.env(0);
    assert!(provisioned.provisioned);

    let (a, b) = (latest("a"), latest("b"));
    let env_a = invoke(&s, &a).await;
    let held_b = busy(&s, &b).await;
    let c = latest("c");
    // Only a's idle on-demand environment may go; the provisioned one stays.
    let held_c = busy(&s, &c).await;
    assert_eq!(launcher.env(env_a).end(), Some(End::ShutDown));
    assert_eq!(throttle(s.acquire(&a).await), Throttle::MemoryCapacity);
    assert!(launcher.is_alive(&provisioned));

    let lease = s.acquire(&p).await.unwrap();
    assert!(!lease.cold);
    assert_eq!(lease.env().id, provisioned.id);
    lease.release(true);
    held_b.release(true);
    held_c.release(true);
}

#[tokio::test(start_paused = true)]
async fn provisioned_pools_follow_their_targets() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let v1 = record("p", "1", "r1");
    let v2 = record("p", "2", "r2");
    let (k1, k2) = (PoolKey::of(&v1), PoolKey::of(&v2));
    s.sync_provisioned("p", vec![(v1.clone(), 2), (v2.clone(), 1)]);
    assert_eq!(census(&s, &v1), (2, 0, 0));
    settle().await;
    assert_eq!(s.provisioned_status(&k1), (2, 2));
    assert_eq!(s.provisioned_status(&k2), (1, 1));
    assert_eq!(census(&s, &v1), (0, 2, 0));
    assert_eq!(memory_used(&s), 384);

    // A busy provisioned environment still counts as allocated.
    let held = busy(&s, &v1).await;
    assert!(launcher.env(held.env().id).provisioned);
    assert_eq!(s.provisioned_status(&k1), (2, 2));
    assert_eq!(census(&s, &v1), (0, 1, 1));

    // Lowering the target shuts the idle surplus down; version 2 loses its target.
    s.sync_provisioned("p", vec![(v1.clone(), 1)]);
    settle().await;
    assert_eq!(s.provisioned_status(&k1), (1, 1));
    assert_eq!(s.provisioned_status(&k2), (0, 0));
    assert_eq!(launcher.running().len(), 1);
    held.release(true);
    assert_eq!(census(&s, &v1), (0, 1, 0));
    assert_eq!(memory_used(&s), 128);

    s.sync_provisioned("p", Vec::new());
    assert_eq!(s.provisioned_status(&k1), (0, 0));
    assert!(launcher.running().is_empty());
    assert_eq!(memory_used(&s), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_provisioned_environment_is_replaced() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let p = record("p", "1", "r1");
    let key = PoolKey::of(&p);
    s.sync_provisioned("p", vec![(p.clone(), 1)]);
    settle().await;
    launcher.env(0).die();
    assert_eq!(s.reap(), 1);
    assert_eq!(s.provisioned_status(&key), (1, 0));
    s.maintain_provisioned();
    settle().await;
    assert_eq!(s.provisioned_status(&key), (1, 1));
    assert_eq!(launcher.running(), vec![1]);
    assert_eq!(memory_used(&s), 128);
}

#[tokio::test(start_paused = true)]
async fn a_provisioned_target_waits_for_memory() {
    let (s, launcher) = scheduler(limits(10, 256));
    let p = record("p", "1", "r1");
    let key = PoolKey::of(&p);
    let held = busy(&s, &latest("a")).await;
    s.sync_provisioned("p", vec![(p.clone(), 2)]);
    settle().await;
    assert_eq!(s.provisioned_status(&key), (2, 1));
    held.release(true);
    // The idle on-demand environment is evicted for the missing provisioned one.
    s.maintain_provisioned();
    settle().await;
    assert_eq!(s.provisioned_status(&key), (2, 2));
    assert_eq!(launcher.env(0).end(), Some(End::ShutDown));
}

#[tokio::test(start_paused = true)]
async fn a_provisioned_environment_that_fails_to_initialise_frees_its_memory() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let p = record("broken", "1", "r1");
    s.sync_provisioned("broken", vec![(p.clone(), 1)]);
    settle().await;
    assert_eq!(s.provisioned_status(&PoolKey::of(&p)), (1, 0));
    assert_eq!(launcher.env(0).end(), Some(End::Destroyed));
    assert_eq!(memory_used(&s), 0);
    assert_eq!(census(&s, &p), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn retiring_a_version_shuts_its_environments_down() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let f = latest("f");
    let v1 = record("f", "1", "r0");
    let held = busy(&s, &f).await;
    let idle = invoke(&s, &f).await;
    let other_version = invoke(&s, &v1).await;
    s.retire("f", Some(LATEST));
    assert_eq!(launcher.env(idle).end(), Some(End::ShutDown));
    assert!(launcher.is_alive(&launcher.env(held.env().id)));
    // The busy one goes when released, healthy or not.
    let held_id = held.env().id;
    held.release(true);
    assert_eq!(launcher.env(held_id).end(), Some(End::ShutDown));
    assert_eq!(launcher.running(), vec![other_version]);
    assert_eq!(memory_used(&s), 128);
    // The next invocation starts afresh.
    let lease = s.acquire(&f).await.unwrap();
    assert!(lease.cold);
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_never_reuses_older_environments() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let old = record("f", LATEST, "r1");
    let new = record("f", LATEST, "r2");
    let held_old = busy(&s, &old).await;
    let held_old_id = held_old.env().id;
    let old_env = invoke(&s, &old).await;
    let new_env = invoke(&s, &new).await;
    assert_ne!(new_env, old_env);
    assert_eq!(launcher.env(old_env).end(), Some(End::ShutDown));
    held_old.release(true);
    assert_eq!(launcher.env(held_old_id).end(), Some(End::ShutDown));
    assert_eq!(invoke(&s, &new).await, new_env);
    assert_eq!(memory_used(&s), 128);
}

#[tokio::test(start_paused = true)]
async fn retiring_every_version_clears_provisioned_and_reservation() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let v1 = record("f", "1", "r1");
    s.set_reserved("f", Some(0));
    s.sync_provisioned("f", vec![(v1.clone(), 1)]);
    settle().await;
    s.retire("f", None);
    assert_eq!(s.provisioned_status(&PoolKey::of(&v1)), (0, 0));
    assert!(launcher.running().is_empty());
    s.maintain_provisioned();
    settle().await;
    assert!(launcher.running().is_empty());
    // No reservation of zero any more.
    invoke(&s, &latest("f")).await;
}

#[tokio::test(start_paused = true)]
async fn idle_environments_are_reaped_after_the_keep_alive() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let f = latest("f");
    let p = record("p", "1", "r1");
    s.sync_provisioned("p", vec![(p.clone(), 1)]);
    settle().await;
    let env = invoke(&s, &f).await;
    tokio::time::advance(KEEP_ALIVE - Duration::from_millis(1)).await;
    assert_eq!(s.reap(), 0);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(s.reap(), 1);
    assert_eq!(launcher.env(env).end(), Some(End::ShutDown));
    // Provisioned environments are never reaped; the empty pool is dropped.
    assert_eq!(launcher.running(), vec![0]);
    assert!(s.lock().pools.get(&PoolKey::of(&f)).is_none());
    assert_eq!(memory_used(&s), 128);
}

#[tokio::test(start_paused = true)]
async fn the_maintenance_tick_reaps() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let shutdown = crate::shutdown::Shutdown::new();
    s.spawn_maintenance(shutdown.signal());
    let env = invoke(&s, &latest("f")).await;
    tokio::time::sleep(KEEP_ALIVE / 2).await;
    assert!(launcher.running().contains(&env));
    // A tick comes at least every quarter of the keep-alive.
    tokio::time::sleep(KEEP_ALIVE / 2 + KEEP_ALIVE / 4).await;
    assert!(launcher.running().is_empty());
    assert_eq!(memory_used(&s), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_idle_environment_is_not_handed_out() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let f = latest("f");
    let env = invoke(&s, &f).await;
    launcher.env(env).die();
    let lease = s.acquire(&f).await.unwrap();
    assert!(lease.cold);
    assert_ne!(lease.env().id, env);
    assert_eq!(memory_used(&s), 128);
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_or_dropped_lease_destroys_its_environment() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let f = latest("f");
    let lease = busy(&s, &f).await;
    let id = lease.env().id;
    lease.release(false);
    assert_eq!(launcher.env(id).end(), Some(End::Destroyed));
    let lease = s.acquire(&f).await.unwrap();
    let id = lease.env().id;
    drop(lease);
    assert_eq!(launcher.env(id).end(), Some(End::Destroyed));
    assert_eq!(census(&s, &f), (0, 0, 0));
    assert_eq!((account_inflight(&s), memory_used(&s)), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_gives_everything_back() {
    let (s, launcher) = scheduler(limits(1, 128));
    let f = latest("f");
    launcher.fail_start.store(true, Ordering::SeqCst);
    assert!(matches!(
        s.acquire(&f).await,
        Err(AcquireError::Start(StartError::Runtime(_)))
    ));
    assert_eq!(census(&s, &f), (0, 0, 0));
    assert_eq!((account_inflight(&s), memory_used(&s)), (0, 0));
    launcher.fail_start.store(false, Ordering::SeqCst);
    invoke(&s, &f).await;
}

#[tokio::test(start_paused = true)]
async fn gauges_count_environments_by_phase() {
    let (s, _) = scheduler(limits(10, 1024));
    let f = latest("f");
    let idle = busy(&s, &f).await;
    let starting = s.acquire(&f).await.unwrap();
    idle.release(true);
    let rendered = Metrics::default().render(s.gauges());
    for line in [
        "shoal_concurrent_executions{function=\"f\"} 1",
        "shoal_environments{function=\"f\",state=\"initializing\"} 1",
        "shoal_environments{function=\"f\",state=\"idle\"} 1",
        "shoal_environments{function=\"f\",state=\"busy\"} 0",
        "shoal_account_concurrent_executions 1",
        "shoal_environment_memory_mb 256",
    ] {
        assert!(rendered.contains(line), "{line} in {rendered}");
    }
    drop(starting);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_idle_environment() {
    let (s, launcher) = scheduler(limits(10, 1024));
    let p = record("p", "1", "r1");
    s.sync_provisioned("p", vec![(p, 1)]);
    settle().await;
    invoke(&s, &latest("f")).await;
    assert_eq!(launcher.running().len(), 2);
    s.shutdown().await;
    assert!(launcher.running().is_empty());
}
