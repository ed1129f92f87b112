//! The sandbox plan: everything the sandbox init needs to build one environment, as
//! plain data the server computes and the init carries out (and a reviewer can print).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    /// An empty host folder where the new root is assembled (a tmpfs is mounted on it).
    pub root: PathBuf,
    pub mounts: Vec<Mount>,
    /// What the private `/tmp` is.
    pub tmp: Tmp,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub cwd: PathBuf,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub seccomp: bool,
}

/// An environment's `/tmp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tmp {
    /// A tmpfs of this many MB, whose pages count against the memory limit.
    Memory { size_mb: u32 },
    /// This ext4 image (made for the environment), loop-mounted.
    Image(PathBuf),
    /// An ext4 image the sandbox init already mounted here (a spare's), bound.
    Mounted(PathBuf),
}

/// Host folders every environment sees read-only (where they exist), so that
/// interpreters and their shared libraries work.
pub const SYSTEM_PATHS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"];

/// The sandbox's view of an environment.
pub const TASK_ROOT: &str = "/var/task";
/// Where a function's layers are.
pub const OPT: &str = "/opt";
pub const RUNTIMES_ROOT: &str = "/var/runtime";
/// The Node SDK's packages: the `node_modules` folder next to the task root.
pub const NODE_SDK: &str = "/var/node_modules";
pub const TMP: &str = "/tmp";
/// Every environment's Runtime API, inside its own network namespace.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
/// Every environment's platform API endpoint (`AWS_ENDPOINT_URL`), beside its Runtime API.
pub const PLATFORM_API_ADDR: &str = "127.0.0.1:9002";
