//! Execution environments: one function's process tree plus its own Runtime API endpoint.
//!
//! An [`Environment`] moves through `Starting → Idle ⇄ Busy → Gone`; the scheduler owns
//! that lifecycle (`scheduler::lifecycle`), this module everything inside one environment:
//! starting it through the [`Sandbox`], serving its Runtime API, capturing its output,
//! handing it one invocation at a time, noticing when it exits, and destroying it.
//! The [`Launcher`] holds what every environment needs (sandbox, runtimes, code store,
//! log sink) so that the scheduler only asks "start one for this function".

pub mod isolation;
pub mod listener;
pub mod output;
pub mod peer;
pub mod platform_api;
pub mod response_stream;
pub mod runtime_api;
pub mod runtime_http;
pub mod sandbox;
pub mod watchdog;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::code::CodeStore;
use crate::function::{ArnContext, FunctionRecord};
use crate::logs::LogSink;
use crate::runtimes::RuntimeCatalog;
use output::{LogTarget, OutputCapture, Tail};
use runtime_api::{Dispatch, InitState, RuntimeApiState, RuntimeOutcome};
use sandbox::{LaunchSpec, Layout, Sandbox, SandboxError, TreeControl};

/// How a process tree ended, in the words Lambda uses (`exit status 1`, `signal: killed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReason(pub String);

impl ExitReason {
    fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = status.code() {
            Self(format!("exit status {code}"))
        } else if let Some(signal) = status.signal() {
            let name = match signal {
                9 => "killed".to_string(),
                15 => "terminated".to_string(),
                11 => "segmentation fault".to_string(),
                6 => "aborted".to_string(),
                other => format!("signal {other}"),
            };
            Self(format!("signal: {name}"))
        } else {
            Self("exited".to_string())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("runtime unavailable: {0}")]
    Runtime(String),
    #[error("environment setup failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the init phase did not finish.
#[derive(Debug)]
pub enum InitFailure {
    /// The runtime posted to `/runtime/init/error`.
    Reported {
        error_type: Option<String>,
        body: Bytes,
    },
    Exited(ExitReason),
    TimedOut(Duration),
}

/// Why an invocation did not produce an outcome.
#[derive(Debug)]
pub enum InvokeFailure {
    Exited(ExitReason),
    TimedOut,
}

/// Everything environments are started with; shared by all of them.
pub struct Launcher {
    pub sandbox: Arc<dyn Sandbox>,
    pub runtimes: Arc<RuntimeCatalog>,
    pub code: CodeStore,
    pub sink: LogSink,
    pub arns: ArnContext,
    /// `<data-dir>/envs`: one scratch folder per live environment.
    pub envs_dir: PathBuf,
    /// `PATH` given to functions.
    pub path: String,
    /// The platform API every environment reaches from inside, and the credentials it
    /// is issued for it.
    pub platform: Arc<platform_api::PlatformApi>,
}

impl Launcher {
    /// Starts an environment for `function`; returns as soon as the process runs
    /// (the init phase goes on; see [`Environment::wait_ready`]).
    pub async fn start(
        &self,
        function: &FunctionRecord,
        provisioned: bool,
    ) -> Result<Arc<Environment>, StartError> {
        let started_at = Instant::now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = &function.spec;
        let log_stream: Arc<str> = format!(
            "{}/[$LATEST]{}",
            crate::timefmt::stream_date(crate::timefmt::now_ms()),
            id
        )
        .into();
        let host_task_root = self.code.task_root(&function.code.sha256_hex);
        let host_opt = if spec.layers.is_empty() {
            None
        } else {
            let code = self.code.clone();
            let digests: Vec<String> = spec
                .layers
                .iter()
                .map(|l| l.code.sha256_hex.clone())
                .collect();
            let merged = tokio::task::spawn_blocking(move || code.merged_tree(&digests))
                .await
                .map_err(|e| StartError::Io(std::io::Error::other(e)))??;
            Some(merged)
        };
        let dir = self.envs_dir.join(&id);
        let host_tmp = dir.join("tmp");
        tokio::fs::create_dir_all(&host_tmp).await?;
        let host = Layout {
            task_root: host_task_root.clone(),
            runtimes_root: self.runtimes.runtimes_dir().to_path_buf(),
            tmp: host_tmp,
            runtime_api: None,
            platform_api: None,
            opt: host_opt.clone(),
        };
        let layout = self.sandbox.layout(&host);
        let task_root = layout.task_root.clone();
        let launch = self
            .runtimes
            .launch(&spec.runtime, &task_root, &layout.runtimes_root)
            .map_err(|e| StartError::Runtime(e.to_string()))?;

        let (inbox_tx, inbox_rx) = mpsc::channel(1);
        let api = Arc::new(RuntimeApiState::new(inbox_rx));
        // The Runtime API and the platform API listen on the host's loopback unless the
        // sandbox binds them itself (inside the environment's network namespace).
        let (host_listeners, api_addr, platform_addr) =
            match (&layout.runtime_api, &layout.platform_api) {
                (Some(api), Some(platform)) => (None, api.clone(), platform.clone()),
                _ => {
                    let bind = || tokio::net::TcpListener::bind(("127.0.0.1", 0));
                    let (runtime_api, platform_api) = (bind().await?, bind().await?);
                    let api_addr = runtime_api.local_addr()?.to_string();
                    let platform_addr = platform_api.local_addr()?.to_string();
                    (Some((runtime_api, platform_api)), api_addr, platform_addr)
                }
            };
        // The environment's own credentials (its execution role's session), in force
        // until it ends; the server's keys are never among them.
        let key = spec.key();
        let caller = Arc::new(crate::credentials::Caller {
            function: key.to_string(),
            version: function.version.clone(),
            environment: id.clone(),
            role: spec.role.clone(),
        });
        let credentials = self.platform.credentials.issue((*caller).clone());

        let region = spec
            .region
            .clone()
            .unwrap_or_else(|| self.arns.region.clone());
        let mut env: Vec<(String, String)> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let platform = [
            ("AWS_LAMBDA_RUNTIME_API", api_addr.to_string()),
            ("_HANDLER", spec.handler.clone()),
            ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
            (
                "LAMBDA_RUNTIME_DIR",
                launch.runtime_dir.display().to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_string()),
            (
                "AWS_LAMBDA_INITIALIZATION_TYPE",
                if provisioned {
                    "provisioned-concurrency"
                } else {
                    "on-demand"
                }
                .to_string(),
            ),
            ("AWS_REGION", region.clone()),
            ("AWS_DEFAULT_REGION", region),
            ("TZ", ":UTC".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("TMPDIR", layout.tmp.display().to_string()),
            ("PATH", self.path.clone()),
            (
                "AWS_ACCESS_KEY_ID",
                credentials.credentials().access_key_id.clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                credentials.credentials().secret_access_key.clone(),
            ),
            (
                "AWS_SESSION_TOKEN",
                credentials.credentials().session_token.clone(),
            ),
        ];
        env.extend(platform.into_iter().map(|(k, v)| (k.to_string(), v)));
        env.extend(
            spec.settings
                .runtime_environment(&spec.name)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        // The function's own AWS_ENDPOINT_URL, if it sets one, wins.
        if !spec.environment.contains_key(ENDPOINT_VARIABLE) {
            env.push((
                ENDPOINT_VARIABLE.to_string(),
                format!("http://{platform_addr}"),
            ));
        }
        if let Some(execution_env) = &launch.execution_env {
            env.push(("AWS_EXECUTION_ENV".to_string(), execution_env.clone()));
        }
        if let Some(opt) = &layout.opt {
            layer_paths(&mut env, opt, &spec.runtime);
        }
        let launch_spec = LaunchSpec {
            id: id.clone(),
            program: launch.program.clone(),
            args: launch.args.clone(),
            env,
            cwd: task_root.clone(),
            env_dir: dir.clone(),
            host_task_root,
            host_runtimes_root: host.runtimes_root.clone(),
            host_opt,
            memory_mb: spec.memory_mb,
            ephemeral_mb: spec.ephemeral_storage_mb,
            network: spec.network,
        };

        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| StartError::Io(std::io::Error::from(e)))?;
        let target = LogTarget {
            sink: self.sink.clone(),
            function: key.as_ref().into(),
            stream: log_stream.clone(),
            tail: Arc::new(Mutex::new(None)),
            min_level: spec.settings.logging.application_min_rank(),
        };
        let output = OutputCapture::start(read_end, target.clone())?;
        let sandbox = self.sandbox.clone();
        let started = tokio::task::spawn_blocking(move || sandbox.start(&launch_spec, write_end))
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?;
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e.into());
            }
        };
        let (listener, platform_listener) = match (host_listeners, started.listeners) {
            (Some(listeners), _) => listeners,
            (None, Some(bound)) => (
                tokio::net::TcpListener::from_std(bound.runtime_api)?,
                tokio::net::TcpListener::from_std(bound.platform_api)?,
            ),
            (None, None) => {
                started.control.kill();
                return Err(StartError::Io(std::io::Error::other(
                    "the sandbox bound no Runtime API listener",
                )));
            }
        };
        // A listener on the host's loopback admits only the environment's own processes.
        let peers = match (&layout.runtime_api, started.child.id()) {
            (Some(_), _) => None,
            (None, Some(root)) => Some(Arc::new(peer::PeerCheck::new(
                root as i32,
                nix::unistd::geteuid().as_raw(),
            ))),
            (None, None) => {
                started.control.kill();
                return Err(StartError::Io(std::io::Error::other(
                    "the runtime exited before its Runtime API was served",
                )));
            }
        };
        let platform_server = AbortOnDrop(tokio::spawn(self.platform.serve(
            platform_listener,
            peers.clone(),
            caller,
        )));
        let server = AbortOnDrop(tokio::spawn(serve_runtime_api(
            listener,
            api.clone(),
            peers,
            id.as_str().into(),
        )));
        let (exit_tx, exit_rx) = watch::channel(None);
        let mut child = started.child;
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => ExitReason::from_status(status),
                Err(e) => ExitReason(format!("wait failed: {e}")),
            };
            let _ = exit_tx.send(Some(reason));
        });
        tracing::debug!(env = %id, function = %spec.name, runtime_api = %api_addr, platform_api = %platform_addr, access_key = %credentials.credentials().access_key_id, sandbox = self.sandbox.name(), "environment started");
        Ok(Arc::new(Environment {
            id,
            function_name: key.into_owned(),
            started_at,
            api,
            inbox: inbox_tx,
            tree: started.control,
            peak: Mutex::new(None),
            exit: exit_rx,
            output,
            target,
            dir,
            credentials,
            _server: server,
            _platform_server: platform_server,
        }))
    }
}

/// How long a reading of an environment's peak memory is reported again.
const PEAK_MEMORY_FRESH: Duration = Duration::from_millis(100);

/// The variable naming the platform API endpoint (read by the AWS SDKs and CLI).
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL";

/// Connections one environment's Runtime API serves at once. A runtime needs one or two
/// (the `/next` long poll and its response, on one keep-alive connection); further ones
/// are closed as soon as they are accepted, never queued, so a function cannot take the
/// server's file descriptors (or memory) through its own Runtime API.
pub const RUNTIME_API_MAX_CONNECTIONS: usize = 16;

/// Read buffer limit of a Runtime API connection (request line and headers). Runtime
/// clients send small heads, but awslambdaric posts an X-Ray error cause header of up
/// to 1 MiB with a function error; bodies are read apart, under their own limits.
const RUNTIME_API_BUFFER_MAX: usize = 1024 * 1024 + 16 * 1024;

/// A request head must arrive in full within this long of the connection waiting for
/// one (new, or idle after a response); else the connection is closed. Runtimes send a
/// head in one write, and reconnect when an idle keep-alive connection was closed.
const RUNTIME_API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves one environment's Runtime API: at most [`RUNTIME_API_MAX_CONNECTIONS`]
/// connections at once, each admitted by `peers` first when it is given (a listener on
/// the host's loopback, where any local process could connect).
async fn serve_runtime_api(
    listener: tokio::net::TcpListener,
    api: Arc<RuntimeApiState>,
    peers: Option<Arc<peer::PeerCheck>>,
    env: Arc<str>,
) {
    let limits = listener::ListenerLimits {
        max_connections: RUNTIME_API_MAX_CONNECTIONS,
        header_timeout: RUNTIME_API_HEADER_TIMEOUT,
        max_buf: RUNTIME_API_BUFFER_MAX,
    };
    let http = runtime_http::Limits {
        header_timeout: limits.header_timeout,
        max_buf: limits.max_buf,
    };
    let connection = move |stream| {
        runtime_api::serve_connection(api.clone(), runtime_http::Connection::new(stream, http))
    };
    listener::serve(listener, limits, peers, env, "Runtime API", connection).await
}

/// Resolves once the process tree has exited.
async fn until_exit(mut exit: watch::Receiver<Option<ExitReason>>) {
    loop {
        let exited = exit.borrow_and_update().is_some();
        if exited {
            return;
        }
        if exit.changed().await.is_err() {
            // The watcher is gone without a verdict: the exit will never be observed.
            std::future::pending::<()>().await;
        }
    }
}

pub struct Environment {
    pub id: String,
    pub function_name: String,
    started_at: Instant,
    api: Arc<RuntimeApiState>,
    inbox: mpsc::Sender<Dispatch>,
    tree: Arc<dyn TreeControl>,
    /// The last reading of the tree's peak memory, and when it was taken.
    peak: Mutex<Option<(Instant, u64)>>,
    exit: watch::Receiver<Option<ExitReason>>,
    output: OutputCapture,
    target: LogTarget,
    dir: PathBuf,
    /// Its credentials: revoked when it is destroyed (or dropped).
    credentials: crate::credentials::Lease,
    _server: AbortOnDrop,
    _platform_server: AbortOnDrop,
}

/// One event for [`Environment::invoke`].
/// The search paths of a function's layers at `opt`, as Lambda sets them: Python's
/// `python` and `python/lib/pythonX.Y/site-packages` (PYTHONPATH), Node's
/// `nodejs/nodeNN/node_modules` and `nodejs/node_modules` (NODE_PATH), `bin` (PATH) and
/// `lib` (LD_LIBRARY_PATH); a variable the function sets itself comes first.
fn layer_paths(env: &mut Vec<(String, String)>, opt: &std::path::Path, runtime: &str) {
    let at = |p: &str| opt.join(p).display().to_string();
    let mut python = vec![at("python")];
    if let Some(version) = runtime.strip_prefix("python") {
        python.insert(0, at(&format!("python/lib/python{version}/site-packages")));
    }
    let mut node = vec![at("nodejs/node_modules")];
    if let Some(major) = runtime
        .strip_prefix("nodejs")
        .and_then(|v| v.strip_suffix(".x"))
    {
        node.insert(0, at(&format!("nodejs/node{major}/node_modules")));
    }
    let additions = [
        ("PYTHONPATH", python.join(":")),
        ("NODE_PATH", node.join(":")),
        ("PATH", at("bin")),
        ("LD_LIBRARY_PATH", at("lib")),
    ];
    for (name, value) in additions {
        match env.iter_mut().rev().find(|(k, _)| k == name) {
            Some((_, existing)) => *existing = format!("{existing}:{value}"),
            None => env.push((name.to_string(), value)),
        }
    }
}

pub struct EventSpec {
    pub request_id: String,
    pub payload: Bytes,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub invoked_arn: String,
    pub timeout: Duration,
    /// Where a streamed response goes as it comes (the caller asked for a stream).
    pub stream: Option<response_stream::StreamSink>,
}

impl Environment {
    pub fn is_alive(&self) -> bool {
        self.exit.borrow().is_none()
    }

    /// Time since the process tree was started.
    pub fn age(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// Waits for the end of the init phase: the runtime's first `/next` call.
    /// Returns the init duration (process start to first `/next`).
    pub async fn wait_ready(&self, limit: Duration) -> Result<Duration, InitFailure> {
        let mut init = self.api.init.subscribe();
        let outcome = tokio::select! {
            biased;
            state = init.wait_for(|s| !matches!(s, InitState::Initializing)) => state.map(|s| s.clone()).ok(),
            _ = until_exit(self.exit.clone()) => None,
            _ = tokio::time::sleep(limit) => return Err(InitFailure::TimedOut(limit)),
        };
        // An exit may race with an init error posted just before it: the report wins.
        let state = outcome.unwrap_or_else(|| self.api.init.borrow().clone());
        match state {
            InitState::Ready(at) => {
                self.tree.after_init();
                Ok(at.saturating_duration_since(self.started_at))
            }
            InitState::Failed { error_type, body } => {
                Err(InitFailure::Reported { error_type, body })
            }
            InitState::Initializing => Err(InitFailure::Exited(
                self.exit
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| ExitReason("exited".into())),
            )),
        }
    }

    /// Hands one event to the runtime and waits for its outcome, the process's exit or the deadline.
    pub async fn invoke(&self, event: EventSpec) -> Result<RuntimeOutcome, InvokeFailure> {
        let deadline = tokio::time::Instant::now() + event.timeout;
        let deadline_ms = crate::timefmt::now_ms() + event.timeout.as_millis() as u64;
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let dispatch = Dispatch {
            request_id: event.request_id,
            payload: event.payload,
            deadline_ms,
            trace_id: event.trace_id,
            client_context: event.client_context,
            invoked_arn: event.invoked_arn,
            reply: reply_tx,
            stream: event.stream,
        };
        if self.inbox.send(dispatch).await.is_err() {
            return Err(InvokeFailure::Exited(self.exit_reason()));
        }
        tokio::select! {
            biased;
            outcome = reply_rx => match outcome {
                Ok(outcome) => Ok(outcome),
                Err(_) => {
                    let _ = tokio::time::timeout_at(deadline, until_exit(self.exit.clone())).await;
                    Err(if self.is_alive() { InvokeFailure::TimedOut } else { InvokeFailure::Exited(self.exit_reason()) })
                }
            },
            _ = until_exit(self.exit.clone()) => Err(InvokeFailure::Exited(self.exit_reason())),
            _ = tokio::time::sleep_until(deadline) => Err(InvokeFailure::TimedOut),
        }
    }

    fn exit_reason(&self) -> ExitReason {
        self.exit
            .borrow()
            .clone()
            .unwrap_or_else(|| ExitReason("exited".into()))
    }

    /// Starts collecting the invocation's log lines for the tail.
    pub fn begin_tail(&self) {
        self.target.begin_tail();
    }

    pub fn take_tail(&self) -> Option<Tail> {
        self.target.take_tail()
    }

    /// Writes a platform line (START, END, REPORT, ...) into this environment's stream.
    pub async fn log(&self, line: String) {
        self.target.line(line).await;
    }

    /// Waits until the function's output so far is in the log.
    pub async fn sync_output(&self) {
        self.output.sync().await;
    }

    /// The tree's peak memory so far (REPORT's `Max Memory Used`), read from the kernel
    /// at most every [`PEAK_MEMORY_FRESH`]: the kernel formats the whole of
    /// `/proc/<pid>/status` for each reading, which cost about as much as the rest of a
    /// warm invoke's bookkeeping. The figure only grows, and a warm environment invoked
    /// back to back reports the reading of its last tenth of a second.
    pub fn peak_memory_mb(&self) -> u64 {
        let mut peak = self.peak.lock().unwrap_or_else(|p| p.into_inner());
        match *peak {
            Some((at, mb)) if at.elapsed() < PEAK_MEMORY_FRESH => mb,
            last => {
                let mb = self.tree.peak_memory_mb().max(last.map_or(0, |(_, mb)| mb));
                *peak = Some((Instant::now(), mb));
                mb
            }
        }
    }

    /// Stops the process tree gracefully: SIGTERM, then SIGKILL after `grace`; then
    /// removes the scratch folder. Used for healthy environments that are no longer needed.
    pub fn shutdown(self: &Arc<Self>, grace: Duration) {
        if !self.is_alive() {
            self.destroy();
            return;
        }
        self.tree.terminate();
        let env = self.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(grace, until_exit(env.exit.clone())).await;
            env.destroy();
        });
    }

    /// Kills the process tree at once (it is destroyed when released).
    pub fn kill(&self) {
        self.tree.kill();
    }

    /// Asks the process tree to stop (SIGTERM).
    pub fn terminate(&self) {
        self.tree.terminate();
    }

    /// Resolves when the process tree has exited.
    pub async fn exited(&self) {
        until_exit(self.exit.clone()).await;
    }

    /// Kills the tree and waits until its cgroup and folder are removed.
    pub async fn destroy_now(&self) {
        self.credentials.revoke();
        self.tree.kill();
        let dir = self.dir.clone();
        let tree = self.tree.clone();
        let _ = tokio::task::spawn_blocking(move || {
            tree.cleanup();
            let _ = std::fs::remove_dir_all(dir);
        })
        .await;
    }

    /// True when the kernel killed a process of this environment for exceeding its memory.
    pub fn oom_killed(&self) -> bool {
        self.tree.oom_killed()
    }

    /// Kills the process tree and removes the environment's scratch folder.
    pub fn destroy(&self) {
        self.credentials.revoke();
        self.tree.kill();
        let dir = self.dir.clone();
        let tree = self.tree.clone();
        tokio::task::spawn_blocking(move || {
            tree.cleanup();
            let _ = std::fs::remove_dir_all(dir);
        });
        tracing::debug!(env = %self.id, function = %self.function_name, "environment destroyed");
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        // An environment nobody holds any more must not leave processes behind.
        if self.is_alive() {
            self.tree.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Serves a Runtime API on a loopback port of its own; its address and the server task.
    async fn serve(peers: Option<peer::PeerCheck>) -> (std::net::SocketAddr, AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (_inbox, inbox_rx) = mpsc::channel(1);
        let api = Arc::new(RuntimeApiState::new(inbox_rx));
        let task = tokio::spawn(serve_runtime_api(
            listener,
            api,
            peers.map(Arc::new),
            "test".into(),
        ));
        (addr, AbortOnDrop(task))
    }

    /// The status code of a request sent on `stream`, or `None` when the server closed it.
    async fn status(stream: &mut TcpStream, request: &[u8]) -> Option<u16> {
        if stream.write_all(request).await.is_err() {
            return None;
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the server answers or closes within 5 s")
            .unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    const UNKNOWN: &[u8] = b"POST /2018-06-01/runtime/invocation/none/response HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let (addr, _server) = serve(None).await;
        let mut held = Vec::new();
        for _ in 0..RUNTIME_API_MAX_CONNECTIONS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert_eq!(status(&mut stream, UNKNOWN).await, Some(400));
            held.push(stream);
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert_eq!(status(&mut extra, UNKNOWN).await, None);
        // A slot given back is a connection served again.
        held.pop();
        let mut again = None;
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            again = status(&mut stream, UNKNOWN).await;
            if again.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(again, Some(400));
    }

    #[tokio::test]
    async fn a_head_larger_than_the_buffer_is_refused() {
        let (addr, _server) = serve(None).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nx-big: ".to_vec();
        request.resize(request.len() + RUNTIME_API_BUFFER_MAX + 1024, b'a');
        // The server answers 431 (or resets the connection) before the head is over.
        let _ = stream.write_all(&request).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the server answers or closes within 5 s")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 431"), "{text}");
    }

    #[tokio::test]
    async fn a_head_of_a_megabyte_is_read() {
        // awslambdaric's X-Ray error cause header may be up to 1 MiB.
        let (addr, _server) = serve(None).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request =
            b"POST /2018-06-01/runtime/invocation/none/error HTTP/1.1\r\nhost: x\r\nlambda-runtime-function-xray-error-cause: "
                .to_vec();
        request.resize(request.len() + 1024 * 1024 - 1, b'a');
        request.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(status(&mut stream, &request).await, Some(400));
    }

    #[tokio::test]
    async fn only_the_trees_processes_are_served_when_peers_are_checked() {
        let uid = nix::unistd::geteuid().as_raw();
        let (mine, _server) =
            serve(Some(peer::PeerCheck::new(std::process::id() as i32, uid))).await;
        let mut stream = TcpStream::connect(mine).await.unwrap();
        assert_eq!(status(&mut stream, UNKNOWN).await, Some(400));

        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let (theirs, _server) = serve(Some(peer::PeerCheck::new(other.id() as i32, uid))).await;
        let mut stream = TcpStream::connect(theirs).await.unwrap();
        assert_eq!(status(&mut stream, UNKNOWN).await, None);
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
