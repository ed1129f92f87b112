//! Control groups: memory, CPU and process-count limits per environment.
//!
//! Detects the host's layout once: cgroup v2 when its root delegates the memory
//! controller, else the v1 controllers mounted under `/sys/fs/cgroup/<controller>`.
//! Each environment gets `shoal/<env-id>` in every hierarchy used: memory limit = the
//! function's memory size (no swap), CPU quota proportional to it (1769 MB = one vCPU, as
//! on Lambda; applied after the init phase, which runs unthrottled), and a pids limit.
//! The group also measures peak memory, tells an out-of-memory kill, and kills every
//! process of the environment at once.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Lambda's rule: this much memory buys one full vCPU.
pub const MB_PER_VCPU: f64 = 1769.0;
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
enum Layout {
    V2 {
        root: PathBuf,
    },
    V1 {
        memory: PathBuf,
        cpu: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

/// The cgroup hierarchies Shoal places environments in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.events`.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

impl Cgroups {
    /// Finds usable hierarchies and creates this server's parent group
    /// (`shoal/<instance>`); `None` when there are none this process may use (not root,
    /// no cgroup filesystem). Groups left by an earlier run of the same instance (a
    /// server that was killed) are emptied and removed first.
    pub fn detect(instance: &str) -> Option<Self> {
        let v2 = Path::new("/sys/fs/cgroup");
        if fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        {
            let shoal = v2.join("shoal");
            let root = shoal.join(instance);
            fs::create_dir_all(&root).ok()?;
            // Delegate the controllers down to the environments' groups.
            for dir in [v2, shoal.as_path(), root.as_path()] {
                let _ = write(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
            }
            remove_leftovers(std::slice::from_ref(&root), Leftovers::EarlierRun);
            return Some(Self {
                layout: Layout::V2 { root },
            });
        }
        if v2.join("memory/memory.limit_in_bytes").exists() {
            let group = |controller: &str| {
                let dir = v2.join(controller).join("shoal").join(instance);
                fs::create_dir_all(&dir).ok().map(|()| dir)
            };
            let memory = group("memory")?;
            let (cpu, pids) = (group("cpu"), group("pids"));
            let parents: Vec<PathBuf> = [Some(memory.clone()), cpu.clone(), pids.clone()]
                .into_iter()
                .flatten()
                .collect();
            remove_leftovers(&parents, Leftovers::EarlierRun);
            return Some(Self {
                layout: Layout::V1 { memory, cpu, pids },
            });
        }
        None
    }

    /// Removes this server's parent groups (and any environment group left in them).
    pub fn remove_instance(&self) {
        let parents: Vec<PathBuf> = match &self.layout {
            Layout::V2 { root } => vec![root.clone()],
            Layout::V1 { memory, cpu, pids } => [Some(memory.clone()), cpu.clone(), pids.clone()]
                .into_iter()
                .flatten()
                .collect(),
        };
        remove_leftovers(&parents, Leftovers::ThisRun);
        for parent in parents {
            let _ = fs::remove_dir(parent);
        }
    }

    pub fn describe(&self) -> &'static str {
        match self.layout {
            Layout::V2 { .. } => "cgroup v2",
            Layout::V1 { .. } => "cgroup v1",
        }
    }

    /// Creates the group of one environment with its limits.
    /// Makes the group `id` with the pids limit; memory and CPU limits come with
    /// [`EnvCgroup::set_memory`] once the environment's memory size is known.
    pub fn create(&self, id: &str, pids_limit: u32) -> io::Result<EnvCgroup> {
        let group = match &self.layout {
            Layout::V2 { root } => {
                let dir = root.join(id);
                fs::create_dir_all(&dir)?;
                let _ = write(&dir.join("pids.max"), &pids_limit.to_string());
                EnvCgroup {
                    kind: Kind::V2(dir),
                    quota_us: 0,
                }
            }
            Layout::V1 { memory, cpu, pids } => {
                let memory = memory.join(id);
                fs::create_dir_all(&memory)?;
                let cpu = match cpu {
                    Some(cpu) => {
                        let dir = cpu.join(id);
                        fs::create_dir_all(&dir)?;
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        Some(dir)
                    }
                    None => None,
                };
                let pids = match pids {
                    Some(pids) => {
                        let dir = pids.join(id);
                        fs::create_dir_all(&dir)?;
                        write(&dir.join("pids.max"), &pids_limit.to_string())?;
                        Some(dir)
                    }
                    None => None,
                };
                EnvCgroup {
                    kind: Kind::V1 { memory, cpu, pids },
                    quota_us: 0,
                }
            }
        };
        Ok(group)
    }
}

/// Whose environment groups are being removed: an earlier run's (a server that was
/// killed: worth a warning) or this run's, at its shutdown (routine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    EarlierRun,
    ThisRun,
}

/// Kills the processes of every environment group under `parents` and removes the groups.
fn remove_leftovers(parents: &[PathBuf], whose: Leftovers) {
    let mut removed = 0;
    for parent in parents {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            // Up to 2 s: a group of hundreds of processes can take that long to empty.
            for _ in 0..80 {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if procs.trim().is_empty() && fs::remove_dir(&dir).is_ok() {
                    break;
                }
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                removed += 1;
            }
        }
    }
    match whose {
        _ if removed == 0 => {}
        Leftovers::EarlierRun => tracing::warn!(
            removed,
            "removed environment cgroups (and their processes) left by an earlier run"
        ),
        Leftovers::ThisRun => tracing::debug!(removed, "removed this run's environment cgroups"),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    V2(PathBuf),
    V1 {
        memory: PathBuf,
        cpu: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

/// The group of one environment.
#[derive(Debug)]
pub struct EnvCgroup {
    kind: Kind,
    quota_us: u64,
}

impl EnvCgroup {
    fn dirs(&self) -> Vec<&Path> {
        match &self.kind {
            Kind::V2(dir) => vec![dir.as_path()],
            Kind::V1 { memory, cpu, pids } => {
                let mut dirs = vec![memory.as_path()];
                dirs.extend(cpu.as_deref());
                dirs.extend(pids.as_deref());
                dirs
            }
        }
    }

    /// The files listing the group's processes (writing a pid moves it in).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves process `pid` into the group. Can take milliseconds: the kernel waits for
    /// an RCU grace period when a process changes groups.
    pub fn join(&self, pid: u32) -> io::Result<()> {
        for file in self.procs_files() {
            write(&file, &pid.to_string())?;
        }
        Ok(())
    }

    /// Sets the memory limit to `memory_mb` (no swap) and the CPU quota that goes with it
    /// (applied by [`EnvCgroup::apply_cpu_quota`]).
    pub fn set_memory(&mut self, memory_mb: u32) -> io::Result<()> {
        let bytes = (u64::from(memory_mb) * 1024 * 1024).to_string();
        self.quota_us = ((f64::from(memory_mb) / MB_PER_VCPU) * CPU_PERIOD_US as f64)
            .round()
            .max(1000.0) as u64;
        match &self.kind {
            Kind::V2(dir) => {
                write(&dir.join("memory.max"), &bytes)?;
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            Kind::V1 { memory, .. } => {
                write(&memory.join("memory.limit_in_bytes"), &bytes)?;
                // Without swap accounting this file is absent; memory is then the only limit.
                let _ = write(&memory.join("memory.memsw.limit_in_bytes"), &bytes);
            }
        }
        Ok(())
    }

    /// Applies the CPU quota (after the init phase, which runs unthrottled).
    pub fn apply_cpu_quota(&self) {
        let result = match &self.kind {
            Kind::V2(dir) => write(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", self.quota_us),
            ),
            Kind::V1 { cpu: Some(cpu), .. } => {
                write(&cpu.join("cpu.cfs_quota_us"), &self.quota_us.to_string())
            }
            Kind::V1 { cpu: None, .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "setting the CPU quota failed");
        }
    }

    /// Peak memory use of the environment, in MB.
    pub fn peak_memory_mb(&self) -> u64 {
        let bytes = match &self.kind {
            Kind::V2(dir) => {
                read_u64(&dir.join("memory.peak")).or_else(|| read_u64(&dir.join("memory.current")))
            }
            Kind::V1 { memory, .. } => read_u64(&memory.join("memory.max_usage_in_bytes")),
        };
        bytes.unwrap_or(0).div_ceil(1024 * 1024)
    }

    /// True once the kernel has killed a process of the environment for memory.
    pub fn oom_killed(&self) -> bool {
        let count = match &self.kind {
            Kind::V2(dir) => keyed(&dir.join("memory.events"), "oom_kill "),
            Kind::V1 { memory, .. } => keyed(&memory.join("memory.oom_control"), "oom_kill "),
        };
        count.unwrap_or(0) > 0
    }

    /// Kills every process in the group.
    pub fn kill_all(&self) {
        if let Kind::V2(dir) = &self.kind
            && write(&dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for file in self.procs_files() {
            for pid in fs::read_to_string(&file).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// True when no process is left in the group.
    pub fn is_empty(&self) -> bool {
        self.procs_files().iter().all(|f| {
            fs::read_to_string(f)
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        })
    }

    /// Removes the group's folders (once it is empty).
    pub fn remove(&self) {
        for dir in self.dirs() {
            let _ = fs::remove_dir(dir);
        }
    }

    /// True once every folder of the group is gone.
    fn is_removed(&self) -> bool {
        self.dirs().iter().all(|d| !d.exists())
    }

    /// Kills what is left in the group, waits (briefly) until it is empty, removes it.
    /// A group that cannot be removed yet (hundreds of processes can take longer than
    /// that to die) is retried in the background, with growing delays, for up to
    /// [`REMOVAL_RETRY_FOR`]; what is left then is swept at shutdown and at start.
    pub fn kill_and_remove(&self) {
        for _ in 0..20 {
            if self.is_empty() {
                break;
            }
            self.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        self.remove();
        if self.is_removed() {
            return;
        }
        let group = EnvCgroup {
            kind: self.kind.clone(),
            quota_us: self.quota_us,
        };
        let retried = std::thread::Builder::new()
            .name("shoal-cgroup-rm".into())
            .spawn(move || group.remove_in_background());
        if let Err(e) = retried {
            tracing::warn!(error = %e, "cannot retry removing an environment's cgroup");
        }
    }

    fn remove_in_background(self) {
        let began = std::time::Instant::now();
        let mut delay = REMOVAL_FIRST_DELAY;
        while began.elapsed() < REMOVAL_RETRY_FOR {
            std::thread::sleep(delay);
            self.kill_all();
            self.remove();
            if self.is_removed() {
                tracing::debug!(after = ?began.elapsed(), "an environment's cgroup is removed");
                return;
            }
            delay = (delay * 2).min(REMOVAL_MAX_DELAY);
        }
        tracing::warn!(dirs = ?self.dirs(), "an environment's cgroup could not be removed; it is swept at shutdown or the next start");
    }
}

/// Retrying the removal of a group that still had processes: first delay, longest delay,
/// and for how long in all.
const REMOVAL_FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(50);
const REMOVAL_MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
const REMOVAL_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);
