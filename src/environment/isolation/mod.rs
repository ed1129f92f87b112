//! Isolated environments: namespaces, a private root, cgroup limits, an unprivileged
//! user and a seccomp filter, through the [`Sandbox`] seam.
//!
//! [`NamespaceSandbox`] takes a ready sandbox init from the [`spares`] pool (this binary
//! re-executed, [`init`]: namespaces made, in cgroups of its own, the Runtime API listener
//! bound *inside* its network namespace so that a function reaches its own endpoint and
//! no other), gives it the environment's memory limit, output pipe and
//! [`plan::SandboxPlan`], and hands the tree to the environment. `/tmp` is an ext4 image
//! of the environment's own ([`tmp_disk`]); functions in network mode `egress` also get
//! user-mode NAT to what the host reaches ([`network`]). Where the host does not allow
//! namespaces (not root, no cgroup filesystem) [`NamespaceSandbox::probe`] says so and
//! the server falls back to the unisolated [`super::sandbox::ProcessSandbox`] with a
//! warning.

pub mod cgroup;
pub mod init;
pub mod network;
pub mod plan;
pub mod spares;
pub mod tmp_disk;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cgroup::{Cgroups, EnvCgroup};
use network::{Egress, EgressLink};
use plan::{Mount, SandboxPlan, Tmp};
use spares::{Spare, SparePool, SpareSettings};
use tmp_disk::TmpDisks;

use crate::disk::{DiskBudget, TmpReservation};
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

/// What the server asks of its namespace sandbox.
#[derive(Debug, Clone)]
pub struct IsolationSettings {
    /// Host folders every environment sees read-only at the same path (interpreters,
    /// and what the operator exposes).
    pub shared_paths: Vec<PathBuf>,
    pub pids_limit: u32,
    /// Names this server's cgroups (one server per data directory).
    pub instance: String,
    /// The `slirp4netns` of network mode `egress`.
    pub egress_helper: PathBuf,
    pub tmp_storage: TmpStorage,
    /// A folder of the server's for `/tmp` templates and probe files.
    pub scratch: PathBuf,
    /// Sandboxes kept ready (namespaces made) for the next environments.
    pub spares: usize,
    /// The data disk's budget, which promises each environment its disk-backed `/tmp`.
    pub disk: Option<Arc<DiskBudget>>,
}

pub struct NamespaceSandbox {
    cgroups: Option<Cgroups>,
    /// Host folders every environment sees read-only at the same path (interpreters,
    /// and what the operator exposes).
    shared_paths: Vec<PathBuf>,
    /// The egress helper, or why there is none.
    egress: Result<Egress, String>,
    /// Makes disk-backed `/tmp`s; without it `/tmp` is a tmpfs.
    tmp_disks: Option<Arc<TmpDisks>>,
    /// Promises each environment the whole size of its `/tmp` image.
    disk: Option<Arc<DiskBudget>>,
    spares: Arc<SparePool>,
}

impl NamespaceSandbox {
    /// Checks that this host lets Shoal create namespaces; the error says why not.
    pub fn probe(settings: IsolationSettings) -> Result<Self, String> {
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
        let cgroups = Cgroups::detect(&settings.instance);
        match &cgroups {
            Some(c) => tracing::info!(
                cgroups = c.describe(),
                "environments get memory, CPU and pids limits"
            ),
            None => tracing::warn!(
                "no usable cgroup hierarchy: memory, CPU and pids limits are not enforced"
            ),
        }
        let tmp_disks = match settings.tmp_storage {
            TmpStorage::Memory => None,
            wanted => match TmpDisks::probe(&exe, &[init::ARG, init::PROBE_TMP], &settings.scratch)
            {
                Ok(disks) => Some(Arc::new(disks)),
                Err(reason) if wanted == TmpStorage::Auto => {
                    tracing::warn!(%reason, "/tmp of environments is memory-backed: it counts against their memory size");
                    None
                }
                Err(reason) => return Err(format!("a disk-backed /tmp is not possible: {reason}")),
            },
        };
        let egress = Egress::probe(&settings.egress_helper);
        if let Err(reason) = &egress {
            tracing::warn!(%reason, "functions tagged shoal:network=egress cannot be given network egress");
        }
        Ok(Self {
            spares: SparePool::new(SpareSettings {
                exe,
                size: settings.spares,
                cgroups: cgroups.clone(),
                pids_limit: settings.pids_limit,
                tmp_disks: tmp_disks.clone(),
                tmp_mb: crate::function::limits::EPHEMERAL_MIN,
                folder: settings.scratch.join(".spares"),
                egress: egress.as_ref().ok().cloned(),
            }),
            cgroups,
            shared_paths: settings.shared_paths,
            egress,
            tmp_disks,
            disk: settings.disk,
        })
    }

    /// Promises `/tmp` of `size_mb` (its image at `image`) to an environment.
    fn reserve_tmp(
        &self,
        image: PathBuf,
        size_mb: u32,
    ) -> Result<Option<TmpReservation>, SandboxError> {
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        disk.reserve_tmp(image, tmp_disk::image_bytes(size_mb), size_mb)
            .map(Some)
            .map_err(|e| SandboxError::DiskFull(e.to_string()))
    }

    fn plan(&self, spec: &LaunchSpec, tmp: Tmp) -> SandboxPlan {
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
        if let Some(opt) = &spec.host_opt {
            mounts.push(Mount {
                source: opt.clone(),
                target: plan::OPT.into(),
                writable: false,
            });
        }
        // The Node SDK, where Node's package lookup from /var/task finds it.
        if let Some(modules) = crate::sdk::node_modules(&spec.host_runtimes_root) {
            mounts.push(Mount {
                source: modules,
                target: plan::NODE_SDK.into(),
                writable: false,
            });
        }
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
            tmp,
            hostname: "sandbox".into(),
            uid: SANDBOX_UID,
            gid: SANDBOX_GID,
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

fn setup<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> SandboxError {
    move |e| SandboxError::Setup(format!("{context}: {e}"))
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
        self.spares.close();
    }

    fn layout(&self, host: &Layout) -> Layout {
        Layout {
            task_root: plan::TASK_ROOT.into(),
            runtimes_root: plan::RUNTIMES_ROOT.into(),
            tmp: plan::TMP.into(),
            runtime_api: Some(plan::RUNTIME_API_ADDR.into()),
            platform_api: Some(plan::PLATFORM_API_ADDR.into()),
            opt: host.opt.as_ref().map(|_| plan::OPT.into()),
        }
    }

    fn start(&self, spec: &LaunchSpec, output: OwnedFd) -> Result<StartedTree, SandboxError> {
        let began = std::time::Instant::now();
        if let (NetworkMode::Egress, Err(why)) = (spec.network, &self.egress) {
            return Err(SandboxError::Setup(format!(
                "network mode egress is not available: {why}"
            )));
        }
        let mut spare = self.spares.take(spec.network)?;
        let taken = began.elapsed();
        let mut reservation = None;
        let mut prepare = |spare: &mut Spare| -> Result<SandboxPlan, SandboxError> {
            if let Some(cgroup) = spare.cgroup.as_mut() {
                cgroup
                    .set_memory(spec.memory_mb)
                    .map_err(setup("setting the memory limit"))?;
            }
            // The whole size of a disk-backed /tmp is promised to this environment before
            // it gets one (spares hold no promise: nothing writes to their empty images).
            let tmp = match (spare.tmp_of(spec.ephemeral_mb), &self.tmp_disks) {
                (Some(ready), _) => {
                    reservation = self.reserve_tmp(spare.tmp_image(), spec.ephemeral_mb)?;
                    Tmp::Mounted(ready)
                }
                (None, Some(disks)) => {
                    let image = spec.env_dir.join(TMP_IMAGE);
                    reservation = self.reserve_tmp(image.clone(), spec.ephemeral_mb)?;
                    disks
                        .make(&image, spec.ephemeral_mb)
                        .map_err(setup("making /tmp"))?;
                    Tmp::Image(image)
                }
                (None, None) => Tmp::Memory {
                    size_mb: spec.ephemeral_mb,
                },
            };
            let plan = self.plan(spec, tmp);
            std::fs::create_dir_all(&plan.root).map_err(setup("creating the root folder"))?;
            if spec.network == NetworkMode::Egress {
                std::fs::write(spec.env_dir.join(RESOLV_CONF), network::resolv_conf())
                    .map_err(setup("writing resolv.conf"))?;
            }
            Ok(plan)
        };
        let plan = match prepare(&mut spare) {
            Ok(plan) => plan,
            Err(e) => {
                spare.discard();
                return Err(e);
            }
        };
        let prepared = began.elapsed();
        let pid = spare.pid;
        let cgroup = spare.cgroup.take();
        let egress = spare.egress.take();
        let (child, ours, listeners, folder) = spare.into_parts();
        let tree = Arc::new(IsolatedTree {
            pgid: pid as i32,
            cgroup,
            egress: Mutex::new(egress),
            folder,
            tmp_reservation: Mutex::new(reservation),
            lifeline: Mutex::new(None),
        });
        let handshake = |mut ours: UnixStream| -> Result<UnixStream, SandboxError> {
            ours.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
                .map_err(setup("control socket"))?;
            send_fd(&ours, output)?;
            let json = serde_json::to_string(&plan).map_err(setup("encoding the plan"))?;
            writeln!(ours, "{json}").map_err(setup("sending the plan"))?;
            spares::expect_reply(&ours, "P")?;
            writeln!(ours, "G").map_err(setup("confirming to the sandbox"))?;
            let micros = |d: Duration| d.as_micros() as u64;
            tracing::debug!(
                env = %spec.id,
                take_us = micros(taken),
                prepare_us = micros(prepared - taken),
                handshake_us = micros(began.elapsed() - prepared),
                "sandbox started"
            );
            Ok(ours)
        };
        match handshake(ours) {
            Ok(ours) => {
                *tree.lifeline() = Some(ours);
                Ok(StartedTree {
                    child,
                    control: tree,
                    listeners,
                })
            }
            Err(e) => {
                tree.kill();
                tree.cleanup();
                Err(e)
            }
        }
    }
}

/// Passes `fd` over the control socket (with a one-byte message).
fn send_fd(control: &UnixStream, fd: OwnedFd) -> Result<(), SandboxError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let raw = [fd.as_raw_fd()];
    sendmsg::<()>(
        control.as_raw_fd(),
        &[std::io::IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map_err(setup("passing the output pipe"))?;
    Ok(())
}

/// A started sandbox: its process group, cgroup, egress helper and the folder it came
/// with (a spare's).
struct IsolatedTree {
    pgid: i32,
    cgroup: Option<EnvCgroup>,
    egress: Mutex<Option<EgressLink>>,
    folder: PathBuf,
    /// The disk space promised to its `/tmp`, released once it is gone.
    tmp_reservation: Mutex<Option<TmpReservation>>,
    /// The server's end of the control socket, held for the environment's life: the
    /// sandbox init kills the environment when it closes (also when the server dies).
    lifeline: Mutex<Option<UnixStream>>,
}

impl IsolatedTree {
    fn egress(&self) -> std::sync::MutexGuard<'_, Option<EgressLink>> {
        self.egress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lifeline(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        self.lifeline.lock().unwrap_or_else(|p| p.into_inner())
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
        self.lifeline().take();
        if let Some(link) = self.egress().take() {
            link.stop();
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_and_remove();
        }
        let _ = std::fs::remove_dir_all(&self.folder);
        // The promise ends when the image is gone (the environment's folder, removed
        // right after this, holds a /tmp image not taken from a spare).
        self.tmp_reservation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}
