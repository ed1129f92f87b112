//! The server's shutdown signal: one value that every background task obeys.
//!
//! Shutdown has two steps. [`Shutdown::begin`] starts the drain: the HTTP server stops
//! accepting connections, the async dispatcher stops claiming events, the maintenance
//! tick stops; invocations in flight go on. [`Shutdown::end`] (when the drain took longer
//! than `--shutdown-timeout`) ends them: each is answered with the shutdown error and its
//! environment is killed, and no new invocation starts. Tasks hold a [`ShutdownSignal`]
//! and wait for [`ShutdownSignal::started`] or [`ShutdownSignal::ended`].

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// No new work is taken; work in flight goes on.
    Draining,
    /// Work in flight is ended.
    Ending,
}

/// The sending side, held by the server.
pub struct Shutdown {
    tx: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Phase::Running),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Starts the drain (no-op when it has started).
    pub fn begin(&self) {
        self.tx
            .send_if_modified(|phase| raise(phase, Phase::Draining));
    }

    /// Ends the work in flight (begins the drain first, if need be).
    pub fn end(&self) {
        self.tx
            .send_if_modified(|phase| raise(phase, Phase::Ending));
    }
}

fn raise(phase: &mut Phase, to: Phase) -> bool {
    if *phase < to {
        *phase = to;
        true
    } else {
        false
    }
}

/// What a task holds to learn that shutdown has started or ended.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Phase>,
}

impl ShutdownSignal {
    /// A signal that never fires (for parts used without a server).
    #[cfg(test)]
    pub fn never() -> Self {
        Shutdown::new().signal()
    }

    /// True once the drain has started.
    pub fn is_started(&self) -> bool {
        *self.rx.borrow() >= Phase::Draining
    }

    /// True once work in flight is to end.
    pub fn is_ended(&self) -> bool {
        *self.rx.borrow() >= Phase::Ending
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|p| *p >= phase).await.is_err() {
            // The server dropped its side without shutting down: nothing will happen.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when the drain starts (the hook of the HTTP serve loop).
    pub async fn started(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Resolves when work in flight is to end.
    pub async fn ended(&self) {
        self.reached(Phase::Ending).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(f: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn begin_then_end_wake_the_waiters_of_each_step() {
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        assert!(!signal.is_started() && !signal.is_ended());
        assert!(!resolves(signal.started()).await);
        shutdown.begin();
        assert!(signal.is_started() && !signal.is_ended());
        assert!(resolves(signal.started()).await);
        assert!(!resolves(signal.ended()).await);
        shutdown.end();
        assert!(resolves(signal.ended()).await);
        // Steps never go back.
        shutdown.begin();
        assert!(signal.is_ended());
    }

    #[tokio::test]
    async fn end_alone_also_starts_the_drain_and_a_dropped_sender_fires_nothing() {
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        shutdown.end();
        assert!(resolves(signal.started()).await);
        let never = ShutdownSignal::never();
        assert!(!resolves(never.started()).await);
        assert!(!never.is_started());
    }
}
