//! Network egress for isolated environments: user-mode NAT into the environment's
//! network namespace, by `slirp4netns`.
//!
//! An environment in network mode `egress` gets a `tap0` device (10.0.2.100/24, gateway
//! 10.0.2.2, DNS forwarder 10.0.2.3) whose packets a `slirp4netns` process turns into
//! ordinary sockets of the host. So the function reaches what the host reaches, and:
//! - nothing on the host changes: no bridge, no `ip_forward`, no NAT rules, no address
//!   plan that could collide with the host's networks (every environment has the same
//!   private addresses, inside its own namespace);
//! - the host's loopback stays out of reach (`--disable-host-loopback`): not the Shoal
//!   API, not services bound to 127.0.0.1, not other environments;
//! - the helper runs sandboxed (its own mount namespace, capabilities dropped, seccomp)
//!   inside the environment's cgroup, so its CPU and memory count against the function;
//! - it ends with the environment (its exit pipe closes when Shoal drops it, or dies).
//!
//! A veth pair would be faster but needs routing and NAT rules on the host, per
//! environment, and a server crash would leave them behind.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::super::sandbox::SandboxError;
use super::cgroup::EnvCgroup;

/// How long the helper may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Inside the namespace: the address the helper answers DNS on.
pub const DNS_ADDR: &str = "10.0.2.3";
/// The largest MTU the helper allows: fewer, larger packets through user space.
const MTU: &str = "65520";

/// The egress helper this host has.
#[derive(Debug, Clone)]
pub struct Egress {
    program: PathBuf,
}

impl Egress {
    /// Finds a working `slirp4netns` at `program` (a name is looked up in `PATH`).
    pub fn probe(program: &Path) -> Result<Self, String> {
        let output = Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{} cannot be run: {e}", program.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !text.starts_with("slirp4netns") {
            return Err(format!("{} is not slirp4netns", program.display()));
        }
        tracing::debug!(version = %text.lines().next().unwrap_or_default(), "egress helper found");
        Ok(Self {
            program: program.to_path_buf(),
        })
    }

    /// Gives the network namespace of process `pid` a NATed `tap0` and waits until it is
    /// configured. The helper joins the environment's `cgroup`; what it prints goes to `log`.
    pub fn attach(
        &self,
        pid: u32,
        cgroup: Option<&EnvCgroup>,
        log: &Path,
    ) -> Result<EgressLink, SandboxError> {
        let fail = |context: &str, e: &dyn std::fmt::Display| {
            SandboxError::Setup(format!("network egress: {context}: {e}"))
        };
        let (ready_read, ready_write) = cloexec_pipe().map_err(|e| fail("pipe", &e))?;
        let (exit_read, exit_write) = cloexec_pipe().map_err(|e| fail("pipe", &e))?;
        let output = fs::File::create(log).map_err(|e| fail("log file", &e))?;
        let inherited = [ready_write.as_raw_fd(), exit_read.as_raw_fd()];
        let mut command = Command::new(&self.program);
        command
            .args([
                "--configure",
                &format!("--mtu={MTU}"),
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
                "--netns-type=path",
                &format!("--ready-fd={}", inherited[0]),
                &format!("--exit-fd={}", inherited[1]),
                &format!("/proc/{pid}/ns/net"),
                "tap0",
            ])
            .env_clear()
            // Its own group: a terminal's ^C goes to the server, which ends the helper.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                output.try_clone().map_err(|e| fail("log file", &e))?,
            ))
            .stderr(Stdio::from(output));
        keep_open_across_exec(&mut command, inherited);
        let child = command
            .spawn()
            .map_err(|e| fail(&format!("starting {}", self.program.display()), &e))?;
        drop((ready_write, exit_read));
        let helper_pid = child.id();
        let link = EgressLink {
            child: Mutex::new(Some(child)),
            exit: Mutex::new(Some(exit_write)),
        };
        if let Some(Err(e)) = cgroup.map(|c| c.join(helper_pid)) {
            link.stop();
            return Err(fail("joining the environment's cgroup", &e));
        }
        match wait_ready(&ready_read) {
            Ok(()) => Ok(link),
            Err(e) => {
                link.stop();
                let said = fs::read_to_string(log).unwrap_or_default();
                let last = said.lines().rev().find(|l| !l.trim().is_empty());
                Err(fail(&e, &last.unwrap_or("no output")))
            }
        }
    }
}

/// A running egress helper; stopping it (or dropping it) tears the network down.
pub struct EgressLink {
    child: Mutex<Option<Child>>,
    /// Closing this ends the helper.
    exit: Mutex<Option<OwnedFd>>,
}

impl EgressLink {
    /// Ends the helper at once without waiting for it.
    pub fn kill(&self) {
        self.exit.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = child.kill();
        }
    }

    /// Ends the helper and reaps it. May block briefly.
    pub fn stop(&self) {
        self.kill();
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.wait();
        }
    }
}

impl Drop for EgressLink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Clears close-on-exec on `fds` in the child only, so the helper inherits exactly these.
#[allow(unsafe_code)]
fn keep_open_across_exec(command: &mut Command, fds: [i32; 2]) {
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, on descriptors
    // that are open in the parent when it forks.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Waits for the helper's "configured" byte.
fn wait_ready(ready: &OwnedFd) -> Result<(), String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(READY_TIMEOUT.as_millis() as i32)
        .map_err(|_| "timeout out of range".to_string())?;
    match poll(&mut fds, timeout) {
        Ok(0) => return Err(format!("not ready after {READY_TIMEOUT:?}")),
        Ok(_) => {}
        Err(e) => return Err(format!("waiting: {e}")),
    }
    let mut byte = [0u8; 1];
    let mut file = fs::File::from(ready.try_clone().map_err(|e| e.to_string())?);
    match file.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err("the helper exited before configuring the network".into()),
        Err(e) => Err(format!("reading its ready signal: {e}")),
    }
}

/// The resolver configuration of an egress environment: the helper's DNS forwarder.
pub fn resolv_conf() -> String {
    format!("nameserver {DNS_ADDR}\n")
}
