//! `shoal bench`: the invoke path's figures, beside a baseline measured in the same run.
//!
//! Starts a server in-process on a free loopback port (own temporary data directory) and
//! a plain hyper echo server, then measures with the same HTTP client: the echo baseline,
//! warm invoke latency (p50/p99) and throughput for no-op `provided` and Python functions,
//! and cold-start latency (invoke to response with no warm environment) for `provided`,
//! Python and Node. The no-op `provided` function is this binary itself, run as a minimal
//! Runtime API client (see [`noop_runtime`]).
//!
//! CPU per request (`cpu us/req` over the sequential run, `busy cpu us` over the
//! throughput run) is this process's CPU time (user + system) divided by the requests: the client's and the servers' (the echo's, or
//! Shoal's; the runtimes are other processes). Less the echo baseline's, it is what a warm
//! invoke costs Shoal beyond one HTTP exchange. When `nginx` is installed it is measured
//! too (`return 200`, one worker): the fastest baseline, and, since it runs in a process of
//! its own, the client's CPU alone, which less Shoal's row is Shoal's CPU per invoke.

mod bus;
mod gateway;
mod matching;
mod nginx;
mod queues;
mod schedules;
mod topics;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::json;

use crate::cli::client::{Client, ClientError};
use crate::config::ServerSettings;

/// Set in a function's environment, makes this binary a no-op Runtime API client.
pub const NOOP_RUNTIME_VAR: &str = "SHOAL_NOOP_RUNTIME";

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Sequential requests per warm latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent clients for the throughput measurement.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// How long each throughput measurement runs.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Cold starts measured per runtime.
    #[arg(long, default_value_t = 20)]
    pub cold_starts: usize,
    /// Concurrent invocations arriving at once for the scale-out measurement (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub scale_out: usize,
    /// Asynchronous events for the queue measurement (0 skips it).
    #[arg(long, default_value_t = 5000)]
    pub async_events: usize,
    /// Messages for the queue and event-source-mapping measurement (0 skips it).
    #[arg(long, default_value_t = 5000)]
    pub queue_messages: usize,
    /// Messages published to a topic with ten function subscribers (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub topic_messages: usize,
    /// Events put on the bus to time their way to a function target (0: none).
    #[arg(long, default_value_t = 50)]
    pub bus_events: usize,
    /// One-time schedules to time the firing lateness of (0: none).
    #[arg(long, default_value_t = 10)]
    pub schedules: usize,
    /// Rule counts to time pattern matching at, in-process (0: none).
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    pub match_rules: Vec<usize>,
    /// Isolation modes to measure, one server each (`none`, `namespaces`).
    #[arg(long, value_delimiter = ',', default_value = "none,namespaces")]
    pub isolation: Vec<String>,
}

struct Latencies {
    samples: Vec<Duration>,
    /// This process's CPU time (user + system) per request over the run: the client's and,
    /// for invokes, the server's (the runtimes are other processes).
    cpu_per_request: Duration,
}

impl Latencies {
    /// Samples with no CPU figure (cold starts, async latencies).
    fn of(samples: Vec<Duration>) -> Self {
        Self {
            samples,
            cpu_per_request: Duration::ZERO,
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// CPU time (user + system) this process has used so far.
fn own_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        })
        .unwrap_or_default()
}

/// One row of the warm path table.
fn warm_row(label: &str, lat: &Latencies, throughput: f64, busy_cpu: Duration) {
    println!(
        "{:<34} {:>10} {:>10} {:>12.0} {:>12} {:>12}",
        label,
        ms(lat.percentile(0.5)),
        ms(lat.percentile(0.99)),
        throughput,
        micros(lat.cpu_per_request),
        micros(busy_cpu)
    );
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

async fn sequential(client: &Client, path: &str, n: usize) -> anyhow::Result<Latencies> {
    let mut samples = Vec::with_capacity(n);
    let cpu_before = own_cpu();
    let body = Bytes::from_static(b"{\"bench\":true}");
    for _ in 0..n {
        let start = Instant::now();
        let reply = client
            .send(Method::POST, path, &[], Some(body.clone()))
            .await?;
        samples.push(start.elapsed());
        anyhow::ensure!(
            !reply.headers.contains_key("x-amz-function-error"),
            "function failed: {:?}",
            reply.body
        );
    }
    let cpu_per_request = (own_cpu().saturating_sub(cpu_before)) / n.max(1) as u32;
    Ok(Latencies {
        samples,
        cpu_per_request,
    })
}

async fn throughput(
    client: &Client,
    path: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(f64, Duration)> {
    let cpu_before = own_cpu();
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            let body = Bytes::from_static(b"{\"bench\":true}");
            while Instant::now() < deadline {
                client
                    .send(Method::POST, &path, &[], Some(body.clone()))
                    .await?;
                count += 1;
            }
            Ok::<_, anyhow::Error>(count)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let cpu = own_cpu().saturating_sub(cpu_before);
    Ok((
        total as f64 / start.elapsed().as_secs_f64(),
        cpu / total.max(1) as u32,
    ))
}

async fn start_echo_server() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn zip_of(files: &[(&str, &[u8], u32)]) -> anyhow::Result<String> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        writer.start_file(*name, options)?;
        writer.write_all(data)?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(writer.finish()?.into_inner()))
}

async fn create(
    client: &Client,
    name: &str,
    runtime: &str,
    handler: &str,
    zip: String,
    env: serde_json::Value,
) -> anyhow::Result<()> {
    client
        .send_json(
            Method::POST,
            "/2015-03-31/functions",
            &json!({
                "FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": "bench",
                "Code": { "ZipFile": zip }, "Environment": { "Variables": env },
            }),
        )
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}

async fn cold_starts(client: &Client, name: &str, n: usize) -> anyhow::Result<Latencies> {
    let path = format!("/2015-03-31/functions/{name}/invocations");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        // A configuration change retires the warm environments: the next invoke is cold.
        client
            .send_json(
                Method::PUT,
                &format!("/2015-03-31/functions/{name}/configuration"),
                &json!({ "Description": format!("cold start {i}") }),
            )
            .await?;
        let start = Instant::now();
        client
            .send(Method::POST, &path, &[], Some(Bytes::from_static(b"{}")))
            .await?;
        samples.push(start.elapsed());
    }
    Ok(Latencies::of(samples))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let rule_counts: Vec<usize> = args
        .match_rules
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    if !rule_counts.is_empty() {
        matching::run(&rule_counts);
        println!();
    }
    for isolation in &args.isolation {
        println!("=== isolation: {isolation}");
        let data_dir =
            std::env::temp_dir().join(format!("shoal-bench-{}-{isolation}", std::process::id()));
        let result = run_in(&args, &data_dir, isolation).await;
        let _ = std::fs::remove_dir_all(&data_dir);
        if let Err(e) = result {
            println!("  not measured: {e:#}");
        }
        println!();
    }
    Ok(())
}

async fn run_in(args: &BenchArgs, data_dir: &Path, isolation: &str) -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches, Parser};
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: ServerSettings,
    }
    let matches = Wrapper::command().get_matches_from([
        "shoal",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir.display().to_string(),
        "--keep-alive",
        "10m",
        "--isolation",
        isolation,
    ]);
    let settings = Wrapper::from_arg_matches(&matches)?.settings;
    let egress_arn = crate::arn::Arn::lambda_function(
        &settings.region,
        &settings.account_id,
        "noop-provided-egress",
        None,
    );
    let arn_parts = (settings.region.clone(), settings.account_id.clone());
    let server = crate::server::start(settings).await?;
    let client = Client::new(&format!("http://{}", server.addr));
    let echo = Client::new(&format!("http://{}", start_echo_server().await?));

    let me = std::fs::read(std::env::current_exe()?)?;
    let noop_zip = zip_of(&[("bootstrap", &me, 0o755)])?;
    create(
        &client,
        "noop-provided",
        "provided.al2023",
        "bootstrap",
        noop_zip.clone(),
        json!({ NOOP_RUNTIME_VAR: "1" }),
    )
    .await?;
    create(
        &client,
        "noop-python",
        "python3.12",
        "app.handler",
        zip_of(&[(
            "app.py",
            b"import time\n\ndef handler(event, context):\n    time.sleep(event.get('sleep_ms', 0) / 1000)\n    return {}\n",
            0o644,
        )])?,
        json!({}),
    )
    .await?;
    create(
        &client,
        "noop-node",
        "nodejs20.x",
        "index.handler",
        zip_of(&[(
            "index.mjs",
            b"export const handler = async () => ({});\n",
            0o644,
        )])?,
        json!({}),
    )
    .await?;

    println!(
        "shoal bench: {} sequential requests, {} clients for {:?}, {} cold starts per runtime",
        args.requests, args.concurrency, args.duration, args.cold_starts
    );
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "warm path", "p50 ms", "p99 ms", "req/s", "cpu us/req", "busy cpu us"
    );
    let echo_lat = sequential(&echo, "/echo", args.requests).await?;
    let (echo_tput, echo_busy_cpu) =
        throughput(&echo, "/echo", args.concurrency, args.duration).await?;
    warm_row(
        "baseline: hyper echo (loopback)",
        &echo_lat,
        echo_tput,
        echo_busy_cpu,
    );
    // nginx, when installed: the fastest HTTP server at hand; the client's CPU alone is
    // this process's (nginx is another process, its own CPU is read from /proc).
    let nginx = match nginx::Nginx::start(&data_dir.join("nginx")) {
        None => None,
        Some(Err(e)) => {
            println!("  (nginx is installed but did not start: {e:#})");
            None
        }
        Some(Ok(server)) => {
            let client = Client::new(&format!("http://{}", server.addr));
            let lat = sequential(&client, "/", args.requests).await?;
            let before = server.cpu();
            let started = Instant::now();
            let (tput, client_cpu) =
                throughput(&client, "/", args.concurrency, args.duration).await?;
            let requests = (tput * started.elapsed().as_secs_f64()).max(1.0);
            let own = server.cpu().saturating_sub(before).div_f64(requests);
            warm_row("baseline: nginx return 200", &lat, tput, client_cpu);
            println!(
                "  (nginx's own CPU: {} us per request with {} clients; the cpu columns of this \
                 row are the client's alone)",
                micros(own),
                args.concurrency
            );
            Some((
                lat.percentile(0.5),
                tput,
                lat.cpu_per_request,
                client_cpu,
                server,
            ))
        }
    };
    let mut warm = Vec::new();
    for name in ["noop-provided", "noop-python"] {
        let path = format!("/2015-03-31/functions/{name}/invocations");
        sequential(&client, &path, 50).await?; // warm up
        let lat = sequential(&client, &path, args.requests).await?;
        let (tput, busy_cpu) = throughput(&client, &path, args.concurrency, args.duration).await?;
        warm_row(&format!("invoke {name}"), &lat, tput, busy_cpu);
        warm.push((name, lat.percentile(0.5), lat.cpu_per_request, busy_cpu));
        if let Some((nginx_p50, nginx_tput, client_cpu, client_busy_cpu, _)) = &nginx {
            println!(
                "  {name} against nginx: p50 {:.1}x nginx's, throughput {:.0}% of nginx's; \
                 shoal's CPU per warm invoke (this process's, less the client's alone) {} us \
                 sequential, {} us with {} clients",
                lat.percentile(0.5).as_secs_f64() / nginx_p50.as_secs_f64(),
                100.0 * tput / nginx_tput,
                micros(lat.cpu_per_request.saturating_sub(*client_cpu)),
                micros(busy_cpu.saturating_sub(*client_busy_cpu)),
                args.concurrency
            );
        }
    }
    // The same no-op behind a function URL (path form): the event is built and the
    // answer made by payload format 2.0's rules; and behind an HTTP API (quick create):
    // stage, route, the permission check, payload 2.0 in and out.
    let url_path = function_url_path(&client, "noop-provided").await?;
    let api_path = gateway::quick_api_path(&client, (&arn_parts.0, &arn_parts.1), "noop-provided")
        .await?
        + "/bench";
    for (label, path) in [("function URL", url_path), ("HTTP API", api_path)] {
        sequential(&client, &path, 50).await?; // warm up
        let lat = sequential(&client, &path, args.requests).await?;
        let (tput, busy_cpu) = throughput(&client, &path, args.concurrency, args.duration).await?;
        warm_row(&format!("{label} noop-provided"), &lat, tput, busy_cpu);
        if let Some((nginx_p50, nginx_tput, client_cpu, client_busy_cpu, _)) = &nginx {
            println!(
                "  {label} against nginx: p50 {:.1}x nginx's, throughput {:.0}% of nginx's; \
                 shoal's CPU per request {} us sequential, {} us with {} clients",
                lat.percentile(0.5).as_secs_f64() / nginx_p50.as_secs_f64(),
                100.0 * tput / nginx_tput,
                micros(lat.cpu_per_request.saturating_sub(*client_cpu)),
                micros(busy_cpu.saturating_sub(*client_busy_cpu)),
                args.concurrency
            );
        }
    }
    drop(nginx);
    for (name, p50, cpu, busy_cpu) in &warm {
        println!(
            "  {name}: warm p50 = {:.1}x the echo baseline; shoal's CPU per warm invoke ~ {} us \
             sequential, {} us with {} clients (this process's CPU per request, less the echo \
             baseline's: the client and one HTTP exchange)",
            p50.as_secs_f64() / echo_lat.percentile(0.5).as_secs_f64(),
            micros(cpu.saturating_sub(echo_lat.cpu_per_request)),
            micros(busy_cpu.saturating_sub(echo_busy_cpu)),
            args.concurrency
        );
    }
    if args.cold_starts > 0 {
        println!();
        println!(
            "{:<34} {:>10} {:>10}",
            "cold start (invoke to response)", "p50 ms", "p99 ms"
        );
        let mut cold = vec!["noop-provided", "noop-python", "noop-node"];
        if isolation == "namespaces" {
            // The same no-op, in network mode egress: the cost of the NAT helper.
            create(
                &client,
                "noop-provided-egress",
                "provided.al2023",
                "bootstrap",
                zip_of(&[("bootstrap", &me, 0o755)])?,
                json!({ NOOP_RUNTIME_VAR: "1" }),
            )
            .await?;
            let tagged = client
                .send_json(
                    Method::POST,
                    &format!("/2017-03-31/tags/{egress_arn}"),
                    &json!({ "Tags": { crate::function::NETWORK_TAG: "egress" } }),
                )
                .await;
            match tagged {
                Ok(_) => cold.push("noop-provided-egress"),
                Err(e) => println!("  (network mode egress not measured: {e})"),
            }
        }
        for name in cold {
            let lat = cold_starts(&client, name, args.cold_starts).await?;
            println!(
                "{:<34} {:>10} {:>10}",
                name,
                ms(lat.percentile(0.5)),
                ms(lat.percentile(0.99))
            );
        }
    }
    if args.async_events > 0 {
        // The shapes users deploy: a small Python function, and a no-op at 2048 MB (more
        // environments than the async queue's concurrency need the memory capacity's
        // default to fit).
        create(
            &client,
            "noop-provided-2g",
            "provided.al2023",
            "bootstrap",
            zip_of(&[("bootstrap", &me, 0o755)])?,
            json!({ NOOP_RUNTIME_VAR: "1" }),
        )
        .await?;
        client
            .send_json(
                Method::PUT,
                "/2015-03-31/functions/noop-provided-2g/configuration",
                &json!({ "MemorySize": 2048 }),
            )
            .await?;
        async_queue(
            &client,
            args.async_events,
            args.concurrency.max(16),
            data_dir,
            &["noop-python", "noop-provided-2g"],
        )
        .await?;
    }
    if args.queue_messages > 0 {
        queues::run(
            &client,
            data_dir,
            (&arn_parts.0, &arn_parts.1),
            "noop-provided",
            args.queue_messages,
            args.concurrency.max(16),
        )
        .await?;
    }
    if args.queue_messages > 0 {
        gateway::storage_first(&client, args.queue_messages, args.concurrency.max(16)).await?;
    }
    if args.bus_events > 0 {
        println!();
        bus::put_events_latency(
            &client,
            (&arn_parts.0, &arn_parts.1),
            "noop-provided",
            args.bus_events,
        )
        .await?;
    }
    if args.schedules > 0 {
        schedules::lateness(&client, (&arn_parts.0, &arn_parts.1), args.schedules).await?;
    }
    if args.topic_messages > 0 {
        topics::run(
            &client,
            (&arn_parts.0, &arn_parts.1),
            &noop_zip,
            "noop-provided",
            args.topic_messages,
            args.concurrency.max(16),
        )
        .await?;
    }
    if args.scale_out > 0 {
        println!();
        println!(
            "{:<34} {:>10} {:>10} {:>12}",
            format!("scale-out ({} at once)", args.scale_out),
            "new envs",
            "seconds",
            "envs/s"
        );
        let metrics = Client::new(&format!("http://{}", server.addr));
        for name in ["noop-provided", "noop-python"] {
            let own_before = rss_kb(std::process::id());
            let burst = scale_out(&client, &metrics, name, args.scale_out).await?;
            println!(
                "{:<34} {:>10} {:>10.3} {:>12.0}",
                name,
                burst.created,
                burst.elapsed.as_secs_f64(),
                burst.created as f64 / burst.elapsed.as_secs_f64()
            );
            if let Some(first) = &burst.first_refusal {
                println!(
                    "  {} of {} refused; the first: {first}",
                    burst.refused, args.scale_out
                );
            }
            let env_kb: Vec<u64> = function_pids(name).into_iter().map(rss_kb).collect();
            let own_after = rss_kb(std::process::id());
            if !env_kb.is_empty() {
                println!(
                    "  {} idle environments: {:.1} MB RSS each (runtime processes); shoal's own memory +{:.1} KB per environment",
                    env_kb.len(),
                    env_kb.iter().sum::<u64>() as f64 / env_kb.len() as f64 / 1024.0,
                    own_after.saturating_sub(own_before) as f64 / env_kb.len() as f64
                );
            }
        }
    }
    server.stop().await?;
    Ok(())
}

/// The durable queue: a plain SQLite insert loop (one committed transaction per row, as
/// durable as an accepted event) as the baseline, then for each function events accepted
/// with 202 while it is held (reserved concurrency 0) and the drain of that backlog once it
/// is released (no sender left), and the latency from 202 to the first function's START on
/// an idle server.
async fn async_queue(
    client: &Client,
    n: usize,
    concurrency: usize,
    data_dir: &Path,
    functions: &[&str],
) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "async queue", "events", "seconds", "events/s"
    );
    let baseline_path = data_dir.join("baseline.db");
    let rows = n.min(2000);
    let baseline = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let conn = rusqlite::Connection::open(&baseline_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")?;
        let start = Instant::now();
        for _ in 0..rows {
            conn.execute(
                "INSERT INTO t (payload) VALUES (?1)",
                [b"{\"bench\":true}".as_slice()],
            )?;
        }
        Ok(start.elapsed())
    })
    .await??;
    println!(
        "{:<34} {:>10} {:>10.3} {:>12.0}",
        "baseline: SQLite insert+commit loop",
        rows,
        baseline.as_secs_f64(),
        rows as f64 / baseline.as_secs_f64()
    );
    for function in functions {
        let concurrency_path = format!("/2017-10-31/functions/{function}/concurrency");
        client
            .send_json(
                Method::PUT,
                &concurrency_path,
                &json!({ "ReservedConcurrentExecutions": 0 }),
            )
            .await?;
        let path = format!("/2015-03-31/functions/{function}/invocations");
        let event = [("x-amz-invocation-type", "Event".to_string())];
        let start = Instant::now();
        let per_client = n.div_ceil(concurrency);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = client.clone();
            let path = path.clone();
            let event = event.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    client
                        .send(Method::POST, &path, &event, Some(Bytes::from_static(b"{}")))
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let accepted = per_client * concurrency;
        let accept_time = start.elapsed();
        println!(
            "{:<34} {:>10} {:>10.3} {:>12.0}",
            format!("accepted with 202 ({concurrency} clients)"),
            accepted,
            accept_time.as_secs_f64(),
            accepted as f64 / accept_time.as_secs_f64()
        );
        client
            .send(Method::DELETE, &concurrency_path, &[], None)
            .await?;
        let drain_start = Instant::now();
        let pending_path = format!("/shoal/v1/functions/{function}/async-events");
        loop {
            let pending = client.get_json(&pending_path).await?;
            if pending["pending"].as_u64() == Some(0) {
                break;
            }
            anyhow::ensure!(
                drain_start.elapsed() < Duration::from_secs(300),
                "the queue did not drain"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drain = drain_start.elapsed();
        println!(
            "{:<34} {:>10} {:>10.3} {:>12.0}",
            format!("drained ({function})"),
            accepted,
            drain.as_secs_f64(),
            accepted as f64 / drain.as_secs_f64()
        );
    }
    let function = functions[0];
    let path = format!("/2015-03-31/functions/{function}/invocations");
    let event = [("x-amz-invocation-type", "Event".to_string())];
    // Latency, idle: each event's START line carries the request id the 202 announced.
    let logs_path = format!("/shoal/v1/functions/{function}/logs");
    let mut after = latest_log(client, &logs_path).await?;
    let mut samples = Vec::new();
    for _ in 0..50 {
        let sent_ms = crate::timefmt::now_ms();
        let reply = client
            .send(Method::POST, &path, &event, Some(Bytes::from_static(b"{}")))
            .await?;
        let id = reply
            .headers
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(d) = start_after(client, &logs_path, &mut after, sent_ms, Some(&id)).await? {
            samples.push(d);
        }
    }
    print_start_latency("request to START (idle, ms resolution)", samples);
    Ok(())
}

/// A latency line under a table: p50 and p99 of `samples`.
/// The header of a section of throughput rows ([`row`]).
fn rate_header(title: &str) {
    println!();
    println!(
        "{title:<40} {:>8} {:>9} {:>10} {:>9} {:>9}",
        "messages", "seconds", "msgs/s", "p50 ms", "p99 ms"
    );
}

/// A throughput row: `n` done in `took`, with the requests' latencies when known.
fn row(label: &str, n: usize, took: Duration, lat: Option<&Latencies>) {
    let (p50, p99) = lat.map_or(("-".to_string(), "-".to_string()), |l| {
        (ms(l.percentile(0.5)), ms(l.percentile(0.99)))
    });
    println!(
        "{label:<40} {n:>8} {:>9.3} {:>10.0} {p50:>9} {p99:>9}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

fn print_start_latency(label: &str, samples: Vec<Duration>) {
    let latency = Latencies::of(samples);
    println!(
        "  {label}: p50 {} ms, p99 {} ms",
        ms(latency.percentile(0.5)),
        ms(latency.percentile(0.99))
    );
}

/// The newest log position of a function (`logs_path` its logs endpoint).
async fn latest_log(client: &Client, logs_path: &str) -> anyhow::Result<u64> {
    let mut after = 0u64;
    loop {
        let page = client
            .get_json(&format!("{logs_path}?after={after}&limit=10000"))
            .await?;
        let count = page["events"].as_array().map(Vec::len).unwrap_or(0);
        after = page["nextAfter"].as_u64().unwrap_or(after);
        if count < 10_000 {
            return Ok(after);
        }
    }
}

/// How long after `sent_ms` the next START line past `after` (of request `id`, when
/// given) was written, waiting up to 10 s for it; moves `after` past what was read.
async fn start_after(
    client: &Client,
    logs_path: &str,
    after: &mut u64,
    sent_ms: u64,
    id: Option<&str>,
) -> anyhow::Result<Option<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let page = client
            .get_json(&format!("{logs_path}?after={after}"))
            .await?;
        for e in page["events"].as_array().into_iter().flatten() {
            if e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("START") && id.is_none_or(|id| m.contains(id)))
            {
                let started = e["timestamp"].as_u64().unwrap_or(sent_ms);
                *after = page["nextAfter"].as_u64().unwrap_or(*after);
                return Ok(Some(Duration::from_millis(started.saturating_sub(sent_ms))));
            }
        }
        if id.is_none() {
            *after = page["nextAfter"].as_u64().unwrap_or(*after);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(None)
}

/// Gives function `name` a public URL (auth type NONE and its permission); the URL's
/// path form on this server.
async fn function_url_path(client: &Client, name: &str) -> anyhow::Result<String> {
    let config = client
        .send_json(
            Method::POST,
            &format!("/2021-10-31/functions/{name}/url"),
            &json!({ "AuthType": "NONE" }),
        )
        .await?;
    client
        .send_json(
            Method::POST,
            &format!("/2015-03-31/functions/{name}/policy"),
            &json!({
                "StatementId": "public", "Action": "lambda:InvokeFunctionUrl",
                "Principal": "*", "FunctionUrlAuthType": "NONE",
            }),
        )
        .await?;
    let url = config["FunctionUrl"].as_str().unwrap_or_default();
    let id = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_default();
    Ok(format!("{}{id}/", crate::urls::PATH_PREFIX))
}

/// Sleep of each invocation in the scale-out measurement: long enough that every
/// invocation needs its own environment.
const SCALE_OUT_SLEEP: Duration = Duration::from_millis(1000);

/// What one scale-out burst did.
struct Burst {
    /// Environments started.
    created: u64,
    /// How long the burst took beyond the functions' own sleep.
    elapsed: Duration,
    /// Invocations the server refused (a throttle, or no disk room for another `/tmp`),
    /// and the first refusal's error.
    refused: usize,
    first_refusal: Option<String>,
}

/// Fires `n` invocations at once at a function with no warm environment. A refusal is
/// counted and reported, not fatal: how far a burst scales on this host is the figure.
async fn scale_out(
    client: &Client,
    metrics: &Client,
    name: &str,
    n: usize,
) -> anyhow::Result<Burst> {
    client
        .send_json(
            Method::PUT,
            &format!("/2015-03-31/functions/{name}/configuration"),
            &json!({ "Description": "scale-out" }),
        )
        .await?;
    let before = cold_start_count(metrics, name).await?;
    let path = format!("/2015-03-31/functions/{name}/invocations");
    let body = Bytes::from(json!({ "sleep_ms": SCALE_OUT_SLEEP.as_millis() as u64 }).to_string());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let client = client.clone();
        let path = path.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client.send(Method::POST, &path, &[], Some(body)).await
        }));
    }
    let (mut refused, mut first_refusal) = (0, None);
    for task in tasks {
        match task.await? {
            Ok(_) => {}
            Err(e @ ClientError::Api { .. }) => {
                refused += 1;
                first_refusal.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed().saturating_sub(SCALE_OUT_SLEEP);
    let created = cold_start_count(metrics, name).await? - before;
    Ok(Burst {
        created,
        elapsed: elapsed.max(Duration::from_millis(1)),
        refused,
        first_refusal,
    })
}

async fn cold_start_count(metrics: &Client, name: &str) -> anyhow::Result<u64> {
    let reply = metrics.send(Method::GET, "/metrics", &[], None).await?;
    let text = String::from_utf8_lossy(&reply.body);
    let series = format!("shoal_cold_starts_total{{function=\"{name}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Resident memory of a process, in KB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Processes of a function's environments (found by their environment variables).
fn function_pids(name: &str) -> Vec<u32> {
    let needle = format!("AWS_LAMBDA_FUNCTION_NAME={name}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| String::from_utf8_lossy(&env).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A minimal Runtime API client: answers every event with `{}`. Used as the no-op
/// `provided` function of the benchmark.
pub fn noop_runtime() -> anyhow::Result<()> {
    let api =
        std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API is not set")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = Client::new(&format!("http://{api}"));
        loop {
            let next = client
                .send_raw(
                    Method::GET,
                    "/2018-06-01/runtime/invocation/next",
                    &[],
                    None,
                )
                .await?;
            let sleep_ms = serde_json::from_slice::<serde_json::Value>(&next.body)
                .ok()
                .and_then(|event| event["sleep_ms"].as_u64())
                .unwrap_or(0);
            if sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            }
            let id = next
                .headers
                .get("lambda-runtime-aws-request-id")
                .and_then(|v| v.to_str().ok())
                .context("no request id")?
                .to_string();
            client
                .send_raw(
                    Method::POST,
                    &format!("/2018-06-01/runtime/invocation/{id}/response"),
                    &[],
                    Some(Bytes::from_static(b"{}")),
                )
                .await?;
        }
    })
}
