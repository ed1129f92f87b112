//! The async retry and age policy, as pure functions of an event's history and its
//! function's `EventInvokeConfig`: what happens after an attempt, and when.

use crate::document::EventInvokeConfig;

/// Delay before a throttled (or otherwise not run) event is tried again.
pub const NOT_RUN_RETRY_MS: u64 = 1000;
/// Longest backoff exponent: delays stop doubling after ten retries.
const BACKOFF_MAX_SHIFT: u32 = 10;

/// How an event ended, in the words of Lambda's execution record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What becomes of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Due again at `due_ms`, with `attempts` counted.
    Retry { attempts: u32, due_ms: u64 },
    /// Finished: its outcome goes to the destination of `Condition`.
    Finish(Condition),
}

/// How an attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The function answered without an error.
    Succeeded,
    /// The function failed (its error, a timeout, a crash).
    FunctionFailed,
    /// The invocation did not run (throttled, or a failure of the server's): the
    /// attempt is not counted.
    NotRun,
}

/// The policy's inputs that do not change between attempts.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// First retry delay after a function error; each next one is twice as long.
    pub base_delay_ms: u64,
    pub max_retries: u32,
    pub max_age_ms: u64,
}

impl Policy {
    pub fn new(config: &EventInvokeConfig, base_delay_ms: u64) -> Self {
        Self {
            base_delay_ms,
            max_retries: config.retries(),
            max_age_ms: config.max_age_ms(),
        }
    }

    /// Whether an event received at `received_ms` is too old to run at `now`.
    pub fn too_old(&self, received_ms: u64, now: u64) -> bool {
        now.saturating_sub(received_ms) > self.max_age_ms
    }

    /// What follows an attempt of an event received at `received_ms` that had made
    /// `attempts_before` counted attempts.
    pub fn after(
        &self,
        attempt: Attempt,
        attempts_before: u32,
        received_ms: u64,
        now: u64,
    ) -> Next {
        let (attempts, delay) = match attempt {
            Attempt::Succeeded => return Next::Finish(Condition::Success),
            Attempt::FunctionFailed => {
                let attempts = attempts_before + 1;
                if attempts > self.max_retries {
                    return Next::Finish(Condition::RetriesExhausted);
                }
                let shift = (attempts - 1).min(BACKOFF_MAX_SHIFT);
                (attempts, self.base_delay_ms.saturating_mul(1 << shift))
            }
            Attempt::NotRun => (attempts_before, NOT_RUN_RETRY_MS),
        };
        let due_ms = now + delay;
        if self.too_old(received_ms, due_ms) {
            Next::Finish(Condition::EventAgeExceeded)
        } else {
            Next::Retry { attempts, due_ms }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        base_delay_ms: 1000,
        max_retries: 2,
        max_age_ms: 3_600_000,
    };

    #[test]
    fn a_success_finishes_at_once() {
        assert_eq!(
            POLICY.after(Attempt::Succeeded, 0, 0, 10),
            Next::Finish(Condition::Success)
        );
        assert_eq!(
            POLICY.after(Attempt::Succeeded, 2, 0, 10),
            Next::Finish(Condition::Success)
        );
    }

    #[test]
    fn function_errors_are_retried_with_doubling_delays_then_exhausted() {
        assert_eq!(
            POLICY.after(Attempt::FunctionFailed, 0, 0, 100),
            Next::Retry {
                attempts: 1,
                due_ms: 1100
            }
        );
        assert_eq!(
            POLICY.after(Attempt::FunctionFailed, 1, 0, 100),
            Next::Retry {
                attempts: 2,
                due_ms: 2100
            }
        );
        assert_eq!(
            POLICY.after(Attempt::FunctionFailed, 2, 0, 100),
            Next::Finish(Condition::RetriesExhausted)
        );
        let none = Policy {
            max_retries: 0,
            ..POLICY
        };
        assert_eq!(
            none.after(Attempt::FunctionFailed, 0, 0, 100),
            Next::Finish(Condition::RetriesExhausted)
        );
    }

    #[test]
    fn delays_stop_doubling_and_never_overflow() {
        let many = Policy {
            max_retries: u32::MAX,
            max_age_ms: u64::MAX,
            base_delay_ms: 1000,
        };
        let Next::Retry { due_ms, .. } = many.after(Attempt::FunctionFailed, 40, 0, 0) else {
            panic!("retried");
        };
        assert_eq!(due_ms, 1000 << 10);
        let huge = Policy {
            base_delay_ms: u64::MAX,
            ..many
        };
        assert!(matches!(
            huge.after(Attempt::FunctionFailed, 5, 0, 0),
            Next::Retry { .. }
        ));
    }

    #[test]
    fn events_that_did_not_run_come_back_in_a_second_uncounted() {
        assert_eq!(
            POLICY.after(Attempt::NotRun, 1, 0, 500),
            Next::Retry {
                attempts: 1,
                due_ms: 1500
            }
        );
    }

    #[test]
    fn a_retry_that_would_be_too_old_finishes_as_age_exceeded() {
        let short = Policy {
            max_age_ms: 60_000,
            ..POLICY
        };
        assert!(!short.too_old(0, 60_000));
        assert!(short.too_old(0, 60_001));
        assert_eq!(
            short.after(Attempt::FunctionFailed, 1, 0, 58_500),
            Next::Finish(Condition::EventAgeExceeded),
            "due at 60,500 ms: past the age limit"
        );
        assert_eq!(
            short.after(Attempt::NotRun, 0, 0, 59_500),
            Next::Finish(Condition::EventAgeExceeded)
        );
        assert_eq!(
            short.after(Attempt::NotRun, 0, 0, 58_000),
            Next::Retry {
                attempts: 0,
                due_ms: 59_000
            }
        );
    }
}
