//! [`Tally`]: a count the scheduler keeps (invocations in flight, megabytes held,
//! environments in a phase) that cannot go below zero unnoticed.

/// A non-negative count. Taking away more than it holds is a bookkeeping bug: debug and
/// test builds stop on it; release builds log it and clamp at zero, so that admission
/// stays usable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally(u64);

impl Tally {
    pub fn get(self) -> u64 {
        self.0
    }

    pub fn add(&mut self, n: u64) {
        self.0 += n;
    }

    /// Takes `n` away; `what` names the count in the report of an underflow.
    pub fn sub(&mut self, n: u64, what: &'static str) {
        match self.0.checked_sub(n) {
            Some(left) => self.0 = left,
            None => {
                if cfg!(any(test, debug_assertions)) {
                    panic!("{what}: taking {n} from {}", self.0);
                }
                tracing::error!(
                    count = what,
                    held = self.0,
                    taken = n,
                    "scheduler count underflow"
                );
                self.0 = 0;
            }
        }
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_takes_away() {
        let mut t = Tally::default();
        t.add(3);
        t.sub(2, "test");
        assert_eq!(t.get(), 1);
        assert!(!t.is_zero());
        t.sub(1, "test");
        assert!(t.is_zero());
    }

    #[test]
    #[should_panic(expected = "test: taking 2 from 1")]
    fn an_underflow_is_caught() {
        let mut t = Tally::default();
        t.add(1);
        t.sub(2, "test");
    }
}
