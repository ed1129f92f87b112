//! Admission: whether one more invocation may run, decided by [`admit`] from counts and
//! limits alone, and the counts it is decided on ([`Load`], [`Reservations`]).
//!
//! The order of the checks gives the throttle reason: the function's reserved
//! concurrency (or, without a reservation, the unreserved share of the account limit)
//! first, then memory capacity, which a warm environment does not need and a cold start
//! may make by evicting idle on-demand environments.

use std::collections::HashMap;

use super::tally::Tally;

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

/// Which part of the account limit an invocation counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The function's own reserved concurrency.
    Reserved(u32),
    /// The account limit less every reservation, shared by the other functions.
    Unreserved,
}

/// Reserved concurrency per function, and their sum.
#[derive(Debug, Default)]
pub struct Reservations {
    by_function: HashMap<String, u32>,
    sum: u64,
}

impl Reservations {
    pub fn set(&mut self, function: &str, reserved: Option<u32>) {
        match reserved {
            Some(r) => {
                self.by_function.insert(function.to_string(), r);
            }
            None => {
                self.by_function.remove(function);
            }
        }
        self.sum = self.by_function.values().map(|r| u64::from(*r)).sum();
    }

    pub fn share_of(&self, function: &str) -> Share {
        self.by_function
            .get(function)
            .map_or(Share::Unreserved, |r| Share::Reserved(*r))
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }
}

/// Invocations in flight (per function, in the account, in the unreserved share) and the
/// memory held by live environments (starting, idle or busy).
#[derive(Debug, Default)]
pub struct Load {
    per_function: HashMap<String, Tally>,
    account: Tally,
    unreserved: Tally,
    memory_mb: Tally,
}

impl Load {
    /// An admitted invocation of `function` starts.
    pub fn begin(&mut self, function: &str, share: Share) {
        match self.per_function.get_mut(function) {
            Some(n) => n.add(1),
            None => {
                let mut n = Tally::default();
                n.add(1);
                self.per_function.insert(function.to_string(), n);
            }
        }
        self.account.add(1);
        if share == Share::Unreserved {
            self.unreserved.add(1);
        }
    }

    /// An invocation counted by [`Load::begin`] with the same `share` ends.
    pub fn end(&mut self, function: &str, share: Share) {
        match self.per_function.get_mut(function) {
            Some(n) => {
                n.sub(1, "function in flight");
                if n.is_zero() {
                    self.per_function.remove(function);
                }
            }
            None => Tally::default().sub(1, "function in flight"),
        }
        self.account.sub(1, "account in flight");
        if share == Share::Unreserved {
            self.unreserved.sub(1, "unreserved in flight");
        }
    }

    pub fn inflight(&self, function: &str) -> u64 {
        self.per_function.get(function).map_or(0, |n| n.get())
    }

    /// In-flight invocations per function with any.
    pub fn per_function(&self) -> impl Iterator<Item = (&str, u64)> {
        self.per_function.iter().map(|(f, n)| (f.as_str(), n.get()))
    }

    pub fn account(&self) -> u64 {
        self.account.get()
    }

    pub fn unreserved(&self) -> u64 {
        self.unreserved.get()
    }

    pub fn claim_memory(&mut self, mb: u64) {
        self.memory_mb.add(mb);
    }

    pub fn free_memory(&mut self, mb: u64) {
        self.memory_mb.sub(mb, "memory in use");
    }

    pub fn memory_mb(&self) -> u64 {
        self.memory_mb.get()
    }
}

/// The limits admission applies.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Account-wide concurrent executions.
    pub concurrency: u64,
    pub memory_capacity_mb: u64,
}

/// What one invocation asks for, and the counts it is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub share: Share,
    /// In flight of this function (every version).
    pub function_inflight: u64,
    /// In flight of every function without a reservation.
    pub unreserved_inflight: u64,
    /// Sum of all reservations.
    pub reserved_sum: u64,
    /// An idle environment of the version is there to take: no memory is needed.
    pub warm: bool,
    /// Memory size of a new environment.
    pub memory_mb: u64,
    pub memory_used_mb: u64,
    /// Memory held by idle on-demand environments (of any function), which eviction frees.
    pub evictable_mb: u64,
    /// The host has less memory available than its floor.
    pub host_low: bool,
}

/// How an admitted invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// In the idle environment.
    Warm,
    /// In a new environment, once at least `evict_mb` of idle environments are evicted.
    Cold { evict_mb: u64 },
}

/// Admits an invocation, or says which limit throttles it.
pub fn admit(ask: &Ask, caps: Caps) -> Result<Admit, Throttle> {
    match ask.share {
        Share::Reserved(r) if ask.function_inflight >= u64::from(r) => {
            return Err(Throttle::ReservedConcurrency);
        }
        Share::Unreserved
            if ask.unreserved_inflight >= caps.concurrency.saturating_sub(ask.reserved_sum) =>
        {
            return Err(Throttle::AccountConcurrency);
        }
        _ => {}
    }
    if ask.warm {
        return Ok(Admit::Warm);
    }
    let mut evict_mb = memory(
        ask.memory_mb,
        ask.memory_used_mb,
        ask.evictable_mb,
        caps.memory_capacity_mb,
    )?;
    if ask.host_low {
        // The host itself is short: idle environments worth the new one's size go first,
        // and without any the cold start waits for the host.
        if ask.evictable_mb == 0 {
            return Err(Throttle::MemoryCapacity);
        }
        evict_mb = evict_mb.max(ask.memory_mb.min(ask.evictable_mb));
    }
    Ok(Admit::Cold { evict_mb })
}

/// Room for `mb` more within `capacity`: how much of the `evictable` memory must be
/// freed first.
pub fn memory(mb: u64, used: u64, evictable: u64, capacity: u64) -> Result<u64, Throttle> {
    let over = (used + mb).saturating_sub(capacity);
    if over > evictable {
        return Err(Throttle::MemoryCapacity);
    }
    Ok(over)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        concurrency: 10,
        memory_capacity_mb: 1024,
    };

    fn ask() -> Ask {
        Ask {
            share: Share::Unreserved,
            function_inflight: 0,
            unreserved_inflight: 0,
            reserved_sum: 0,
            warm: false,
            memory_mb: 128,
            memory_used_mb: 0,
            evictable_mb: 0,
            host_low: false,
        }
    }

    #[test]
    fn a_host_low_on_memory_evicts_idle_environments_first_and_else_throttles() {
        let mut a = ask();
        a.host_low = true;
        // Nothing idle to give back: the cold start waits, whatever the capacity says.
        assert_eq!(admit(&a, CAPS), Err(Throttle::MemoryCapacity));
        // Idle environments go first, the new one's size of them (or all there are).
        a.evictable_mb = 512;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 128 }));
        a.evictable_mb = 64;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 64 }));
        // What the capacity needs evicted still counts when it is more.
        a.evictable_mb = 512;
        a.memory_used_mb = 1024;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 128 }));
        a.memory_used_mb = 1024 + 300;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 428 }));
        // A warm environment needs nothing of the host.
        a.warm = true;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Warm));
    }

    #[test]
    fn a_reserved_function_runs_up_to_its_reservation() {
        let mut a = ask();
        a.share = Share::Reserved(2);
        a.reserved_sum = 2;
        a.function_inflight = 1;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 0 }));
        a.function_inflight = 2;
        assert_eq!(admit(&a, CAPS), Err(Throttle::ReservedConcurrency));
    }

    #[test]
    fn a_reservation_of_zero_stops_the_function() {
        let mut a = ask();
        a.share = Share::Reserved(0);
        a.warm = true;
        assert_eq!(admit(&a, CAPS), Err(Throttle::ReservedConcurrency));
    }

    #[test]
    fn a_reserved_function_ignores_the_unreserved_share() {
        let mut a = ask();
        a.share = Share::Reserved(5);
        a.reserved_sum = 5;
        a.unreserved_inflight = 5;
        a.warm = true;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Warm));
    }

    #[test]
    fn unreserved_functions_share_the_account_limit_less_reservations() {
        let mut a = ask();
        a.reserved_sum = 4;
        a.unreserved_inflight = 5;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 0 }));
        a.unreserved_inflight = 6;
        assert_eq!(admit(&a, CAPS), Err(Throttle::AccountConcurrency));
        // Reservations above the limit leave nothing, not an overflow.
        a.reserved_sum = 20;
        a.unreserved_inflight = 0;
        assert_eq!(admit(&a, CAPS), Err(Throttle::AccountConcurrency));
    }

    #[test]
    fn concurrency_is_checked_before_memory() {
        let mut a = ask();
        a.unreserved_inflight = 10;
        a.memory_used_mb = 1024;
        assert_eq!(admit(&a, CAPS), Err(Throttle::AccountConcurrency));
    }

    #[test]
    fn a_warm_environment_needs_no_memory() {
        let mut a = ask();
        a.memory_used_mb = 1024;
        a.warm = true;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Warm));
    }

    #[test]
    fn a_cold_start_fits_the_capacity_exactly() {
        let mut a = ask();
        a.memory_used_mb = 1024 - 128;
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 0 }));
        a.memory_used_mb += 1;
        assert_eq!(admit(&a, CAPS), Err(Throttle::MemoryCapacity));
    }

    #[test]
    fn a_cold_start_evicts_what_it_lacks_when_idle_memory_covers_it() {
        let mut a = ask();
        a.memory_used_mb = 1000;
        a.evictable_mb = 256;
        // 1000 + 128 - 1024 = 104 MB to free.
        assert_eq!(admit(&a, CAPS), Ok(Admit::Cold { evict_mb: 104 }));
        a.evictable_mb = 103;
        assert_eq!(admit(&a, CAPS), Err(Throttle::MemoryCapacity));
    }

    #[test]
    fn throttle_reasons_are_lambdas() {
        assert_eq!(
            Throttle::ReservedConcurrency.reason(),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        assert_eq!(
            Throttle::AccountConcurrency.reason(),
            "ConcurrentInvocationLimitExceeded"
        );
        assert_eq!(
            Throttle::MemoryCapacity.reason(),
            "ConcurrentInvocationLimitExceeded"
        );
    }

    #[test]
    fn load_counts_shares_apart() {
        let mut load = Load::default();
        load.begin("a", Share::Unreserved);
        load.begin("a", Share::Unreserved);
        load.begin("b", Share::Reserved(3));
        assert_eq!(
            (load.inflight("a"), load.inflight("b"), load.account()),
            (2, 1, 3)
        );
        assert_eq!(load.unreserved(), 2);
        load.end("b", Share::Reserved(3));
        load.end("a", Share::Unreserved);
        assert_eq!(
            (load.inflight("b"), load.account(), load.unreserved()),
            (0, 1, 1)
        );
        assert_eq!(load.per_function().collect::<Vec<_>>(), vec![("a", 1)]);
    }

    #[test]
    fn reservations_sum_up() {
        let mut r = Reservations::default();
        r.set("a", Some(3));
        r.set("b", Some(4));
        r.set("a", Some(1));
        assert_eq!(r.sum(), 5);
        assert_eq!(r.share_of("b"), Share::Reserved(4));
        r.set("b", None);
        assert_eq!((r.sum(), r.share_of("b")), (1, Share::Unreserved));
    }
}
