//! The watchdog of unisolated environments: their process groups die with the server.
//!
//! An isolated environment ends by itself when the server dies (its sandbox init watches
//! the control socket). An unisolated one is a plain process group of the server's user,
//! and nothing in the kernel ends a group when the process that started it dies
//! (`PR_SET_PDEATHSIG` reaches one process, not its children, and fires when the
//! *thread* that forked it ends). So one small process per server, this binary
//! re-executed as `shoal __process-watchdog`, keeps the list of the live groups, which the
//! server sends it over its stdin (`+<pgid>` when a group starts, `-<pgid>` when it is
//! gone). The server holds the only write end of that pipe: when the server ends, in
//! whatever way, the watchdog reads end of file, kills every group still listed
//! (SIGKILL) and exits.
//!
//! The watchdog is in a process group of its own and ignores SIGINT, SIGTERM and SIGHUP:
//! a terminal's ^C or a supervisor's SIGTERM to the server must not end it first.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The first argument that selects this mode.
pub const ARG: &str = "__process-watchdog";

/// Entry point of the watchdog process; returns its exit code.
pub fn main() -> i32 {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler code; nothing else runs in this process.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut groups = BTreeSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        apply(&mut groups, &line);
    }
    for pgid in groups {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
    }
    0
}

/// Applies one message (`+<pgid>` or `-<pgid>`) to the set of live groups.
fn apply(groups: &mut BTreeSet<i32>, line: &str) {
    let line = line.trim();
    let (sign, number) = line.split_at(line.len().min(1));
    // Only positive numbers above 1: killpg(0) or (1) would hit the wrong processes.
    let Ok(pgid) = number.parse::<i32>() else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    match sign {
        "+" => {
            groups.insert(pgid);
        }
        "-" => {
            groups.remove(&pgid);
        }
        _ => {}
    }
}

/// The server's side: the running watchdog and the write end of its stdin.
pub struct Watchdog {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl Watchdog {
    /// Starts the watchdog (this executable re-executed).
    pub fn start() -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(ARG)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    fn send(&self, message: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pipe) = stdin.as_mut()
            && let Err(e) = writeln!(pipe, "{message}")
        {
            tracing::warn!(error = %e, "the process watchdog is gone: unisolated environments will outlive a crash of the server");
            *stdin = None;
        }
    }

    /// A process group has started: kill it if the server dies.
    pub fn watch(&self, pgid: i32) {
        self.send(&format!("+{pgid}"));
    }

    /// The process group is gone (killed): forget it.
    pub fn forget(&self, pgid: i32) {
        self.send(&format!("-{pgid}"));
    }

    /// Ends the watchdog (at shutdown, once every environment is gone).
    pub fn stop(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self.child.lock().unwrap_or_else(|p| p.into_inner()).wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_add_and_remove_groups_and_nothing_else() {
        let mut groups = BTreeSet::new();
        for line in [
            "+100", "+200", "-100", "+1", "+0", "+-5", "x300", "+", "", "+abc",
        ] {
            apply(&mut groups, line);
        }
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), vec![200]);
    }
}
