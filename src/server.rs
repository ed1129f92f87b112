//! `shoal server`: wires the parts together, serves the API, and shuts down cleanly.
//!
//! Start-up order: data directory, store, code store, runtimes, log writer, launcher and
//! scheduler, registry, the control door (which reconciles every stored function with
//! the scheduler), invoke service, HTTP listener.
//!
//! Shutdown (SIGINT/SIGTERM, or [`RunningServer::stop`]) goes through one
//! [`Shutdown`]: the listener stops accepting, the dispatcher stops claiming, the
//! maintenance tick stops, and invocations in flight get up to `--shutdown-timeout` to
//! finish. Those still running then are ended (answered with the shutdown error, their
//! async events back in the queue); a second signal ends them at once. Then every lease
//! left is released, idle environments are shut down, the sandbox releases what it holds
//! and the log writer flushes before the process exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::code::CodeStore;
use crate::config::ServerSettings;
use crate::control::Control;
use crate::environment::Launcher;
use crate::environment::isolation::{IsolationSettings, NamespaceSandbox, TmpStorage};
use crate::environment::sandbox::{ProcessSandbox, Sandbox};
use crate::function::ArnContext;
use crate::invoke::{InvokeDoor, LocalInvoker, Runner};
use crate::logs::LogSink;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtimes::{InterpreterSettings, RuntimeCatalog};
use crate::scheduler::{Limits, Scheduler};
use crate::shutdown::Shutdown;
use crate::sources::{SourceContext, Sources};
use crate::store::sqlite::SqliteStore;

/// After the shutdown timeout: how long the invocations that were ended get to answer
/// and the dispatcher to put their events back, before the server stops waiting.
const ENDING_WAIT: Duration = Duration::from_secs(5);

/// A running server: its address and the means to stop it.
pub struct RunningServer {
    pub addr: std::net::SocketAddr,
    shutdown: Arc<Shutdown>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Shuts down (see the module's documentation) and waits until it is done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.begin();
        self.done.await.context("server task failed")?
    }
}

/// Builds every part and starts serving; returns once the listener is bound.
pub async fn start(settings: ServerSettings) -> anyhow::Result<RunningServer> {
    let keys = settings.api_keys()?;
    match &keys {
        Some(keys) => tracing::info!(keys = keys.len(), "API requests must be signed (AWS SigV4)"),
        None if settings.listen.ip().is_loopback() => {
            tracing::warn!("no API keys configured: the API is open, and listens on loopback only")
        }
        None => anyhow::bail!(
            "refusing to listen on {} without API keys: set --access-key-id and --secret-access-key \
             (or --keys-file), or listen on a loopback address",
            settings.listen
        ),
    }
    raise_open_files_limit();
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let envs_dir = data_dir.join("envs");
    // Scratch folders of environments from a previous run are never reused.
    let _ = std::fs::remove_dir_all(&envs_dir);
    std::fs::create_dir_all(&envs_dir)?;

    let code = CodeStore::open(data_dir.join("code"))?;
    refuse_lost_store(&data_dir, &code)?;
    let disk = crate::disk::DiskBudget::new(&data_dir, settings.disk_reserve)
        .with_context(|| format!("cannot measure the filesystem of {}", data_dir.display()))?;
    let store =
        Arc::new(SqliteStore::open(&data_dir.join("shoal.db")).context("opening the store")?);
    let interpreters = InterpreterSettings {
        python: settings.python.clone(),
        node: settings.node.clone(),
        overrides: settings.interpreters.iter().cloned().collect(),
    };
    let runtimes = Arc::new(RuntimeCatalog::prepare(
        &data_dir.join("runtimes"),
        &interpreters,
    )?);
    let sdks = crate::sdk::installed(runtimes.runtimes_dir());
    if sdks.is_empty() {
        tracing::info!(
            "no runtime SDKs installed: functions bundle their own (`shoal sdk install` provides boto3 and @aws-sdk v3)"
        );
    } else {
        tracing::info!(sdks = ?sdks, "runtime SDKs functions can import");
    }
    if let Err(e) = crate::sdk::link_for_unisolated(&data_dir, runtimes.runtimes_dir()) {
        tracing::warn!(error = %e, "cannot make the Node SDK visible to unisolated functions");
    }
    let (sink, log_writer) = LogSink::start(
        store.clone(),
        crate::logs::LogBudget {
            events_per_function: settings.log_retention,
            bytes_per_function: settings.log_bytes_per_function,
            bytes_total: settings.log_bytes_total,
        },
    );
    let final_logs = sink.clone();
    // Resources live in regions; those of the data directory's home region (the one it
    // was first started with) keep their bare names as keys.
    let home_region = store
        .home_region(&settings.region)
        .context("reading the home region")?;
    if home_region != settings.region {
        tracing::warn!(
            home_region = %home_region,
            region = %settings.region,
            "this data directory's home region is {home_region}: its functions and queues stay there; --region {} is the region of unsigned requests",
            settings.region
        );
    }
    let arns = ArnContext::new(home_region, settings.account_id.clone());

    let mut path_dirs: Vec<String> = runtimes
        .interpreter_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    path_dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    path_dirs.dedup();
    // Names this server's cgroups: the same data directory, the same groups, so a restart
    // after a crash finds and removes what the previous run left.
    let instance =
        crate::sigv4::sha256_hex(data_dir.to_string_lossy().as_bytes())[..12].to_string();
    let sandbox = choose_sandbox(&settings, &runtimes, &instance, &envs_dir, &disk)?;
    // Environments reach the whole API from inside, with credentials of their own; the
    // router they are served is the public listener's, built below.
    let credentials = crate::credentials::CredentialRegistry::new();
    let platform = crate::environment::platform_api::PlatformApi::new(
        credentials.clone(),
        settings.header_timeout,
        settings.max_header_bytes,
    );
    let launcher = Arc::new(Launcher {
        sandbox: sandbox.clone(),
        runtimes: runtimes.clone(),
        code: code.clone(),
        sink: sink.clone(),
        arns: arns.clone(),
        envs_dir,
        path: path_dirs.join(":"),
        platform: platform.clone(),
    });
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        concurrency: settings.concurrency_limit,
        memory_capacity_mb: settings.memory_capacity.resolve(),
        memory_floor_mb: settings.memory_floor.resolve_floor(),
        keep_alive: settings.keep_alive,
        shutdown_grace: settings.shutdown_grace,
        init_timeout: settings.init_timeout,
    };
    tracing::info!(
        concurrency_limit = limits.concurrency,
        memory_capacity_mb = limits.memory_capacity_mb,
        memory_floor_mb = limits.memory_floor_mb,
        keep_alive = ?limits.keep_alive,
        "scheduler limits"
    );
    let shutdown = Arc::new(Shutdown::new());
    let scheduler = Scheduler::new(launcher, limits, metrics.clone());
    scheduler.spawn_maintenance(shutdown.signal());
    let layers = Arc::new(
        crate::layers::Layers::open(store.clone(), code.clone()).context("opening the layers")?,
    );
    let gateway =
        Arc::new(crate::gateway::Gateway::open(store.clone()).context("opening the HTTP APIs")?);
    let bus = Arc::new(
        crate::bus::EventBusService::open(store.clone(), &data_dir.join("shoal.db"), arns.clone())
            .context("opening the event buses")?,
    );
    let schedules = Arc::new(
        crate::schedules::SchedulerService::open(store.clone(), bus.clone())
            .context("opening the schedules")?,
    );
    let registry = Arc::new(Registry::open(
        store.clone(),
        store.clone(),
        code,
        runtimes,
        &layers.code_in_use(),
    )?);
    let control = Arc::new(Control::new(registry.clone(), scheduler.clone()));
    for document in registry.all() {
        control.reconcile(&document);
    }
    let events = Arc::new(
        crate::store::events::SqliteEventStore::open(&data_dir.join("shoal.db"))
            .context("opening the async queue")?,
    );
    let queues = Arc::new(
        crate::queues::QueueService::open(&data_dir.join("shoal.db"), arns.clone())
            .context("opening the queues")?,
    );
    let topics = crate::topics::TopicService::open(
        &data_dir.join("shoal.db"),
        &arns.account_id,
        metrics.clone(),
    )
    .context("opening the topics")?;
    let mappings = crate::mappings::Mappings::open(
        &data_dir.join("shoal.db"),
        registry.clone(),
        queues.clone(),
        arns.clone(),
    )
    .context("opening the event source mappings")?;
    // The doors: invoke (run, queue or validate an invocation) and delivery (a payload to
    // an ARN). Every producer of invocations uses them.
    let runner = Arc::new(Runner::new(
        scheduler.clone(),
        settings.init_timeout,
        metrics.clone(),
        shutdown.signal(),
    ));
    let event_queue = crate::dispatcher::EventQueue::start(events.clone(), metrics.clone());
    let invoke: Arc<dyn InvokeDoor> = Arc::new(LocalInvoker::new(
        registry.clone(),
        Arc::new(runner),
        event_queue.clone(),
        disk.clone(),
        arns.clone(),
    ));
    let mut targets = crate::delivery::Targets::new(arns.clone());
    targets.register(Arc::new(crate::delivery::lambda::FunctionTarget::new(
        invoke.clone(),
        registry.clone(),
        arns.clone(),
    )));
    targets.register(Arc::new(crate::delivery::queue::QueueTarget::new(
        queues.clone(),
        arns.clone(),
    )));
    targets.register(Arc::new(crate::delivery::bus::BusTarget::new(bus.clone())));
    targets.register(Arc::new(crate::delivery::topic::TopicTarget::new(
        topics.clone(),
    )));
    let targets = Arc::new(targets);
    // The event sources: the async queue's consumer is the first.
    let dispatcher = crate::dispatcher::Dispatcher::new(
        crate::dispatcher::Services {
            store: events,
            queue: event_queue,
            registry: registry.clone(),
            arns: arns.clone(),
            metrics: metrics.clone(),
            logs: sink.clone(),
        },
        crate::dispatcher::AsyncSettings {
            retry_base_delay: settings.retry_base_delay,
            concurrency: settings.async_concurrency,
            init_timeout: settings.init_timeout,
        },
    );
    let mut sources = Sources::new(SourceContext {
        invoke: invoke.clone(),
        delivery: targets.clone(),
        shutdown: shutdown.signal(),
    });
    sources.start(dispatcher.clone());
    sources.start(crate::mappings::Supervisor::new(
        mappings.clone(),
        arns.account_id.clone(),
    ));
    sources.start(crate::topics::fanout::Fanout::new(topics.clone()));
    sources.start(crate::bus::deliverer::Deliverer::new(bus.clone()));
    sources.start(crate::bus::replayer::Replayer::new(bus.clone()));
    sources.start(crate::bus::ticker::Ticker::new(
        bus.clone(),
        bus.schedule_clock,
    ));
    sources.start(crate::schedules::runner::Runner::new(
        schedules.clone(),
        bus.schedule_clock,
    ));
    let state = Arc::new(AppState {
        registry,
        control,
        invoke,
        targets,
        logs: sink,
        metrics,
        dispatcher: dispatcher.clone(),
        queues,
        mappings,
        topics: topics.clone(),
        layers,
        gateway,
        bus,
        schedules,
        disk,
        async_payload_max: settings.async_payload_limit,
        arns,
        default_region: settings.region.clone(),
        keys,
        credentials,
        egress_unavailable: sandbox.egress_unavailable(),
        uploads: Arc::new(tokio::sync::Semaphore::new(
            settings.upload_concurrency as usize,
        )),
        body_silence: settings.idle_timeout,
        public_addr: std::sync::OnceLock::new(),
    });

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let _ = state.public_addr.set(public_host(addr));
    topics.set_public_url(format!("http://{}", public_host(addr)));
    tracing::info!(%addr, data_dir = %data_dir.display(), worker_threads = tokio::runtime::Handle::current().metrics().num_workers(), "shoal is serving the Lambda API on http://{addr}");

    let connection_limits = api::connections::ConnectionLimits {
        header_timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
        max_header_bytes: settings.max_header_bytes,
        max_connections: api::connections::fit_connection_cap(
            settings.max_connections,
            api::connections::open_files_limit(),
        ),
    };
    if connection_limits.max_connections < settings.max_connections {
        tracing::warn!(
            max_connections = connection_limits.max_connections,
            "--max-connections lowered to half the open-file limit"
        );
    }
    let app = api::router(state);
    platform.route_to(app.clone());
    let serve_until = shutdown.signal();
    let serve = tokio::spawn(async move {
        // The serve loop's only hook into shutdown: a future that resolves when it starts.
        api::connections::serve(listener, app, connection_limits, async move {
            serve_until.started().await
        })
        .await
    });
    let timeout = settings.shutdown_timeout;
    let signal = shutdown.signal();
    let stopper = shutdown.clone();
    let done = tokio::spawn(async move {
        signal.started().await;
        tracing::info!(
            ?timeout,
            "shutting down: no new connections or async events; invocations in flight may finish"
        );
        let began = std::time::Instant::now();
        let mut drained = tokio::spawn(async move {
            let served = serve.await;
            sources.stopped().await;
            served
        });
        let mut finished = tokio::time::timeout(timeout, &mut drained).await.ok();
        if finished.is_none() {
            tracing::warn!(
                ?timeout,
                "invocations still running at the shutdown timeout are ended"
            );
            stopper.end();
            finished = tokio::time::timeout(ENDING_WAIT, &mut drained).await.ok();
            if finished.is_none() {
                tracing::warn!("the API or the dispatcher did not stop in time; stopping anyway");
                drained.abort();
                dispatcher.release_leases().await;
            }
        }
        if let Some(Ok(Ok(Err(e)))) = finished {
            tracing::error!(error = %e, "serving the API failed");
        }
        scheduler.shutdown().await;
        // The router holds the state that holds the launcher that holds the router.
        platform.stop_routing();
        sandbox.shutdown();
        drop(scheduler);
        // Everything logged so far is written before the process ends.
        final_logs.flush().await;
        drop(log_writer);
        tracing::info!(took = ?began.elapsed(), "shut down");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        shutdown,
        done,
    })
}

/// The `host:port` clients reach a listener bound to `addr` by: loopback for an
/// unspecified address (what local clients and functions' queue URLs use).
fn public_host(addr: std::net::SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        _ => addr.to_string(),
    }
}

/// Raises the soft limit of open files to the hard one: every connection, environment
/// (its pipes, sockets and Runtime API connections) and store file takes descriptors, and
/// the default soft limit (often 1024) would make the connection cap small.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "open-file limit raised"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Refuses to start on a data dir whose store is missing or empty while it still holds
/// code packages: a new, empty store would then start a server with no functions, and
/// the start-up collection of unused code would delete every package.
fn refuse_lost_store(data_dir: &std::path::Path, code: &CodeStore) -> anyhow::Result<()> {
    let has_data = |name: &str| std::fs::metadata(data_dir.join(name)).is_ok_and(|m| m.len() > 0);
    if has_data("shoal.db") || has_data("shoal.db-wal") {
        return Ok(());
    }
    let packages = code.package_count()?;
    if packages > 0 {
        anyhow::bail!(
            "{} holds {packages} code package(s) but its store shoal.db is missing or empty: \
             refusing to start, which would lose every function and delete the packages. \
             Restore shoal.db, or move the data dir's code/ folder away to start afresh.",
            data_dir.display()
        );
    }
    Ok(())
}

/// The sandbox `--isolation` asks for, or the best this host allows.
fn choose_sandbox(
    settings: &ServerSettings,
    runtimes: &RuntimeCatalog,
    instance: &str,
    scratch: &std::path::Path,
    disk: &Arc<crate::disk::DiskBudget>,
) -> anyhow::Result<Arc<dyn Sandbox>> {
    let unisolated = || -> Arc<dyn Sandbox> {
        tracing::warn!(
            sandbox = "process",
            "environments run unisolated: functions share this server's user, filesystem and network"
        );
        Arc::new(ProcessSandbox::start())
    };
    if settings.isolation == "none" {
        return Ok(unisolated());
    }
    let mut shared = runtimes.interpreter_roots();
    shared.extend(settings.sandbox_expose.iter().cloned());
    match NamespaceSandbox::probe(IsolationSettings {
        shared_paths: shared,
        pids_limit: settings.pids_limit,
        instance: instance.to_string(),
        egress_helper: settings.slirp4netns.clone(),
        tmp_storage: TmpStorage::parse(&settings.tmp_storage),
        scratch: scratch.to_path_buf(),
        spares: settings.spare_sandboxes,
        disk: Some(disk.clone()),
    }) {
        Ok(sandbox) => {
            tracing::info!(
                sandbox = "namespaces",
                "environments run isolated: namespaces, private root, cgroups, seccomp"
            );
            Ok(Arc::new(sandbox))
        }
        Err(reason) if settings.isolation == "auto" => {
            tracing::warn!(%reason, "isolation is not available on this host");
            Ok(unisolated())
        }
        Err(reason) => anyhow::bail!("--isolation namespaces is not possible here: {reason}"),
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(settings: ServerSettings) -> anyhow::Result<()> {
    let server = start(settings).await?;
    wait_for_signal().await;
    // A second signal ends the invocations in flight at once.
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("second signal: ending invocations in flight now");
        shutdown.end();
    });
    server.stop().await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
