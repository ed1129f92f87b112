//! Isolated environments: namespaces, a private root, cgroup limits, an unprivileged
//! user and a seccomp filter, through the [`Sandbox`] seam.
//!
//! [`NamespaceSandbox`] computes a [`plan::SandboxPlan`] per environment and starts the
//! sandbox init ([`init`], this binary re-executed). The Runtime API listener of the
//! environment is bound *inside* its network namespace (a short-lived thread `setns`-es
//! into it and binds `127.0.0.1:9001`), so a function can reach its own endpoint and no
//! other. Functions in network mode `egress` also get user-mode NAT to what the host
//! reaches ([`network`]). Where the host does not allow namespaces (not root, no user namespaces, no
//! cgroup filesystem) [`NamespaceSandbox::probe`] says so and the server falls back to the
//! unisolated [`super::sandbox::ProcessSandbox`] with a warning.

pub mod cgroup;
pub mod init;
pub mod network;
pub mod plan;
pub mod tmp_disk;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cgroup::{Cgroups, EnvCgroup};
use network::{Egress, EgressLink};
use plan::{Mount, SandboxPlan};
use tmp_disk::TmpDisks;

use crate::function::NetworkMode;

use super::sandbox::{LaunchSpec, Layout, Sandbox, SandboxError, StartedTree, TreeControl};

/// The unprivileged user functions run as (`nobody`).
pub const SANDBOX_UID: u32 = 65534;
pub const SANDBOX_GID: u32 = 65534;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What backs an environment's `/tmp` (`--tmp-storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpStorage {
    /// Disk where the host allows it, else memory.
    Auto,
    Disk,
    Memory,
}

impl TmpStorage {
    pub fn parse(value: &str) -> Self {
        match value {
            "disk" => Self::Disk,
            "memory" => Self::Memory,
            _ => Self::Auto,
        }
    }
}

pub struct NamespaceSandbox {
    exe: PathBuf,
    cgroups: Option<Cgroups>,
    /// Host folders every environment sees read-only at the same path (interpreters,
    /// and what the operator exposes).
    shared_paths: Vec<PathBuf>,
    pids_limit: u32,
    /// The egress helper, or why there is none.
    egress: Result<Egress, String>,
    /// Makes disk-backed `/tmp`s; without it `/tmp` is a tmpfs.
    tmp_disks: Option<TmpDisks>,
}

impl NamespaceSandbox {
    /// Checks that this host lets Shoal create namespaces; the error says why not.
    /// `instance` names this server's cgroups (one server per data directory);
    /// `egress_helper` is the `slirp4netns` to use for network mode `egress`; `scratch`
    /// a folder of the server's for `/tmp` templates and probe files.
    pub fn probe(
        shared_paths: Vec<PathBuf>,
        pids_limit: u32,
        instance: &str,
        egress_helper: &Path,
        tmp_storage: TmpStorage,
        scratch: &Path,
    ) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".into());
        }
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let output = std::process::Command::new(&exe)
            .args([init::ARG, init::PROBE])
            .env_clear()
            .output()
            .map_err(|e| format!("cannot run the sandbox probe: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "namespaces are not available: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let cgroups = Cgroups::detect(instance);
        match &cgroups {
            Some(c) => tracing::info!(
                cgroups = c.describe(),
                "environments get memory, CPU and pids limits"
            ),
            None => tracing::warn!(
                "no usable cgroup hierarchy: memory, CPU and pids limits are not enforced"
            ),
        }
        let tmp_disks = match tmp_storage {
            TmpStorage::Memory => None,
            wanted => match TmpDisks::probe(&exe, &[init::ARG, init::PROBE_TMP], scratch) {
                Ok(disks) => Some(disks),
                Err(reason) if wanted == TmpStorage::Auto => {
                    tracing::warn!(%reason, "/tmp of environments is memory-backed: it counts against their memory size");
                    None
                }
                Err(reason) => return Err(format!("a disk-backed /tmp is not possible: {reason}")),
            },
        };
        let egress = Egress::probe(egress_helper);
        if let Err(reason) = &egress {
            tracing::warn!(%reason, "functions tagged shoal:network=egress cannot be given network egress");
        }
        Ok(Self {
            exe,
            cgroups,
            shared_paths,
            pids_limit,
            egress,
            tmp_disks,
        })
    }

    fn plan(&self, spec: &LaunchSpec, cgroup: Option<&EnvCgroup>) -> SandboxPlan {
        let read_only = |path: &PathBuf| Mount {
            source: path.clone(),
            target: path.clone(),
            writable: false,
        };
        let mut mounts: Vec<Mount> = plan::SYSTEM_PATHS
            .iter()
            .map(|p| read_only(&PathBuf::from(p)))
            .collect();
        // A shared folder inside a system folder (node under /usr) is already visible.
        mounts.extend(
            self.shared_paths
                .iter()
                .filter(|p| !plan::SYSTEM_PATHS.iter().any(|s| p.starts_with(s)))
                .map(read_only),
        );
        mounts.push(Mount {
            source: spec.host_task_root.clone(),
            target: plan::TASK_ROOT.into(),
            writable: false,
        });
        mounts.push(Mount {
            source: spec.host_runtimes_root.clone(),
            target: plan::RUNTIMES_ROOT.into(),
            writable: false,
        });
        if spec.network == NetworkMode::Egress {
            mounts.push(Mount {
                source: spec.env_dir.join(RESOLV_CONF),
                target: "/etc/resolv.conf".into(),
                writable: false,
            });
        }
        SandboxPlan {
            root: spec.env_dir.join("root"),
            mounts,
            tmp_size_mb: spec.ephemeral_mb,
            tmp_image: self
                .tmp_disks
                .as_ref()
                .map(|_| spec.env_dir.join(TMP_IMAGE)),
            hostname: "sandbox".into(),
            uid: SANDBOX_UID,
            gid: SANDBOX_GID,
            cgroup_procs: cgroup.map(EnvCgroup::procs_files).unwrap_or_default(),
            cwd: plan::TASK_ROOT.into(),
            program: spec.program.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            seccomp: true,
        }
    }
}

/// In an environment's folder: the image of its `/tmp` (when disk-backed).
const TMP_IMAGE: &str = "tmp.img";
/// In an egress environment's folder: the resolver configuration it sees.
const RESOLV_CONF: &str = "resolv.conf";
/// In an egress environment's folder: what the egress helper printed.
const NETWORK_LOG: &str = "network.log";

fn setup<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> SandboxError {
    move |e| SandboxError::Setup(format!("{context}: {e}"))
}

/// Binds the Runtime API listener inside the network namespace of process `pid`.
fn bind_in_namespace(pid: u32) -> Result<TcpListener, SandboxError> {
    std::thread::spawn(move || -> std::io::Result<TcpListener> {
        let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The socket belongs to the namespace it was created in; this thread ends here.
        TcpListener::bind(plan::RUNTIME_API_ADDR)
    })
    .join()
    .map_err(|_| SandboxError::Setup("the namespace thread panicked".into()))?
    .map_err(setup("binding the Runtime API in the sandbox"))
}

impl Sandbox for NamespaceSandbox {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn egress_unavailable(&self) -> Option<String> {
        self.egress.as_ref().err().cloned()
    }

    fn shutdown(&self) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_instance();
        }
        if let Some(disks) = &self.tmp_disks {
            disks.remove_templates();
        }
    }

    fn layout(&self, _host: &Layout) -> Layout {
        Layout {
            task_root: plan::TASK_ROOT.into(),
            runtimes_root: plan::RUNTIMES_ROOT.into(),
            tmp: plan::TMP.into(),
            runtime_api: Some(plan::RUNTIME_API_ADDR.into()),
        }
    }

    fn start(&self, spec: &LaunchSpec, output: OwnedFd) -> Result<StartedTree, SandboxError> {
        let cgroup = match &self.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(
                        &spec.id,
                        cgroup::Limits {
                            memory_mb: spec.memory_mb,
                            pids: self.pids_limit,
                        },
                    )
                    .map_err(setup("creating the cgroup"))?,
            ),
            None => None,
        };
        let egress = match spec.network {
            NetworkMode::None => None,
            NetworkMode::Egress => Some(self.egress.as_ref().map_err(|why| {
                SandboxError::Setup(format!("network mode egress is not available: {why}"))
            })?),
        };
        let plan = self.plan(spec, cgroup.as_ref());
        std::fs::create_dir_all(&plan.root).map_err(setup("creating the root folder"))?;
        if let (Some(disks), Some(image)) = (&self.tmp_disks, &plan.tmp_image) {
            disks
                .make(image, spec.ephemeral_mb)
                .map_err(setup("making /tmp"))?;
        }
        if egress.is_some() {
            std::fs::write(spec.env_dir.join(RESOLV_CONF), network::resolv_conf())
                .map_err(setup("writing resolv.conf"))?;
        }
        let (mut ours, theirs) = UnixStream::pair().map_err(setup("control socket"))?;
        let stderr = output.try_clone().map_err(setup("output pipe"))?;
        let child = tokio::process::Command::new(&self.exe)
            .arg(init::ARG)
            .env_clear()
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(setup("starting the sandbox init"))?;
        let pid = child
            .id()
            .ok_or_else(|| SandboxError::Setup("the sandbox init exited at once".into()))?;
        let tree = Arc::new(IsolatedTree {
            pgid: pid as i32,
            cgroup,
            egress: Mutex::new(None),
        });
        let mut handshake = || -> Result<TcpListener, SandboxError> {
            ours.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
                .map_err(setup("control socket"))?;
            let json = serde_json::to_string(&plan).map_err(setup("encoding the plan"))?;
            writeln!(ours, "{json}").map_err(setup("sending the plan"))?;
            let mut reader = BufReader::new(ours.try_clone().map_err(setup("control socket"))?);
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(setup("waiting for the sandbox"))?;
            match line.trim() {
                "N" => {}
                other => {
                    return Err(SandboxError::Setup(
                        other
                            .strip_prefix("E ")
                            .unwrap_or("the sandbox init stopped")
                            .to_string(),
                    ));
                }
            }
            let listener = bind_in_namespace(pid)?;
            listener
                .set_nonblocking(true)
                .map_err(setup("Runtime API listener"))?;
            if let Some(egress) = egress {
                let link =
                    egress.attach(pid, &plan.cgroup_procs, &spec.env_dir.join(NETWORK_LOG))?;
                *tree.egress.lock().unwrap_or_else(|p| p.into_inner()) = Some(link);
            }
            writeln!(ours, "G").map_err(setup("confirming to the sandbox"))?;
            Ok(listener)
        };
        match handshake() {
            Ok(listener) => Ok(StartedTree {
                child,
                control: tree,
                runtime_api: Some(listener),
            }),
            Err(e) => {
                tree.kill();
                tree.cleanup();
                Err(e)
            }
        }
    }
}

/// A started sandbox: its process group, cgroup and egress helper.
struct IsolatedTree {
    pgid: i32,
    cgroup: Option<EnvCgroup>,
    egress: Mutex<Option<EgressLink>>,
}

impl IsolatedTree {
    fn egress(&self) -> std::sync::MutexGuard<'_, Option<EgressLink>> {
        self.egress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TreeControl for IsolatedTree {
    fn kill(&self) {
        use nix::sys::signal::{Signal, killpg};
        let _ = killpg(nix::unistd::Pid::from_raw(self.pgid), Signal::SIGKILL);
        if let Some(link) = self.egress().as_ref() {
            link.kill();
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
    }

    fn terminate(&self) {
        use nix::sys::signal::{Signal, killpg};
        let _ = killpg(nix::unistd::Pid::from_raw(self.pgid), Signal::SIGTERM);
    }

    fn peak_memory_mb(&self) -> u64 {
        self.cgroup
            .as_ref()
            .map(EnvCgroup::peak_memory_mb)
            .unwrap_or(0)
    }

    fn after_init(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.apply_cpu_quota();
        }
    }

    fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(EnvCgroup::oom_killed)
    }

    fn cleanup(&self) {
        if let Some(link) = self.egress().take() {
            link.stop();
        }
        if let Some(cgroup) = &self.cgroup {
            for _ in 0..20 {
                if cgroup.is_empty() {
                    break;
                }
                cgroup.kill_all();
                std::thread::sleep(Duration::from_millis(25));
            }
            cgroup.remove();
        }
    }
}
