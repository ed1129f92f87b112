//! The pools: per function version, its idle environments (provisioned ones apart), the
//! census of those starting and busy, and its provisioned concurrency target. Every
//! change of an environment's [`Phase`] goes through [`Pool`]; picking the least recently
//! used idle environment to evict goes through [`Pools`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lifecycle::{Census, Kind, Phase};
use crate::function::FunctionRecord;

/// Environments are never shared between functions or versions: one pool per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub function: String,
    pub version: String,
}

impl PoolKey {
    pub fn of(record: &FunctionRecord) -> Self {
        Self {
            function: record.spec.key().into_owned(),
            version: record.version.clone(),
        }
    }
}

/// A live environment and what the scheduler knows of it.
pub struct Member<E> {
    pub env: Arc<E>,
    pub kind: Kind,
    pub memory_mb: u64,
    /// The revision of the function it runs.
    pub revision: String,
}

impl<E> Member<E> {
    pub fn new(env: Arc<E>, record: &FunctionRecord, kind: Kind) -> Self {
        Self {
            env,
            kind,
            memory_mb: u64::from(record.spec.memory_mb),
            revision: record.revision_id.clone(),
        }
    }
}

/// Memory held by `members`.
pub fn memory_of<E>(members: &[Member<E>]) -> u64 {
    members.iter().map(|m| m.memory_mb).sum()
}

struct Idle<E> {
    member: Member<E>,
    since: Instant,
}

/// Provisioned concurrency of one version.
#[derive(Default)]
pub struct Provisioned {
    pub target: usize,
    /// The version's record while the target is above zero.
    pub record: Option<Arc<FunctionRecord>>,
    /// The target could not be met for lack of memory capacity (said once, not each tick).
    pub short_of_memory: bool,
}

pub struct Pool<E> {
    /// The revision whose environments are reused; empty once retired.
    revision: String,
    /// Idle on-demand environments, most recently used last.
    idle: Vec<Idle<E>>,
    /// Idle provisioned environments, most recently used last.
    provisioned_idle: Vec<Idle<E>>,
    census: Census,
    pub provisioned: Provisioned,
}

impl<E> Default for Pool<E> {
    fn default() -> Self {
        Self {
            revision: String::new(),
            idle: Vec::new(),
            provisioned_idle: Vec::new(),
            census: Census::default(),
            provisioned: Provisioned::default(),
        }
    }
}

fn members<E>(idle: Vec<Idle<E>>) -> impl Iterator<Item = Member<E>> {
    idle.into_iter().map(|i| i.member)
}

impl<E> Pool<E> {
    fn stack(&mut self, kind: Kind) -> &mut Vec<Idle<E>> {
        match kind {
            Kind::OnDemand => &mut self.idle,
            Kind::Provisioned => &mut self.provisioned_idle,
        }
    }

    /// Serves `revision` from now on if the pool serves none yet (new or retired).
    pub fn adopt(&mut self, revision: &str) {
        if self.revision.is_empty() {
            self.revision = revision.to_string();
        }
    }

    /// Readies the pool for an invocation of `revision`: idle environments of another
    /// revision, and dead ones on top of the stacks, are gone (returned). Afterwards
    /// [`Pool::has_warm`] says whether an idle environment is there to take.
    pub fn refresh(&mut self, revision: &str, alive: impl Fn(&E) -> bool) -> Vec<Member<E>> {
        let mut gone = Vec::new();
        if self.revision != revision {
            gone.extend(members(std::mem::take(&mut self.idle)));
            gone.extend(members(std::mem::take(&mut self.provisioned_idle)));
            self.revision = revision.to_string();
        }
        for kind in [Kind::Provisioned, Kind::OnDemand] {
            let stack = self.stack(kind);
            while let Some(top) = stack.last() {
                if alive(&top.member.env) {
                    return gone;
                }
                gone.extend(stack.pop().map(|i| i.member));
            }
        }
        gone
    }

    pub fn has_warm(&self) -> bool {
        !self.provisioned_idle.is_empty() || !self.idle.is_empty()
    }

    /// Takes an idle environment (provisioned first, else the most recently used): it is
    /// busy.
    pub fn take_warm(&mut self) -> Option<Member<E>> {
        let idle = self.provisioned_idle.pop().or_else(|| self.idle.pop())?;
        self.census
            .shift(idle.member.kind, Phase::Idle, Phase::Busy);
        Some(idle.member)
    }

    /// A new environment of `kind` is starting.
    pub fn begin_start(&mut self, kind: Kind) {
        self.census.begin(kind);
    }

    /// An environment of `kind` moves from `from` to `to` outside the idle stacks.
    pub fn shift(&mut self, kind: Kind, from: Phase, to: Phase) {
        self.census.shift(kind, from, to);
    }

    /// An environment leaves `from` (starting or busy): back to its idle stack if `reuse`
    /// and it runs the pool's revision, else gone (returned).
    pub fn settle(
        &mut self,
        member: Member<E>,
        from: Phase,
        reuse: bool,
        now: Instant,
    ) -> Option<Member<E>> {
        let kind = member.kind;
        if reuse && member.revision == self.revision {
            self.census.shift(kind, from, Phase::Idle);
            self.stack(kind).push(Idle { member, since: now });
            None
        } else {
            self.census.shift(kind, from, Phase::Gone);
            Some(member)
        }
    }

    /// A provisioned environment finished its init phase: idle if it runs the current
    /// record's revision and the target wants it, else gone (returned).
    pub fn provisioned_ready(&mut self, member: Member<E>, now: Instant) -> Option<Member<E>> {
        let current = self
            .provisioned
            .record
            .as_ref()
            .is_some_and(|r| r.revision_id == member.revision);
        if current && self.live_provisioned() < self.provisioned.target {
            self.census
                .shift(Kind::Provisioned, Phase::Starting, Phase::Idle);
            self.provisioned_idle.push(Idle { member, since: now });
            None
        } else {
            self.census
                .shift(Kind::Provisioned, Phase::Starting, Phase::Gone);
            Some(member)
        }
    }

    /// Every idle environment is gone and none is reused any more (busy ones go when
    /// released): the function was updated or deleted.
    pub fn retire(&mut self) -> Vec<Member<E>> {
        self.revision.clear();
        let mut gone: Vec<_> = members(std::mem::take(&mut self.idle)).collect();
        gone.extend(members(std::mem::take(&mut self.provisioned_idle)));
        gone
    }

    /// On-demand environments idle for `keep_alive` or longer, and dead idle ones, are gone.
    pub fn reap(
        &mut self,
        now: Instant,
        keep_alive: Duration,
        alive: impl Fn(&E) -> bool,
    ) -> Vec<Member<E>> {
        let (idle, mut gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.idle)
            .into_iter()
            .partition(|i| alive(&i.member.env) && now.duration_since(i.since) < keep_alive);
        self.idle = idle;
        let (provisioned, dead): (Vec<_>, Vec<_>) = std::mem::take(&mut self.provisioned_idle)
            .into_iter()
            .partition(|i| alive(&i.member.env));
        self.provisioned_idle = provisioned;
        gone.extend(dead);
        members(gone).collect()
    }

    /// Idle provisioned environments beyond the target are gone.
    pub fn surplus(&mut self) -> Vec<Member<E>> {
        let mut gone = Vec::new();
        while self.live_provisioned() > self.provisioned.target {
            match self.provisioned_idle.pop() {
                Some(idle) => gone.push(idle.member),
                None => break,
            }
        }
        gone
    }

    /// Initialised provisioned environments, idle or busy.
    pub fn live_provisioned(&self) -> usize {
        self.provisioned_idle.len() + self.census.busy(Kind::Provisioned) as usize
    }

    /// Provisioned environments the target still lacks, counting those starting.
    pub fn missing_provisioned(&self) -> usize {
        let have = self.live_provisioned() + self.census.starting(Kind::Provisioned) as usize;
        self.provisioned.target.saturating_sub(have)
    }

    /// (starting, idle, busy) environments of both kinds.
    pub fn census(&self) -> (u64, u64, u64) {
        let both = |f: &dyn Fn(Kind) -> u64| f(Kind::OnDemand) + f(Kind::Provisioned);
        (
            both(&|k| self.census.starting(k)),
            (self.idle.len() + self.provisioned_idle.len()) as u64,
            both(&|k| self.census.busy(k)),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
            && self.provisioned_idle.is_empty()
            && self.census.is_empty()
            && self.provisioned.target == 0
    }

    /// Every idle environment (server shutdown).
    pub fn drain_idle(&mut self) -> impl Iterator<Item = Member<E>> {
        members(std::mem::take(&mut self.idle))
            .chain(members(std::mem::take(&mut self.provisioned_idle)))
    }
}

/// Every pool, by version.
pub struct Pools<E>(HashMap<PoolKey, Pool<E>>);

impl<E> Default for Pools<E> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<E> Pools<E> {
    pub fn get(&self, key: &PoolKey) -> Option<&Pool<E>> {
        self.0.get(key)
    }

    pub fn get_mut(&mut self, key: &PoolKey) -> Option<&mut Pool<E>> {
        self.0.get_mut(key)
    }

    pub fn entry(&mut self, key: &PoolKey) -> &mut Pool<E> {
        if !self.0.contains_key(key) {
            self.0.insert(key.clone(), Pool::default());
        }
        self.0.get_mut(key).expect("inserted above")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PoolKey, &Pool<E>)> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&PoolKey, &mut Pool<E>)> {
        self.0.iter_mut()
    }

    pub fn keys(&self) -> Vec<PoolKey> {
        self.0.keys().cloned().collect()
    }

    /// The pools of `function`, of one `version` or all.
    pub fn of<'a>(
        &'a mut self,
        function: &'a str,
        version: Option<&'a str>,
    ) -> impl Iterator<Item = &'a mut Pool<E>> + 'a {
        self.0
            .iter_mut()
            .filter(move |(key, _)| {
                key.function == function && version.is_none_or(|v| v == key.version)
            })
            .map(|(_, pool)| pool)
    }

    /// Drops pools with nothing in them.
    pub fn prune(&mut self) {
        self.0.retain(|_, pool| !pool.is_empty());
    }

    /// Memory held by idle on-demand environments: what eviction could free.
    pub fn evictable_mb(&self) -> u64 {
        self.0
            .values()
            .flat_map(|pool| &pool.idle)
            .map(|i| i.member.memory_mb)
            .sum()
    }

    /// Evicts idle on-demand environments, least recently used first, until at least
    /// `mb` is freed (or none is left).
    pub fn evict(&mut self, mb: u64) -> Vec<Member<E>> {
        let mut evicted = Vec::new();
        let mut freed = 0;
        while freed < mb {
            let Some(pool) = self
                .0
                .values_mut()
                .filter(|pool| !pool.idle.is_empty())
                .min_by_key(|pool| pool.idle[0].since)
            else {
                break;
            };
            let member = pool.idle.remove(0).member;
            freed += member.memory_mb;
            evicted.push(member);
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::sample_record;

    /// Environments are plain numbers here; odd ones are dead.
    fn alive(env: &u32) -> bool {
        env.is_multiple_of(2)
    }

    fn member(env: u32, revision: &str, kind: Kind) -> Member<u32> {
        let mut record = sample_record("f", "$LATEST", "code");
        record.spec.memory_mb = 100;
        record.revision_id = revision.into();
        Member::new(Arc::new(env), &record, kind)
    }

    /// A pool at `r1` with the environments `envs` idle, in order of use.
    fn pool_with(envs: &[(u32, Kind)], at: Instant) -> Pool<u32> {
        let mut pool = Pool::default();
        pool.adopt("r1");
        for (i, (env, kind)) in envs.iter().enumerate() {
            pool.begin_start(*kind);
            let back = pool.settle(
                member(*env, "r1", *kind),
                Phase::Starting,
                true,
                at + Duration::from_secs(i as u64),
            );
            assert!(back.is_none());
        }
        pool
    }

    fn ids(members: &[Member<u32>]) -> Vec<u32> {
        members.iter().map(|m| *m.env).collect()
    }

    #[test]
    fn provisioned_idle_environments_are_taken_first_then_the_most_recent() {
        let now = Instant::now();
        let mut pool = pool_with(
            &[
                (2, Kind::OnDemand),
                (4, Kind::Provisioned),
                (6, Kind::OnDemand),
            ],
            now,
        );
        let order: Vec<u32> = std::iter::from_fn(|| pool.take_warm().map(|m| *m.env)).collect();
        assert_eq!(order, vec![4, 6, 2]);
        assert_eq!(pool.census(), (0, 0, 3));
    }

    #[test]
    fn refresh_drops_dead_environments_on_top_and_other_revisions() {
        let now = Instant::now();
        let mut pool = pool_with(&[(2, Kind::OnDemand), (3, Kind::OnDemand)], now);
        assert_eq!(ids(&pool.refresh("r1", alive)), vec![3]);
        assert!(pool.has_warm());
        assert_eq!(ids(&pool.refresh("r2", alive)), vec![2]);
        assert!(!pool.has_warm());
        // An environment of the old revision is gone when released.
        pool.begin_start(Kind::OnDemand);
        let back = pool.settle(member(8, "r1", Kind::OnDemand), Phase::Starting, true, now);
        assert_eq!(back.map(|m| *m.env), Some(8));
        assert!(pool.is_empty());
    }

    #[test]
    fn eviction_takes_the_least_recently_used_on_demand_environment_of_any_pool() {
        let now = Instant::now();
        let mut pools = Pools::default();
        let key = |v: &str| PoolKey {
            function: "f".into(),
            version: v.into(),
        };
        *pools.entry(&key("1")) = pool_with(&[(10, Kind::Provisioned), (12, Kind::OnDemand)], now);
        *pools.entry(&key("2")) = pool_with(
            &[(20, Kind::OnDemand), (22, Kind::OnDemand)],
            now - Duration::from_millis(500),
        );
        assert_eq!(pools.evictable_mb(), 300);
        // 20 was idle since now - 0.5 s, 12 since now + 1 s, 22 since now + 0.5 s.
        assert_eq!(ids(&pools.evict(1)), vec![20]);
        assert_eq!(ids(&pools.evict(150)), vec![22, 12]);
        assert_eq!(pools.evictable_mb(), 0);
        assert!(
            pools.evict(100).is_empty(),
            "provisioned ones are never evicted"
        );
    }

    #[test]
    fn reaping_keeps_provisioned_and_recent_environments() {
        let now = Instant::now();
        let keep_alive = Duration::from_secs(60);
        let mut pool = pool_with(
            &[
                (2, Kind::OnDemand),
                (4, Kind::OnDemand),
                (6, Kind::Provisioned),
                (7, Kind::Provisioned),
            ],
            now,
        );
        // 2 went idle at now, 4 at now + 1 s.
        let gone = pool.reap(now + keep_alive, keep_alive, alive);
        assert_eq!(ids(&gone), vec![2, 7]);
        assert_eq!(pool.live_provisioned(), 1);
        assert_eq!(pool.census(), (0, 2, 0));
    }

    #[test]
    fn the_provisioned_surplus_and_the_missing_follow_the_target() {
        let now = Instant::now();
        let mut pool = pool_with(&[(2, Kind::Provisioned), (4, Kind::Provisioned)], now);
        pool.provisioned.target = 1;
        assert_eq!(ids(&pool.surplus()), vec![4]);
        pool.provisioned.target = 3;
        assert_eq!(pool.missing_provisioned(), 2);
        pool.begin_start(Kind::Provisioned);
        assert_eq!(pool.missing_provisioned(), 1);
        // Ready without a current record: not wanted.
        let back = pool.provisioned_ready(member(6, "r1", Kind::Provisioned), now);
        assert_eq!(back.map(|m| *m.env), Some(6));
        assert_eq!(pool.live_provisioned(), 1);
    }
}
