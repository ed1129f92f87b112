//! Spare sandboxes: sandbox inits started ahead of need, each with its namespaces made,
//! loopback up and its Runtime API and platform API listeners bound inside, waiting for an environment.
//!
//! The slow parts of a sandbox are moving its first process into its cgroups (the kernel
//! waits for an RCU grace period: up to ~15 ms here) and making its network namespace, and
//! neither depends on the function. So a few spares are kept ready, already in cgroups of
//! their own (pids limit set; memory and CPU limits come with the environment), and
//! handed out by [`SparePool::take`]. Where `/tmp` is disk-backed, each spare has also
//! mounted a `/tmp` of the default size (loop devices and ext4 take milliseconds too). A a background thread makes new ones as they are
//! taken. Spares for network mode `egress` (with the NAT helper attached) are kept too,
//! from the first time an environment needs one. A spare is never reused: it gets one environment, and it is gone with it. With
//! no spare ready, one is made on the spot.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cgroup::{Cgroups, EnvCgroup};
use super::init;
use super::network::{Egress, EgressLink};
use super::plan;
use super::tmp_disk::TmpDisks;
use crate::environment::sandbox::{BoundListeners, SandboxError};
use crate::function::NetworkMode;

/// How long a new sandbox init may take to make its namespaces.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A sandbox init with its namespaces made, waiting for an environment.
pub struct Spare {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// Its end of the control socket.
    pub control: UnixStream,
    /// The Runtime API and platform API listeners, bound inside its network namespace
    /// (once it is made).
    listeners: Option<BoundListeners>,
    /// Its own cgroup, which it is already in (taken by the environment).
    pub cgroup: Option<EnvCgroup>,
    /// Its folder (removed with it) and the size of the `/tmp` it mounted there, if any.
    folder: PathBuf,
    tmp_mb: Option<u32>,
    network: NetworkMode,
    /// The NAT helper of network mode `egress` (taken by the environment).
    pub egress: Option<EgressLink>,
}

impl Spare {
    /// Where its ready `/tmp` is mounted (in its own mount namespace), if it has one of
    /// `size_mb`.
    pub fn tmp_of(&self, size_mb: u32) -> Option<PathBuf> {
        (self.tmp_mb == Some(size_mb)).then(|| self.folder.join(TMP_DIR))
    }

    /// The image of its ready `/tmp`.
    pub fn tmp_image(&self) -> PathBuf {
        self.folder.join(TMP_IMAGE)
    }

    /// The process, its control socket, its listeners and its folder (to
    /// remove once the environment is gone), for the environment that takes them.
    pub fn into_parts(
        self,
    ) -> (
        tokio::process::Child,
        UnixStream,
        Option<BoundListeners>,
        PathBuf,
    ) {
        (self.child, self.control, self.listeners, self.folder)
    }

    /// Ends a spare that will have no environment, and removes its cgroup and folder.
    pub fn discard(mut self) {
        let _ = self.child.start_kill();
        if let Some(link) = self.egress.take() {
            link.stop();
        }
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.kill_and_remove();
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// In a spare's folder: the image of its `/tmp`, where it is mounted, and what the
/// egress helper printed.
const TMP_IMAGE: &str = "tmp.img";
const TMP_DIR: &str = "tmp";
const NETWORK_LOG: &str = "network.log";

/// How a spare is made.
pub struct SpareSettings {
    pub exe: PathBuf,
    /// How many spares are kept ready.
    pub size: usize,
    pub cgroups: Option<Cgroups>,
    pub pids_limit: u32,
    /// Makes their `/tmp` of `tmp_mb` (when disk-backed).
    pub tmp_disks: Option<Arc<TmpDisks>>,
    pub tmp_mb: u32,
    /// Where their folders go.
    pub folder: PathBuf,
    /// The helper of network mode `egress`, where there is one.
    pub egress: Option<Egress>,
}

pub struct SparePool {
    settings: SpareSettings,
    idle: Mutex<Vec<Spare>>,
    /// Whether spares for network mode `egress` are kept (once one was needed).
    egress_wanted: AtomicBool,
    refilling: AtomicBool,
    closed: AtomicBool,
    /// Where the background thread spawns processes (tokio's child reaper lives there).
    runtime: Option<tokio::runtime::Handle>,
}

fn setup<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> SandboxError {
    move |e| SandboxError::Setup(format!("{context}: {e}"))
}

impl SparePool {
    /// A pool keeping `settings.size` spares (none outside a tokio runtime).
    pub fn new(mut settings: SpareSettings) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if runtime.is_none() {
            settings.size = 0;
        }
        let pool = Arc::new(Self {
            settings,
            idle: Mutex::new(Vec::new()),
            egress_wanted: AtomicBool::new(false),
            refilling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            runtime,
        });
        pool.refill_in_background();
        pool
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ready spare for `network`, or a new one when none is.
    pub fn take(self: &Arc<Self>, network: NetworkMode) -> Result<Spare, SandboxError> {
        if network == NetworkMode::Egress {
            self.egress_wanted.store(true, Ordering::SeqCst);
        }
        let ready = loop {
            let spare = {
                let mut idle = self.idle();
                match idle.iter().rposition(|s| s.network == network) {
                    Some(at) => idle.remove(at),
                    None => break None,
                }
            };
            let mut spare = spare;
            // One that died while waiting (killed from outside) is dropped.
            if matches!(spare.child.try_wait(), Ok(None)) {
                break Some(spare);
            }
            spare.discard();
        };
        self.refill_in_background();
        match ready {
            Some(spare) => Ok(spare),
            None => self.spawn(network),
        }
    }

    /// The network mode that lacks spares most, if any does.
    fn wanting(&self) -> Option<NetworkMode> {
        let idle = self.idle();
        let count = |mode| idle.iter().filter(|s| s.network == mode).count();
        let mut modes = vec![NetworkMode::None];
        if self.egress_wanted.load(Ordering::SeqCst) && self.settings.egress.is_some() {
            modes.push(NetworkMode::Egress);
        }
        modes
            .into_iter()
            .filter(|&mode| count(mode) < self.settings.size)
            .min_by_key(|&mode| count(mode))
    }

    /// Ends every spare and makes no more (at shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.discard_idle();
    }

    fn discard_idle(&self) {
        let idle = std::mem::take(&mut *self.idle());
        for spare in idle {
            spare.discard();
        }
        if self.closed.load(Ordering::SeqCst) {
            let _ = std::fs::remove_dir(&self.settings.folder);
        }
    }

    fn refill_in_background(self: &Arc<Self>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        if self.settings.size == 0 || self.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("shoal-spares".into())
            .spawn(move || {
                let _context = runtime.enter();
                while !pool.closed.load(Ordering::SeqCst) {
                    let Some(network) = pool.wanting() else {
                        break;
                    };
                    match pool.spawn(network) {
                        Ok(spare) => pool.idle().push(spare),
                        Err(e) => {
                            tracing::warn!(error = %e, "making a spare sandbox failed");
                            break;
                        }
                    }
                }
                pool.refilling.store(false, Ordering::SeqCst);
                if pool.closed.load(Ordering::SeqCst) {
                    pool.discard_idle();
                }
            });
        if started.is_err() {
            self.refilling.store(false, Ordering::SeqCst);
        }
    }

    /// Starts a sandbox init in a cgroup of its own and waits until its namespaces are
    /// made; binds the Runtime API listener inside its network namespace.
    fn spawn(&self, network: NetworkMode) -> Result<Spare, SandboxError> {
        let settings = &self.settings;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let folder = settings.folder.join(&id);
        std::fs::create_dir_all(folder.join(TMP_DIR)).map_err(setup("creating its folder"))?;
        let cgroup = match &settings.cgroups {
            Some(cgroups) => match cgroups.create(&id, settings.pids_limit) {
                Ok(cgroup) => Some(cgroup),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&folder);
                    return Err(SandboxError::Setup(format!("creating the cgroup: {e}")));
                }
            },
            None => None,
        };
        let mut prepare = init::Prepare { tmp: None };
        let mut tmp_mb = None;
        if let Some(disks) = &settings.tmp_disks {
            let image = folder.join(TMP_IMAGE);
            match disks.make(&image, settings.tmp_mb) {
                Ok(()) => {
                    prepare.tmp = Some((image, folder.join(TMP_DIR)));
                    tmp_mb = Some(settings.tmp_mb);
                }
                Err(e) => tracing::warn!(error = %e, "a spare sandbox gets no /tmp ready"),
            }
        }
        let (mut ours, theirs) = UnixStream::pair().map_err(setup("control socket"))?;
        let request = serde_json::to_string(&prepare).map_err(setup("encoding the request"))?;
        writeln!(ours, "{request}").map_err(setup("control socket"))?;
        let child = tokio::process::Command::new(&settings.exe)
            .arg(init::ARG)
            .env_clear()
            // The init is short-lived and small: transparent huge pages for its allocator's
            // arenas only cost it the zeroing of 2 MB pages it never fills (about a tenth
            // of a burst's CPU). The function's processes get their own environment.
            .env("MIMALLOC_ALLOW_THP", "0")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut spare = match child {
            Ok(child) => Spare {
                pid: child.id().unwrap_or(0),
                child,
                control: ours,
                listeners: None,
                cgroup,
                folder,
                tmp_mb,
                network,
                egress: None,
            },
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    cgroup.remove();
                }
                let _ = std::fs::remove_dir_all(&folder);
                return Err(SandboxError::Setup(format!(
                    "starting the sandbox init: {e}"
                )));
            }
        };
        match ready(&mut spare, settings.egress.as_ref()) {
            Ok(()) => Ok(spare),
            Err(e) => {
                spare.discard();
                Err(e)
            }
        }
    }
}

/// Waits for the new sandbox init's namespaces, moves it into its cgroup, binds the
/// Runtime API and platform API listeners inside its network namespace and, for network mode `egress`,
/// attaches the NAT helper.
fn ready(spare: &mut Spare, egress: Option<&Egress>) -> Result<(), SandboxError> {
    if spare.pid == 0 {
        return Err(SandboxError::Setup(
            "the sandbox init exited at once".into(),
        ));
    }
    spare
        .control
        .set_read_timeout(Some(READY_TIMEOUT))
        .map_err(setup("control socket"))?;
    expect_reply(&spare.control, "N")?;
    if let Some(cgroup) = &spare.cgroup {
        cgroup
            .join(spare.pid)
            .map_err(setup("moving the sandbox into its cgroup"))?;
    }
    spare.listeners = Some(bind_in_namespace(spare.pid)?);
    if spare.network == NetworkMode::Egress {
        let egress = egress
            .ok_or_else(|| SandboxError::Setup("network mode egress is not available".into()))?;
        let log = spare.folder.join(NETWORK_LOG);
        spare.egress = Some(egress.attach(spare.pid, spare.cgroup.as_ref(), &log)?);
    }
    Ok(())
}

/// Reads the sandbox init's next reply: `expected`, or `E <why it failed>`.
pub fn expect_reply(control: &UnixStream, expected: &str) -> Result<(), SandboxError> {
    let mut line = String::new();
    BufReader::new(control)
        .read_line(&mut line)
        .map_err(setup("waiting for the sandbox"))?;
    match line.trim() {
        reply if reply == expected => Ok(()),
        reply => Err(SandboxError::Setup(
            reply
                .strip_prefix("E ")
                .unwrap_or("the sandbox init stopped")
                .to_string(),
        )),
    }
}

/// Binds the Runtime API and platform API listeners inside the network namespace of
/// process `pid` (non-blocking, for tokio).
fn bind_in_namespace(pid: u32) -> Result<BoundListeners, SandboxError> {
    std::thread::spawn(move || -> std::io::Result<BoundListeners> {
        let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The sockets belong to the namespace they were created in; this thread ends here.
        let bind = |addr: &str| {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(listener)
        };
        Ok(BoundListeners {
            runtime_api: bind(plan::RUNTIME_API_ADDR)?,
            platform_api: bind(plan::PLATFORM_API_ADDR)?,
        })
    })
    .join()
    .map_err(|_| SandboxError::Setup("the namespace thread panicked".into()))?
    .map_err(setup(
        "binding the Runtime API and platform API in the sandbox",
    ))
}
