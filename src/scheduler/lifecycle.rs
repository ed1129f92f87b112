//! The lifecycle of an environment as the scheduler sees it ([`Phase`], [`Kind`]) and the
//! per-pool count of environments starting and busy ([`Census`]); idle ones are the
//! entries of the pool's idle stacks.
//!
//! ```text
//!             on demand: ready for its invocation
//!   Starting ───────────────────────────────────▶ Busy ◀──▶ Idle
//!      │      provisioned: initialised ahead of traffic       ▲
//!      ├──────────────────────────────────────────────────────┘
//!      │
//!      └─▶ Gone ◀── (from any phase: failed, retired, evicted, reaped, surplus)
//! ```

use super::tally::Tally;

/// Why an environment exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Started for an invocation; shut down when idle past the keep-alive or evicted.
    OnDemand,
    /// Started ahead of traffic for provisioned concurrency; never reaped nor evicted.
    Provisioned,
}

/// Where an environment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its process runs its init phase.
    Starting,
    /// Initialised, waiting in its pool's idle stack.
    Idle,
    /// Held by a lease for an invocation.
    Busy,
    /// Shut down or destroyed; no longer counted.
    Gone,
}

impl Phase {
    /// Whether an environment of `kind` may move from `self` to `next`.
    pub fn may_become(self, next: Phase, kind: Kind) -> bool {
        use Phase::*;
        match (self, next) {
            (Starting, Busy) => kind == Kind::OnDemand,
            // A provisioned environment once initialised; an on-demand one whose lease
            // ended healthy before it was ready.
            (Starting, Idle) => true,
            (Idle, Busy) | (Busy, Idle) => true,
            (Starting | Idle | Busy, Gone) => true,
            _ => false,
        }
    }
}

/// Environments of one pool starting and busy, per kind.
#[derive(Debug, Default)]
pub struct Census {
    starting: [Tally; 2],
    busy: [Tally; 2],
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::OnDemand => 0,
        Kind::Provisioned => 1,
    }
}

impl Census {
    /// A new environment of `kind` is starting.
    pub fn begin(&mut self, kind: Kind) {
        self.starting[slot(kind)].add(1);
    }

    /// Moves one environment of `kind` from `from` to `to` (a move the lifecycle does
    /// not allow stops debug and test builds); idle environments are counted by the idle
    /// stacks, gone ones not at all.
    pub fn shift(&mut self, kind: Kind, from: Phase, to: Phase) {
        if cfg!(any(test, debug_assertions)) && !from.may_become(to, kind) {
            panic!("{kind:?} environment {from:?} → {to:?}");
        }
        match from {
            Phase::Starting => self.starting[slot(kind)].sub(1, "environments starting"),
            Phase::Busy => self.busy[slot(kind)].sub(1, "environments busy"),
            Phase::Idle | Phase::Gone => {}
        }
        if to == Phase::Busy {
            self.busy[slot(kind)].add(1);
        }
    }

    pub fn starting(&self, kind: Kind) -> u64 {
        self.starting[slot(kind)].get()
    }

    pub fn busy(&self, kind: Kind) -> u64 {
        self.busy[slot(kind)].get()
    }

    pub fn is_empty(&self) -> bool {
        self.starting.iter().chain(&self.busy).all(|t| t.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_on_demand_environments_go_from_starting_to_busy() {
        assert!(Phase::Starting.may_become(Phase::Busy, Kind::OnDemand));
        assert!(!Phase::Starting.may_become(Phase::Busy, Kind::Provisioned));
        assert!(Phase::Starting.may_become(Phase::Idle, Kind::Provisioned));
    }

    #[test]
    fn gone_is_final() {
        for next in [Phase::Starting, Phase::Idle, Phase::Busy, Phase::Gone] {
            assert!(!Phase::Gone.may_become(next, Kind::OnDemand));
        }
        assert!(!Phase::Idle.may_become(Phase::Starting, Kind::OnDemand));
    }

    #[test]
    fn the_census_follows_shifts() {
        let mut c = Census::default();
        c.begin(Kind::OnDemand);
        c.begin(Kind::Provisioned);
        c.shift(Kind::OnDemand, Phase::Starting, Phase::Busy);
        c.shift(Kind::Provisioned, Phase::Starting, Phase::Idle);
        assert_eq!((c.starting(Kind::OnDemand), c.busy(Kind::OnDemand)), (0, 1));
        assert_eq!(
            (c.starting(Kind::Provisioned), c.busy(Kind::Provisioned)),
            (0, 0)
        );
        c.shift(Kind::Provisioned, Phase::Idle, Phase::Busy);
        c.shift(Kind::OnDemand, Phase::Busy, Phase::Gone);
        assert!(!c.is_empty());
        c.shift(Kind::Provisioned, Phase::Busy, Phase::Idle);
        assert!(c.is_empty());
    }
}
