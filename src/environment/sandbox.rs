//! The sandbox seam: how an environment's process tree is started, killed and measured.
//!
//! [`Sandbox`] turns a [`LaunchSpec`] (plain data: program, arguments, environment,
//! working directory, limits) into a running process tree. [`ProcessSandbox`] is the
//! unisolated implementation: a new process group (so the whole tree can be killed at
//! once; a [`Watchdog`] kills it if the server dies), a cleared environment, the output
//! pipe as stdout and stderr. Isolating implementations (namespaces, cgroups, seccomp)
//! implement the same trait.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use super::watchdog::Watchdog;

/// Everything needed to start one environment's process tree.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The environment's id (names its cgroup).
    pub id: String,
    /// Program, arguments, environment and working directory as the function sees them.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The environment's own folder on the host (scratch space, mount points).
    pub env_dir: PathBuf,
    /// Host paths of the function's code and of the shipped runtime loops.
    pub host_task_root: PathBuf,
    pub host_runtimes_root: PathBuf,
    /// The function's layers merged into one folder (mounted at `/opt`), if it has any.
    pub host_opt: Option<PathBuf>,
    pub memory_mb: u32,
    pub ephemeral_mb: u32,
    /// What the environment's network reaches (isolating sandboxes only).
    pub network: crate::function::NetworkMode,
}

/// Where things are as the function sees them.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `LAMBDA_TASK_ROOT`.
    pub task_root: PathBuf,
    /// Folder holding the shipped runtime loops (`python/`, `node/`).
    pub runtimes_root: PathBuf,
    /// `TMPDIR`: the environment's private scratch folder.
    pub tmp: PathBuf,
    /// `AWS_LAMBDA_RUNTIME_API` when the sandbox provides the listener itself.
    pub runtime_api: Option<String>,
    /// The platform API endpoint's address (`AWS_ENDPOINT_URL`'s) when the sandbox
    /// provides the listener itself.
    pub platform_api: Option<String>,
    /// Where the function's layers are (`/opt` in a sandbox), when it has any.
    pub opt: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The entrypoint cannot be executed (missing, not executable, bad interpreter line).
    #[error("fork/exec {program}: {reason}")]
    InvalidEntrypoint { program: String, reason: String },
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The data disk has no room for the environment's `/tmp` ([`crate::disk::DiskFull`]).
    #[error("{0}")]
    DiskFull(String),
}

/// Control over a started process tree, usable from any task.
pub trait TreeControl: Send + Sync {
    /// Kills every process of the tree.
    fn kill(&self);
    /// Asks every process of the tree to stop (SIGTERM).
    fn terminate(&self);
    /// Peak memory of the tree so far, in MB, as well as the sandbox can measure it.
    fn peak_memory_mb(&self) -> u64;
    /// The init phase is over (limits that spare the init phase apply from now on).
    fn after_init(&self) {}
    /// True when the kernel killed a process of the tree for exceeding its memory.
    fn oom_killed(&self) -> bool {
        false
    }
    /// Releases what the tree held (cgroups) once its processes are gone. May block briefly.
    fn cleanup(&self) {}
}

pub struct StartedTree {
    pub child: tokio::process::Child,
    pub control: Arc<dyn TreeControl>,
    /// The environment's listeners, when the sandbox bound them (inside its network
    /// namespace).
    pub listeners: Option<BoundListeners>,
}

/// An environment's two listeners: its Runtime API and its platform API endpoint.
pub struct BoundListeners {
    pub runtime_api: std::net::TcpListener,
    pub platform_api: std::net::TcpListener,
}

pub trait Sandbox: Send + Sync {
    /// A short name for logs (`process`, `namespaces`).
    fn name(&self) -> &'static str;
    /// Where the function finds its code, runtime loops and scratch space, given where
    /// they are on the host.
    fn layout(&self, host: &Layout) -> Layout;
    /// Why this sandbox cannot give an environment network egress (`None`: it can).
    fn egress_unavailable(&self) -> Option<String> {
        None
    }
    /// Releases what the sandbox holds for the whole server (at shutdown, after every
    /// environment is gone).
    fn shutdown(&self) {}
    /// Starts the tree with `output` as its stdout and stderr.
    fn start(&self, spec: &LaunchSpec, output: OwnedFd) -> Result<StartedTree, SandboxError>;
}

/// Runs the environment as a plain process group of the server's user.
pub struct ProcessSandbox {
    /// Kills the groups still running if the server dies (none in unit tests).
    watchdog: Option<Arc<Watchdog>>,
}

impl ProcessSandbox {
    /// A process sandbox whose groups die with the server (through a [`Watchdog`]).
    pub fn start() -> Self {
        let watchdog = match Watchdog::start() {
            Ok(watchdog) => Some(Arc::new(watchdog)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the process watchdog: unisolated environments will outlive a crash of the server");
                None
            }
        };
        Self { watchdog }
    }
}

struct ProcessGroup {
    pgid: i32,
    watchdog: Option<Arc<Watchdog>>,
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // The environment is gone (its Drop kills a tree still alive).
        if let Some(watchdog) = &self.watchdog {
            watchdog.forget(self.pgid);
        }
    }
}

impl TreeControl for ProcessGroup {
    fn kill(&self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        // ESRCH (already gone) is the expected outcome after an exit; nothing to report.
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
    }

    fn terminate(&self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGTERM);
    }

    fn peak_memory_mb(&self) -> u64 {
        // VmHWM of the group leader: the runtime process itself.
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pgid)).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb.div_ceil(1024))
            .unwrap_or(0)
    }
}

impl Sandbox for ProcessSandbox {
    fn name(&self) -> &'static str {
        "process"
    }

    fn layout(&self, host: &Layout) -> Layout {
        host.clone()
    }

    fn shutdown(&self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.stop();
        }
    }

    fn start(&self, spec: &LaunchSpec, output: OwnedFd) -> Result<StartedTree, SandboxError> {
        tracing::debug!(
            program = %spec.program.display(),
            env_dir = %spec.env_dir.display(),
            memory_mb = spec.memory_mb,
            "starting an unisolated process group (no memory limit, no private /tmp)"
        );
        let stderr = output
            .try_clone()
            .map_err(|e| SandboxError::Setup(e.to_string()))?;
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| SandboxError::InvalidEntrypoint {
                program: spec.program.display().to_string(),
                reason: match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                },
            })?;
        let pgid = child
            .id()
            .map(|id| id as i32)
            .ok_or_else(|| SandboxError::Setup("child exited at once".into()))?;
        if let Some(watchdog) = &self.watchdog {
            watchdog.watch(pgid);
        }
        Ok(StartedTree {
            child,
            control: Arc::new(ProcessGroup {
                pgid,
                watchdog: self.watchdog.clone(),
            }),
            listeners: None,
        })
    }
}
