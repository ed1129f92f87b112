//! Server settings: one typed struct, filled from flags, then `SHOAL_*` environment
//! variables, then an optional TOML file, then defaults (in that order of precedence).
//!
//! Clap resolves flags and environment variables; [`ServerSettings::apply_file`] then
//! fills, from the file, only the settings clap left at their defaults. Every setting is
//! documented by `shoal server --help`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use serde::Deserialize;

/// How many threads run the server's async work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerThreads {
    /// Half the CPUs, at least one.
    Auto,
    Fixed(usize),
}

impl WorkerThreads {
    /// The number of threads on a host with `cpus` CPUs.
    pub fn count(self, cpus: usize) -> usize {
        match self {
            Self::Auto => (cpus / 2).max(1),
            Self::Fixed(n) => n,
        }
    }
}

fn parse_worker_threads(raw: &str) -> Result<WorkerThreads, String> {
    match raw.trim() {
        "auto" => Ok(WorkerThreads::Auto),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(WorkerThreads::Fixed(n)),
            _ => Err(format!(
                "worker threads must be `auto` or a number from 1 to 1024, not `{raw}`"
            )),
        },
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim())
        .map_err(|e| format!("'{raw}' is not a duration like 3s, 500ms or 10m: {e}"))
}

fn parse_interpreter(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            format!("'{raw}' is not RUNTIME=PATH (for example python3.12=/usr/bin/python3.12)")
        })
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerSettings {
    /// TOML file with settings (keys are the flag names with '_' for '-'); flags and
    /// SHOAL_* variables take precedence over it.
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the API (Lambda API, Shoal API and health check).
    #[arg(long, env = "SHOAL_LISTEN", default_value = "127.0.0.1:9600")]
    pub listen: SocketAddr,

    /// Folder of the embedded store, code packages and environments.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./.shoal")]
    pub data_dir: PathBuf,

    /// How long an idle environment is kept warm before it is shut down (e.g. 30s, 5m).
    #[arg(long, env = "SHOAL_KEEP_ALIVE", default_value = "5m", value_parser = parse_duration)]
    pub keep_alive: Duration,

    /// How long a runtime may take to initialise before the invocation fails.
    #[arg(long, env = "SHOAL_INIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub init_timeout: Duration,

    /// Region used in ARNs and given to functions as AWS_REGION.
    #[arg(long, env = "SHOAL_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Account id used in ARNs.
    #[arg(long, env = "SHOAL_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    /// Interpreter for every python3.x runtime without an --interpreter of its own.
    #[arg(long, env = "SHOAL_PYTHON", default_value = "python3")]
    pub python: String,

    /// Interpreter for every nodejsNN.x runtime without an --interpreter of its own.
    #[arg(long, env = "SHOAL_NODE", default_value = "node")]
    pub node: String,

    /// Interpreter for one runtime, as RUNTIME=PATH (repeatable; comma-separated in the variable).
    #[arg(long = "interpreter", env = "SHOAL_INTERPRETERS", value_delimiter = ',', value_parser = parse_interpreter)]
    pub interpreters: Vec<(String, String)>,

    /// Log events kept per function (older ones are dropped).
    #[arg(long, env = "SHOAL_LOG_RETENTION", default_value_t = 10_000)]
    pub log_retention: usize,

    /// Log bytes kept per function (older events are dropped first); a size like 64MB.
    /// An event counts its message's UTF-8 bytes plus 26 (CloudWatch's rule).
    #[arg(long, env = "SHOAL_LOG_BYTES_PER_FUNCTION", default_value = "64MB", value_parser = crate::disk::parse_bytes)]
    pub log_bytes_per_function: u64,

    /// Log bytes kept in all (the oldest events of any function are dropped first).
    #[arg(long, env = "SHOAL_LOG_BYTES_TOTAL", default_value = "1GB", value_parser = crate::disk::parse_bytes)]
    pub log_bytes_total: u64,

    /// Space kept free on the data directory's filesystem: async events, queue messages
    /// and code uploads are refused (503) and /tmp images not made when they would eat
    /// into it. A size (1GB), a percentage (5%), or `auto`: 1GB or 5%, whichever is smaller.
    #[arg(long, env = "SHOAL_DISK_RESERVE", default_value = "auto", value_parser = crate::disk::Reserve::parse)]
    pub disk_reserve: crate::disk::Reserve,

    /// Account-wide limit of concurrent executions (Lambda's default is 1000).
    #[arg(long, env = "SHOAL_CONCURRENCY_LIMIT", default_value_t = 1000)]
    pub concurrency_limit: usize,

    /// Memory (MB) that live environments may take in all, by their declared memory
    /// size; `auto` is four times this host's memory (environments seldom use what they
    /// declare: each is still held to its size by its cgroup, and --memory-floor guards
    /// what the host really has left).
    #[arg(long, env = "SHOAL_MEMORY_CAPACITY", default_value = "auto", value_parser = parse_capacity)]
    pub memory_capacity: Capacity,

    /// Memory (MB) the host keeps available: below it, a cold start first evicts idle
    /// environments and is throttled when there are none. `auto` is a sixteenth of the
    /// host's memory, at least 256 MB; 0 turns the check off.
    #[arg(long, env = "SHOAL_MEMORY_FLOOR", default_value = "auto", value_parser = parse_capacity)]
    pub memory_floor: Capacity,

    /// How long an environment being shut down gets between SIGTERM and SIGKILL.
    #[arg(long, env = "SHOAL_SHUTDOWN_GRACE", default_value = "1s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long the server's shutdown (SIGTERM, SIGINT) lets invocations in flight finish;
    /// after it they are ended, each answered with a `Sandbox.Timedout` error saying the
    /// server is shutting down, and their async events go back to the queue.
    #[arg(long, env = "SHOAL_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Access key id that signs API requests (AWS SigV4). Without any key the API is
    /// open and the server only listens on loopback.
    #[arg(long, env = "SHOAL_ACCESS_KEY_ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,

    /// Secret of --access-key-id.
    #[arg(
        long,
        env = "SHOAL_SECRET_ACCESS_KEY",
        requires = "access_key_id",
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,

    /// File of further keys, one `ACCESS_KEY_ID SECRET` pair a line ('#' starts a comment).
    #[arg(long, env = "SHOAL_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,

    /// How environments are isolated: `namespaces` (namespaces, cgroups, seccomp; needs
    /// root on Linux), `none` (plain processes), or `auto` (namespaces where the host
    /// allows them, else none with a warning).
    #[arg(long, env = "SHOAL_ISOLATION", default_value = "auto", value_parser = ["auto", "namespaces", "none"])]
    pub isolation: String,

    /// A host folder every isolated environment sees read-only at the same path
    /// (repeatable; comma-separated in the variable).
    #[arg(
        long = "sandbox-expose",
        env = "SHOAL_SANDBOX_EXPOSE",
        value_delimiter = ','
    )]
    pub sandbox_expose: Vec<PathBuf>,

    /// Most processes (and threads) one isolated environment may run.
    #[arg(long, env = "SHOAL_PIDS_LIMIT", default_value_t = 1024)]
    pub pids_limit: u32,

    /// Isolated sandboxes kept ready, namespaces made, for the next cold starts (0: none).
    #[arg(long, env = "SHOAL_SPARE_SANDBOXES", default_value_t = 2)]
    pub spare_sandboxes: usize,

    /// What backs each isolated environment's `/tmp`: `disk` (an ext4 image of its own,
    /// apart from its memory, as on Lambda), `memory` (a tmpfs, whose pages count against
    /// the memory size), or `auto` (disk where the host has mkfs.ext4 and loop devices).
    #[arg(long, env = "SHOAL_TMP_STORAGE", default_value = "auto", value_parser = ["auto", "disk", "memory"])]
    pub tmp_storage: String,

    /// The `slirp4netns` that gives isolated functions tagged `shoal:network=egress`
    /// their outbound network (a name is looked up in PATH).
    #[arg(long, env = "SHOAL_SLIRP4NETNS", default_value = "slirp4netns")]
    pub slirp4netns: PathBuf,

    /// Delay before the first retry of a failed asynchronous invocation (the second
    /// waits twice as long; Lambda's is about a minute).
    #[arg(long, env = "SHOAL_RETRY_BASE_DELAY", default_value = "1m", value_parser = parse_duration)]
    pub retry_base_delay: Duration,

    /// Largest payload of an asynchronous invocation, in bytes (Lambda's is 1 MB).
    #[arg(long, env = "SHOAL_ASYNC_PAYLOAD_LIMIT", default_value_t = 1024 * 1024)]
    pub async_payload_limit: usize,

    /// Asynchronous events running at once.
    #[arg(long, env = "SHOAL_ASYNC_CONCURRENCY", default_value_t = 64)]
    pub async_concurrency: usize,

    /// Threads that run the server's connections and tasks: a number, or `auto` (half the
    /// CPUs, at least one: the other half is left to the functions' own processes, and
    /// fewer threads hand an invocation between threads less often). Storage work runs on
    /// threads of its own either way.
    #[arg(long, env = "SHOAL_WORKER_THREADS", default_value = "auto", value_parser = parse_worker_threads)]
    pub worker_threads: WorkerThreads,

    /// How long a client may take to send a request's headers, counted from the
    /// connection (or from the first byte of a later request on it); then it is closed.
    #[arg(long, env = "SHOAL_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a kept-alive API connection may wait, idle, for its next request, and a
    /// request's body may stop arriving before the request is refused.
    #[arg(long, env = "SHOAL_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most bytes of request line and headers of one request (at least 8192); larger
    /// headers are refused with 431.
    #[arg(long, env = "SHOAL_MAX_HEADER_BYTES", default_value_t = 64 * 1024, value_parser = parse_header_bytes)]
    pub max_header_bytes: usize,

    /// Most API connections open at once; further ones get an immediate 429 and are
    /// closed. Lowered to half the open-file limit when that is smaller.
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Code uploads (CreateFunction, UpdateFunctionCode: up to 70 MB each) read and
    /// processed at once; further ones wait their turn before their body is read.
    #[arg(long, env = "SHOAL_UPLOAD_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub upload_concurrency: u32,
}

fn parse_header_bytes(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= 8192 => Ok(n),
        _ => Err(format!("'{raw}' is not a number of bytes of at least 8192")),
    }
}

impl ServerSettings {
    /// The API keys from --access-key-id/--secret-access-key and --keys-file; `None` when
    /// there are none (an open API).
    pub fn api_keys(&self) -> anyhow::Result<Option<HashMap<String, String>>> {
        let mut keys = HashMap::new();
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                check_key(id, secret)
                    .map_err(|e| anyhow::anyhow!("--access-key-id/--secret-access-key: {e}"))?;
                keys.insert(id.clone(), secret.clone());
            }
            (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                "--access-key-id and --secret-access-key go together: set both or neither"
            ),
            (None, None) => {}
        }
        if let Some(path) = &self.keys_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read keys file {}: {e}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let mut fields = line.split_whitespace();
                match (fields.next(), fields.next(), fields.next()) {
                    (Some(id), Some(secret), None) => {
                        check_key(id, secret).map_err(|e| {
                            anyhow::anyhow!("keys file {} line {}: {e}", path.display(), number + 1)
                        })?;
                        keys.insert(id.to_string(), secret.to_string());
                    }
                    _ => anyhow::bail!(
                        "keys file {} line {}: expected `ACCESS_KEY_ID SECRET`",
                        path.display(),
                        number + 1
                    ),
                }
            }
        }
        Ok((!keys.is_empty()).then_some(keys))
    }
}

/// Secrets shorter than this are accepted with a warning.
const SECRET_WARN_BELOW: usize = 16;

/// Refuses a key that cannot be what its owner meant: an empty or blank id or secret (an
/// unset template variable, say), or one with spaces or the characters that delimit a
/// SigV4 credential. A short secret is allowed, with a warning.
fn check_key(id: &str, secret: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("the access key id is empty".into());
    }
    if secret.trim().is_empty() {
        return Err(format!("the secret of access key id '{id}' is empty"));
    }
    if id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ',')
    {
        return Err(format!(
            "the access key id '{id}' has a space, a control character, '/' or ','"
        ));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the secret of access key id '{id}' has a space or a control character"
        ));
    }
    if secret.chars().count() < SECRET_WARN_BELOW {
        tracing::warn!(
            access_key_id = id,
            "the secret of this access key is shorter than {SECRET_WARN_BELOW} characters: \
             easy to guess"
        );
    }
    Ok(())
}

/// A memory capacity: a number of MB, or derived from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    Auto,
    Megabytes(u64),
}

/// How many times the host's memory `--memory-capacity auto` lets environments declare.
pub const MEMORY_OVERCOMMIT: u64 = 4;

impl Capacity {
    /// The memory capacity in MB; `Auto` is [`MEMORY_OVERCOMMIT`] times the host's memory
    /// (16 GB if it cannot be read).
    pub fn resolve(self) -> u64 {
        match self {
            Self::Megabytes(mb) => mb,
            Self::Auto => host_memory_mb().map_or(16 * 1024, |mb| mb * MEMORY_OVERCOMMIT),
        }
    }

    /// The memory floor in MB; `Auto` is a sixteenth of the host's memory, at least
    /// 256 MB (0, no floor, where the host's memory cannot be read).
    pub fn resolve_floor(self) -> u64 {
        match self {
            Self::Megabytes(mb) => mb,
            Self::Auto => host_memory_mb().map_or(0, |mb| (mb / 16).max(256)),
        }
    }
}

/// The host's memory in MB (`MemTotal`), where `/proc/meminfo` tells.
fn host_memory_mb() -> Option<u64> {
    crate::scheduler::host::meminfo_mb("MemTotal:")
}

fn parse_capacity(raw: &str) -> Result<Capacity, String> {
    if raw.trim() == "auto" {
        return Ok(Capacity::Auto);
    }
    raw.trim()
        .trim_end_matches("MB")
        .parse::<u64>()
        .map(Capacity::Megabytes)
        .map_err(|_| format!("'{raw}' is not a number of MB or 'auto'"))
}

/// The TOML file's shape: every key optional, named like the flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    keep_alive: Option<String>,
    init_timeout: Option<String>,
    region: Option<String>,
    account_id: Option<String>,
    python: Option<String>,
    node: Option<String>,
    interpreters: Option<HashMap<String, String>>,
    log_retention: Option<usize>,
    log_bytes_per_function: Option<toml::Value>,
    log_bytes_total: Option<toml::Value>,
    disk_reserve: Option<toml::Value>,
    concurrency_limit: Option<usize>,
    memory_capacity: Option<toml::Value>,
    memory_floor: Option<toml::Value>,
    shutdown_grace: Option<String>,
    shutdown_timeout: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    keys_file: Option<PathBuf>,
    isolation: Option<String>,
    sandbox_expose: Option<Vec<PathBuf>>,
    pids_limit: Option<u32>,
    slirp4netns: Option<PathBuf>,
    tmp_storage: Option<String>,
    spare_sandboxes: Option<usize>,
    retry_base_delay: Option<String>,
    async_payload_limit: Option<usize>,
    async_concurrency: Option<usize>,
    worker_threads: Option<toml::Value>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    upload_concurrency: Option<u32>,
}

impl ServerSettings {
    /// Fills the settings that neither a flag nor a variable set from the config file.
    pub fn apply_file(&mut self, matches: &clap::ArgMatches) -> anyhow::Result<()> {
        let Some(path) = &self.config else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let file: FileSettings = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        let defaulted = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::DefaultValue) | None
            )
        };
        let duration = |raw: String| {
            parse_duration(&raw).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
        };
        if let (Some(v), true) = (file.listen, defaulted("listen")) {
            self.listen = v;
        }
        if let (Some(v), true) = (file.data_dir, defaulted("data_dir")) {
            self.data_dir = v;
        }
        if let (Some(v), true) = (file.keep_alive, defaulted("keep_alive")) {
            self.keep_alive = duration(v)?;
        }
        if let (Some(v), true) = (file.init_timeout, defaulted("init_timeout")) {
            self.init_timeout = duration(v)?;
        }
        if let (Some(v), true) = (file.region, defaulted("region")) {
            self.region = v;
        }
        if let (Some(v), true) = (file.account_id, defaulted("account_id")) {
            self.account_id = v;
        }
        if let (Some(v), true) = (file.python, defaulted("python")) {
            self.python = v;
        }
        if let (Some(v), true) = (file.node, defaulted("node")) {
            self.node = v;
        }
        if let (Some(v), true) = (file.interpreters, defaulted("interpreters")) {
            self.interpreters = v.into_iter().collect();
        }
        if let (Some(v), true) = (file.log_retention, defaulted("log_retention")) {
            self.log_retention = v;
        }
        let size = |v: toml::Value| match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            _ => "not a size".to_string(),
        };
        let in_file = |e: String| anyhow::anyhow!("config file {}: {e}", path.display());
        if let (Some(v), true) = (
            file.log_bytes_per_function,
            defaulted("log_bytes_per_function"),
        ) {
            self.log_bytes_per_function = crate::disk::parse_bytes(&size(v)).map_err(in_file)?;
        }
        if let (Some(v), true) = (file.log_bytes_total, defaulted("log_bytes_total")) {
            self.log_bytes_total = crate::disk::parse_bytes(&size(v)).map_err(in_file)?;
        }
        if let (Some(v), true) = (file.disk_reserve, defaulted("disk_reserve")) {
            self.disk_reserve = crate::disk::Reserve::parse(&size(v)).map_err(in_file)?;
        }
        if let (Some(v), true) = (file.concurrency_limit, defaulted("concurrency_limit")) {
            self.concurrency_limit = v;
        }
        // A number of MB or "auto", as a TOML string or integer.
        let capacity = |v: toml::Value| {
            let raw = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                _ => "not a number of MB".to_string(),
            };
            parse_capacity(&raw).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
        };
        if let (Some(v), true) = (file.memory_capacity, defaulted("memory_capacity")) {
            self.memory_capacity = capacity(v)?;
        }
        if let (Some(v), true) = (file.memory_floor, defaulted("memory_floor")) {
            self.memory_floor = capacity(v)?;
        }
        if let (Some(v), true) = (file.shutdown_grace, defaulted("shutdown_grace")) {
            self.shutdown_grace = duration(v)?;
        }
        if let (Some(v), true) = (file.shutdown_timeout, defaulted("shutdown_timeout")) {
            self.shutdown_timeout = duration(v)?;
        }
        if let (Some(v), true) = (file.access_key_id, defaulted("access_key_id")) {
            self.access_key_id = Some(v);
        }
        if let (Some(v), true) = (file.secret_access_key, defaulted("secret_access_key")) {
            self.secret_access_key = Some(v);
        }
        if let (Some(v), true) = (file.keys_file, defaulted("keys_file")) {
            self.keys_file = Some(v);
        }
        if let (Some(v), true) = (file.isolation, defaulted("isolation")) {
            if !["auto", "namespaces", "none"].contains(&v.as_str()) {
                anyhow::bail!(
                    "config file {}: isolation must be auto, namespaces or none",
                    path.display()
                );
            }
            self.isolation = v;
        }
        if let (Some(v), true) = (file.sandbox_expose, defaulted("sandbox_expose")) {
            self.sandbox_expose = v;
        }
        if let (Some(v), true) = (file.pids_limit, defaulted("pids_limit")) {
            self.pids_limit = v;
        }
        if let (Some(v), true) = (file.slirp4netns, defaulted("slirp4netns")) {
            self.slirp4netns = v;
        }
        if let (Some(v), true) = (file.spare_sandboxes, defaulted("spare_sandboxes")) {
            self.spare_sandboxes = v;
        }
        if let (Some(v), true) = (file.tmp_storage, defaulted("tmp_storage")) {
            if !["auto", "disk", "memory"].contains(&v.as_str()) {
                anyhow::bail!(
                    "config file {}: tmp_storage must be auto, disk or memory",
                    path.display()
                );
            }
            self.tmp_storage = v;
        }
        if let (Some(v), true) = (file.retry_base_delay, defaulted("retry_base_delay")) {
            self.retry_base_delay = duration(v)?;
        }
        if let (Some(v), true) = (file.async_payload_limit, defaulted("async_payload_limit")) {
            self.async_payload_limit = v;
        }
        if let (Some(v), true) = (file.async_concurrency, defaulted("async_concurrency")) {
            self.async_concurrency = v;
        }
        if let (Some(v), true) = (file.worker_threads, defaulted("worker_threads")) {
            let raw = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            self.worker_threads = parse_worker_threads(&raw)
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        }
        if let (Some(v), true) = (file.header_timeout, defaulted("header_timeout")) {
            self.header_timeout = duration(v)?;
        }
        if let (Some(v), true) = (file.idle_timeout, defaulted("idle_timeout")) {
            self.idle_timeout = duration(v)?;
        }
        if let (Some(v), true) = (file.max_header_bytes, defaulted("max_header_bytes")) {
            self.max_header_bytes = parse_header_bytes(&v.to_string())
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        }
        if let (Some(v), true) = (file.max_connections, defaulted("max_connections")) {
            self.max_connections = v;
        }
        if let (Some(v), true) = (file.upload_concurrency, defaulted("upload_concurrency")) {
            if v == 0 {
                anyhow::bail!(
                    "config file {}: upload_concurrency must be at least 1",
                    path.display()
                );
            }
            self.upload_concurrency = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: ServerSettings,
    }

    fn parse(args: &[&str], file: &str) -> ServerSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["shoal", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let matches = Wrapper::command().get_matches_from(argv);
        let mut settings = Wrapper::from_arg_matches(&matches).unwrap().settings;
        settings.apply_file(&matches).unwrap();
        settings
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file = "keep_alive = \"7s\"\nregion = \"eu-west-1\"\n";
        let from_file = parse(&[], file);
        assert_eq!(from_file.keep_alive, Duration::from_secs(7));
        assert_eq!(from_file.region, "eu-west-1");
        assert_eq!(from_file.init_timeout, Duration::from_secs(10));
        let from_flag = parse(&["--keep-alive", "500ms"], file);
        assert_eq!(from_flag.keep_alive, Duration::from_millis(500));
        assert_eq!(from_flag.region, "eu-west-1");
    }

    #[test]
    fn blank_or_malformed_keys_are_refused() {
        assert!(check_key("", "secret-secret-secret").is_err());
        assert!(check_key("  ", "secret-secret-secret").is_err());
        assert!(check_key("AKIDEXAMPLE", "").is_err());
        assert!(check_key("AKIDEXAMPLE", " \t").is_err());
        assert!(check_key("AKID/EXAMPLE", "secret-secret-secret").is_err());
        assert!(check_key("AKID EXAMPLE", "secret-secret-secret").is_err());
        assert!(check_key("AKIDEXAMPLE", "secret with space").is_err());
        // Short secrets only warn.
        assert!(check_key("AKIDEXAMPLE", "short").is_ok());
        assert!(check_key("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").is_ok());
        let settings = parse(&["--access-key-id", "", "--secret-access-key", ""], "");
        assert!(settings.api_keys().is_err());
    }

    #[test]
    fn disk_budget_settings_come_from_the_file_too() {
        let defaults = parse(&[], "");
        assert_eq!(defaults.log_bytes_per_function, 64 << 20);
        assert_eq!(defaults.log_bytes_total, 1 << 30);
        assert_eq!(defaults.disk_reserve, crate::disk::Reserve::Auto);
        let file =
            "log_bytes_total = \"2MB\"\nlog_bytes_per_function = 4096\ndisk_reserve = \"5%\"\n";
        let from_file = parse(&[], file);
        assert_eq!(from_file.log_bytes_total, 2 << 20);
        assert_eq!(from_file.log_bytes_per_function, 4096);
        assert_eq!(from_file.disk_reserve, crate::disk::Reserve::Percent(5));
        let from_flag = parse(&["--disk-reserve", "1GB"], file);
        assert_eq!(from_flag.disk_reserve, crate::disk::Reserve::Bytes(1 << 30));
    }

    #[test]
    fn worker_threads_are_half_the_cpus_unless_set() {
        let defaults = parse(&[], "");
        assert_eq!(defaults.worker_threads, WorkerThreads::Auto);
        assert_eq!(defaults.worker_threads.count(1), 1);
        assert_eq!(defaults.worker_threads.count(2), 1);
        assert_eq!(defaults.worker_threads.count(16), 8);
        assert_eq!(
            parse(&[], "worker_threads = 3\n").worker_threads,
            WorkerThreads::Fixed(3)
        );
        assert_eq!(
            parse(&["--worker-threads", "2"], "worker_threads = \"auto\"\n").worker_threads,
            WorkerThreads::Fixed(2)
        );
        assert_eq!(
            parse(&[], "worker_threads = \"auto\"\n").worker_threads,
            WorkerThreads::Auto
        );
        assert!(parse_worker_threads("0").is_err());
        assert!(parse_worker_threads("many").is_err());
    }

    #[test]
    fn front_limits_come_from_the_file_and_are_checked() {
        let file = "header_timeout = \"2s\"\nidle_timeout = \"5s\"\nmax_connections = 10\n\
                    max_header_bytes = 16384\nupload_concurrency = 3\n";
        let settings = parse(&[], file);
        assert_eq!(settings.header_timeout, Duration::from_secs(2));
        assert_eq!(settings.idle_timeout, Duration::from_secs(5));
        assert_eq!(settings.max_connections, 10);
        assert_eq!(settings.max_header_bytes, 16384);
        assert_eq!(settings.upload_concurrency, 3);
        let defaults = parse(&[], "");
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.max_header_bytes, 64 * 1024);
        assert!(parse_header_bytes("4096").is_err());
        assert!(
            Wrapper::command()
                .try_get_matches_from(["shoal", "--upload-concurrency", "0"])
                .is_err()
        );
    }

    #[test]
    fn the_shutdown_timeout_and_the_shutdown_grace_are_two_settings() {
        let defaults = parse(&[], "");
        assert_eq!(defaults.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(defaults.shutdown_grace, Duration::from_secs(1));
        let file = "shutdown_timeout = \"30s\"\nshutdown_grace = \"2s\"\n";
        let from_file = parse(&[], file);
        assert_eq!(from_file.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(from_file.shutdown_grace, Duration::from_secs(2));
        let from_flag = parse(&["--shutdown-timeout", "3s"], file);
        assert_eq!(from_flag.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(from_flag.shutdown_grace, Duration::from_secs(2));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("soon").is_err());
    }
}
