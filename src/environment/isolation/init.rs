//! The sandbox init: this binary re-executed (`shoal __sandbox-init`) as the first
//! process of an environment. It carries out a [`SandboxPlan`] in three processes:
//!
//! 1. **A** (in the host's PID namespace) unshares the mount, PID, IPC, UTS and network
//!    namespaces, brings up loopback, compiles the seccomp policy, mounts a `/tmp` image
//!    when asked to (the socket's first message) and tells the server (over the control socket on
//!    stdin, `N`) that it is ready. It may wait like this, as a spare, until the server
//!    gives it an environment: the environment's output pipe (passed over the socket),
//!    then its plan, which it acknowledges (`P`). (The server has moved it into the
//!    environment's cgroups meanwhile.) It waits until the server has set up what lives
//!    outside (`G`), then forks B and mirrors B's exit (signal included) as its own.
//! 2. **B** is PID 1 of the new namespace: it assembles the new root (system folders and
//!    the function's code read-only, a private size-limited `/tmp`, its own `/proc`, a
//!    minimal `/dev`), pivots into it, forks C and reaps every orphan until C exits.
//! 3. **C** empties its capability bounding set, drops to an unprivileged user, sets
//!    `no_new_privs`, installs the seccomp filters (`resources/seccomp.json`) and executes
//!    the runtime.
//!
//! The process is single-threaded, which is what makes `fork` sound here.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::plan::{SandboxPlan, Tmp};

/// The first argument that selects this mode.
pub const ARG: &str = "__sandbox-init";
/// Second argument: only check that namespaces can be created, then exit.
pub const PROBE: &str = "--probe";
/// Second argument: only check that the ext4 image given next can be loop-mounted.
pub const PROBE_TMP: &str = "--probe-tmp";

const SECCOMP_POLICY: &str = include_str!("../../../resources/seccomp.json");

type Result<T> = std::result::Result<T, String>;

fn err<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// Entry point; returns the process's exit code.
pub fn main(args: &[String]) -> i32 {
    if let Some(at) = args.iter().position(|a| a == PROBE_TMP) {
        let image = args.get(at + 1).map(Path::new);
        return match image
            .ok_or_else(|| "no image given".to_string())
            .and_then(probe_tmp)
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        };
    }
    if args.iter().any(|a| a == PROBE) {
        return match probe() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        };
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal sandbox: {e}");
            127
        }
    }
}

const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWNET);

/// Stops mount events from propagating between this namespace and the host's.
fn make_mounts_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(err("making mounts private"))
}

fn probe() -> Result<()> {
    unshare(NAMESPACES).map_err(err("unshare"))?;
    make_mounts_private()?;
    loopback_up()
}

/// Loop-mounts `image` in a mount namespace of its own (gone when this process exits).
fn probe_tmp(image: &Path) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(err("unshare"))?;
    make_mounts_private()?;
    let target = image.with_extension("mnt");
    fs::create_dir_all(&target).map_err(err("creating the probe mount point"))?;
    let result = super::tmp_disk::mount(image, &target);
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    let _ = fs::remove_dir(&target);
    result
}

/// The first message of the control socket: what to make ahead of an environment (a
/// `/tmp` image to mount, and where). Not in the arguments, which the function sees.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Prepare {
    pub tmp: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

fn run() -> Result<i32> {
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(err("control socket"))?;
    let mut control = UnixStream::from(stdin);
    // Nothing else is sent before this process answers: reading a line reads no further.
    let mut first = String::new();
    BufReader::new(&control)
        .read_line(&mut first)
        .map_err(err("control socket"))?;
    let prepare: Prepare = serde_json::from_str(&first).map_err(err("parsing the request"))?;
    let prepared = unshare(NAMESPACES)
        .map_err(err("unshare"))
        .and_then(|()| make_mounts_private())
        .and_then(|()| match &prepare.tmp {
            Some((image, at)) => super::tmp_disk::mount(image, at),
            None => Ok(()),
        })
        .and_then(|()| loopback_up())
        .and_then(|()| compile_seccomp());
    let filters = match prepared {
        Ok(filters) => filters,
        Err(e) => {
            let _ = writeln!(control, "E {e}");
            return Err(e);
        }
    };
    writeln!(control, "N").map_err(err("control socket"))?;

    // Given an environment: its output first (as stdout and stderr from now on)...
    let output = receive_fd(&control)?;
    for target in [1, 2] {
        nix::unistd::dup2(output.as_raw_fd(), target).map_err(err("output"))?;
    }
    drop(output);
    // ...then its plan.
    let mut reader = BufReader::new(control.try_clone().map_err(err("control socket"))?);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(err("reading the plan"))?;
    let plan: SandboxPlan = serde_json::from_str(&line).map_err(err("parsing the plan"))?;
    writeln!(control, "P").map_err(err("control socket"))?;
    line.clear();
    reader.read_line(&mut line).map_err(err("control socket"))?;
    if line.trim() != "G" {
        return Err("the server did not confirm the environment".into());
    }
    let devnull = fs::File::open("/dev/null").map_err(err("/dev/null"))?;
    nix::unistd::dup2(devnull.as_raw_fd(), 0).map_err(err("stdin"))?;
    // The control socket stays open: the server never writes to it again, so it turns
    // readable (end of file) only when the server closes it or dies, and then the
    // environment ends with it.
    drop((reader, devnull));
    // B learns that A is gone by PR_SET_PDEATHSIG; this pipe (A holds the only write
    // end) closes the race of A dying before B has asked for it.
    let (parent_alive, parent_alive_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(err("pipe"))?;

    // SIGTERM reaches the runtime directly (same process group); here it stays pending
    // so that this process outlives the runtime and reports how it ended.
    let mut terminating = SigSet::empty();
    terminating.add(Signal::SIGTERM);
    terminating.add(Signal::SIGINT);
    terminating
        .thread_block()
        .map_err(err("blocking signals"))?;

    match fork()? {
        ForkResult::Child => {
            drop((control, parent_alive_write));
            if let Err(e) = die_with_parent(parent_alive) {
                eprintln!("shoal sandbox: {e}");
                std::process::exit(126);
            }
            std::process::exit(pid1(&plan, &filters))
        }
        ForkResult::Parent { child } => {
            drop(parent_alive);
            let code = mirror_exit(child, &control);
            drop(parent_alive_write);
            Ok(code)
        }
    }
}

/// Asks for SIGKILL when the parent (A) dies, and exits if it already has: `parent_alive`
/// reports a hang-up once the parent's write end is closed.
#[allow(unsafe_code)]
fn die_with_parent(parent_alive: std::os::fd::OwnedFd) -> Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    } < 0
    {
        return Err(format!(
            "PR_SET_PDEATHSIG: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut fds = [PollFd::new(parent_alive.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::ZERO).map_err(err("poll"))?;
    if ready > 0 {
        // The parent is gone: nobody would report this environment's end.
        std::process::exit(137);
    }
    Ok(())
}

/// A descriptor that turns readable when process `pid` (a child) exits.
#[allow(unsafe_code)]
fn pidfd_open(pid: Pid) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a non-negative result is a descriptor this process now owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[allow(unsafe_code)]
fn fork() -> Result<ForkResult> {
    // SAFETY: this process is single-threaded (no thread is ever started in sandbox
    // init mode), so the child may run arbitrary code after fork.
    unsafe { nix::unistd::fork() }.map_err(err("fork"))
}

/// Receives one file descriptor sent over the control socket (with a one-byte message).
fn receive_fd(control: &UnixStream) -> Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{FromRawFd, RawFd};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(err("waiting for an environment"))?;
    for cmsg in message.cmsgs().map_err(err("reading the output pipe"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for this process.
            #[allow(unsafe_code)]
            return Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
    }
    Err("the server closed the control socket without an environment".into())
}

/// Brings up `lo` in the new network namespace (it starts down, without 127.0.0.1).
#[allow(unsafe_code)]
fn loopback_up() -> Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err("socket"))?;
    // SAFETY: ifreq is plain old data, for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS writes the flags into `req`, a valid ifreq living across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(format!(
            "reading lo flags: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `ifru_flags` is the union member SIOCGIFFLAGS just filled.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS only reads `req`, a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(format!(
            "bringing lo up: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Waits for B and ends the same way: the same exit code, or the same signal. When the
/// control socket turns readable first (the server closed it, or died), kills B, which
/// as PID 1 of the namespace takes every process of the environment with it.
fn mirror_exit(child: Pid, control: &UnixStream) -> i32 {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    if let Some(exited) = pidfd_open(child) {
        loop {
            let mut fds = [
                PollFd::new(exited.as_fd(), PollFlags::POLLIN),
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[0]) {
                break;
            }
            if ready(&fds[1]) {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                break;
            }
        }
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                if (129..=192).contains(&code)
                    && let Ok(signal) = Signal::try_from(code - 128)
                {
                    let _ = SigSet::all().thread_unblock();
                    let _ = nix::sys::signal::raise(signal);
                }
                return code;
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

/// PID 1 of the environment: builds the root, runs the runtime, reaps orphans.
fn pid1(plan: &SandboxPlan, filters: &Filters) -> i32 {
    if let Err(e) = build_root(plan) {
        eprintln!("shoal sandbox: {e}");
        return 126;
    }
    let _ = nix::unistd::sethostname(&plan.hostname);
    let runtime = match fork() {
        Ok(ForkResult::Child) => {
            let e = exec_runtime(plan, filters);
            eprintln!("shoal sandbox: {e}");
            std::process::exit(127);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            eprintln!("shoal sandbox: {e}");
            return 126;
        }
    };
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == runtime => {
                return 128 + signal as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn bind(source: &Path, target: &Path, writable: bool) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(&format!("binding {}", source.display())))?;
    if !writable {
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(err(&format!("making {} read-only", target.display())))?;
    }
    Ok(())
}

fn inside(root: &Path, path: &Path) -> std::path::PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Where a file mount over `target` (under `root`) lands: a link is followed inside
/// `root` (a host's `/etc/resolv.conf` is often one), a file already there (in a
/// read-only folder mounted before) is mounted over, and a missing one is created.
fn file_mount_point(root: &Path, mut target: std::path::PathBuf) -> Result<std::path::PathBuf> {
    for _ in 0..8 {
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&target).map_err(err("reading a link"))?;
                let base = target.parent().unwrap_or(root).to_path_buf();
                let joined = if link.is_absolute() {
                    link
                } else {
                    Path::new("/")
                        .join(base.strip_prefix(root).unwrap_or(Path::new("")))
                        .join(link)
                };
                target = inside(root, &normalize(&joined));
            }
            Ok(_) => return Ok(target),
            Err(_) => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(err("creating mount points"))?;
                }
                fs::File::create(&target).map_err(err("creating mount points"))?;
                return Ok(target);
            }
        }
    }
    Err(format!("too many links at {}", target.display()))
}

/// Resolves `.` and `..` in an absolute path without leaving `/`.
fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn build_root(plan: &SandboxPlan) -> Result<()> {
    let root = &plan.root;
    make_mounts_private()?;
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=4m,mode=755"),
    )
    .map_err(err("mounting the root"))?;
    // The private /tmp first, so that exposed folders under /tmp land on top of it.
    let tmp = inside(root, Path::new(super::plan::TMP));
    fs::create_dir_all(&tmp).map_err(err("creating /tmp"))?;
    match &plan.tmp {
        Tmp::Memory { size_mb } => mount(
            Some("tmpfs"),
            &tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={size_mb}m,mode=1777").as_str()),
        )
        .map_err(err("mounting /tmp"))?,
        Tmp::Image(image) => super::tmp_disk::mount(image, &tmp)?,
        Tmp::Mounted(at) => bind(at, &tmp, true)?,
    }
    for m in &plan.mounts {
        let Ok(meta) = fs::symlink_metadata(&m.source) else {
            continue;
        };
        let target = inside(root, &m.target);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(err("creating mount points"))?;
        }
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&m.source).map_err(err("reading a link"))?;
            std::os::unix::fs::symlink(link, &target).map_err(err("creating a link"))?;
            continue;
        }
        let target = if meta.is_dir() {
            fs::create_dir_all(&target).map_err(err("creating mount points"))?;
            target
        } else {
            file_mount_point(root, target)?
        };
        bind(&m.source, &target, m.writable)?;
    }
    let proc = inside(root, Path::new("/proc"));
    fs::create_dir_all(&proc).map_err(err("creating /proc"))?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(err("mounting /proc"))?;
    let dev = inside(root, Path::new("/dev"));
    fs::create_dir_all(&dev).map_err(err("creating /dev"))?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=755"),
    )
    .map_err(err("mounting /dev"))?;
    for node in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(node);
        fs::File::create(&target).map_err(err("creating /dev"))?;
        bind(&Path::new("/dev").join(node), &target, true)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(err("creating /dev links"))?;
    }
    let old = root.join(".old-root");
    fs::create_dir_all(&old).map_err(err("creating the old root"))?;
    nix::unistd::pivot_root(root, &old).map_err(err("pivot_root"))?;
    nix::unistd::chdir("/").map_err(err("chdir /"))?;
    umount2("/.old-root", MntFlags::MNT_DETACH).map_err(err("detaching the old root"))?;
    fs::remove_dir("/.old-root").map_err(err("removing the old root"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(err("making / read-only"))?;
    Ok(())
}

/// The seccomp filters of the policy, in the order they are installed.
type Filters = Vec<seccompiler::BpfProgram>;

/// Compiles the policy (done while the sandbox waits for an environment, off the path of
/// a cold start).
fn compile_seccomp() -> Result<Filters> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp does not know this architecture: {e:?}"))?;
    let mut filters = seccompiler::compile_from_json(SECCOMP_POLICY.as_bytes(), arch)
        .map_err(err("compiling the seccomp policy"))?;
    ["deny", "socket_families", "clone3"]
        .into_iter()
        .map(|name| {
            filters
                .remove(name)
                .ok_or_else(|| format!("seccomp filter {name} missing"))
        })
        .collect()
}

fn install_seccomp(filters: &Filters) -> Result<()> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(err("installing the seccomp filter"))?;
    }
    Ok(())
}

/// Empties the capability bounding set and the ambient set, so that nothing the runtime
/// executes can regain a capability (setuid binaries included, with `no_new_privs` too).
#[allow(unsafe_code)]
fn drop_capability_bounding_set() -> Result<()> {
    let last: libc::c_ulong = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
            return Err(format!(
                "dropping capability {cap} from the bounding set: {e}"
            ));
        }
    }
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) } < 0 {
        return Err(format!(
            "clearing ambient capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Becomes the runtime; returns only on failure.
fn exec_runtime(plan: &SandboxPlan, filters: &Filters) -> String {
    let result = (|| -> Result<std::convert::Infallible> {
        SigSet::all()
            .thread_unblock()
            .map_err(err("unblocking signals"))?;
        drop_capability_bounding_set()?;
        nix::unistd::setgroups(&[]).map_err(err("setgroups"))?;
        nix::unistd::setgid(Gid::from_raw(plan.gid)).map_err(err("setgid"))?;
        nix::unistd::setuid(Uid::from_raw(plan.uid)).map_err(err("setuid"))?;
        nix::sys::prctl::set_no_new_privs().map_err(err("no_new_privs"))?;
        if plan.seccomp {
            install_seccomp(filters)?;
        }
        nix::unistd::chdir(&plan.cwd).map_err(err("chdir"))?;
        let cstring = |s: &str| std::ffi::CString::new(s).map_err(err("argument"));
        let program = cstring(&plan.program.to_string_lossy())?;
        let mut argv = vec![program.clone()];
        for arg in &plan.args {
            argv.push(cstring(arg)?);
        }
        let env = plan
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<Result<Vec<_>>>()?;
        nix::unistd::execve(&program, &argv, &env).map_err(|e| {
            format!(
                "fork/exec {}: {}",
                plan.program.display(),
                e.desc().to_lowercase()
            )
        })
    })();
    match result {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_mount_points_follow_links_inside_the_root() {
        let root = std::env::temp_dir().join(format!("shoal-mount-point-{}", std::process::id()));
        let etc = root.join("etc");
        fs::create_dir_all(&etc).unwrap();
        std::os::unix::fs::symlink("../run/resolve/stub.conf", etc.join("relative")).unwrap();
        std::os::unix::fs::symlink("/run/abs.conf", etc.join("absolute")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", etc.join("escaping")).unwrap();
        fs::write(etc.join("plain"), "x").unwrap();
        let at = |name: &str| file_mount_point(&root, etc.join(name)).unwrap();
        assert_eq!(at("relative"), root.join("run/resolve/stub.conf"));
        assert_eq!(at("absolute"), root.join("run/abs.conf"));
        assert_eq!(at("escaping"), root.join("outside"));
        assert_eq!(at("plain"), etc.join("plain"));
        assert_eq!(at("missing"), etc.join("missing"));
        assert!(root.join("run/resolve/stub.conf").is_file());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_seccomp_policy_compiles_for_this_architecture() {
        let arch = std::env::consts::ARCH
            .try_into()
            .expect("a supported architecture");
        let filters = seccompiler::compile_from_json(SECCOMP_POLICY.as_bytes(), arch)
            .expect("policy compiles");
        for name in ["deny", "socket_families", "clone3"] {
            assert!(filters.contains_key(name), "{name}");
        }
    }
}
