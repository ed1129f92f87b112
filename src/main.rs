//! `shoal`: a self-hosted serverless function platform that speaks the AWS Lambda API.
//!
//! One binary: `shoal server` runs the platform; the other subcommands are a CLI that
//! talks to a server over its public API.

/// The allocator: a warm invoke allocates and frees many small buffers across threads
/// (request and response bodies, headers, log lines), which glibc's malloc serves with
/// noticeably more CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod arn;
mod bench;
mod bus;
mod cli;
mod code;
mod config;
mod control;
mod credentials;
mod delivery;
mod disk;
mod dispatcher;
mod document;
mod environment;
mod function;
mod function_settings;
mod gateway;
mod invoke;
mod layers;
mod logs;
mod mappings;
mod metrics;
#[cfg_attr(not(test), allow(dead_code))]
// the event bus uses the rest of it as it lands
mod pattern;
mod policy;
mod queues;
mod region;
mod registry;
mod runtimes;
mod scheduler;
mod schedules;
mod sdk;
mod server;
mod shutdown;
mod sigv4;
mod sources;
mod store;
mod timefmt;
mod topics;
mod urls;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "A self-hosted serverless function platform that speaks the AWS Lambda API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Run the platform: the Lambda-compatible API, environments and store.
    Server(config::ServerSettings),
    /// Create or update a function from a folder or a zip.
    Deploy(cli::DeployArgs),
    /// Deploy a folder, then redeploy it on every change, building first with --build
    /// (or cargo, for a Cargo project): `deploy --watch`.
    Dev(cli::DeployArgs),
    /// Invoke a function and print its result.
    Invoke(cli::InvokeArgs),
    /// Print a function's logs.
    Logs(cli::logs::LogsArgs),
    /// List functions.
    Ls(cli::ListArgs),
    /// Delete a function.
    Rm(cli::NameArgs),
    /// Publish a version of a function from its current code and configuration.
    Publish(cli::versions::PublishArgs),
    /// A function's aliases: set (with weighted routing), list, delete.
    Alias(cli::versions::AliasArgs),
    /// Show, set or clear a function's reserved concurrency.
    Concurrency(cli::versions::ConcurrencyArgs),
    /// Show a function's pending asynchronous events.
    Pending(cli::PendingArgs),
    /// What answers HTTP: every HTTP API's routes, and every function URL.
    Routes(cli::routes::RoutesArgs),
    /// Built-in queues: create, send, receive, list, purge, redrive, delete.
    Queue(cli::queue::QueueArgs),
    /// Topics: create, publish, subscribe functions, queues and HTTP endpoints, list, delete.
    Topic(cli::topic::TopicArgs),
    /// Measure the invoke path against a plain HTTP baseline, in one run.
    Bench(bench::BenchArgs),
    /// The AWS SDKs functions import without bundling them.
    Sdk(sdk::SdkArgs),
    /// Print a shell's completion script (`shoal completions bash > /etc/bash_completion.d/shoal`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(environment::isolation::init::ARG) {
        return std::process::ExitCode::from(
            environment::isolation::init::main(&args).clamp(0, 255) as u8,
        );
    }
    if args.get(1).map(String::as_str) == Some(environment::watchdog::ARG) {
        return std::process::ExitCode::from(environment::watchdog::main().clamp(0, 255) as u8);
    }
    if std::env::var_os(bench::NOOP_RUNTIME_VAR).is_some() {
        return match bench::noop_runtime() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("noop runtime: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The server's settings are whole (its config file read) before its runtime is built:
    // they say how many threads it has.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let (Command::Server(settings), Some(server_matches)) =
        (&mut cli.command, matches.subcommand_matches("server"))
    {
        if let Err(e) = settings.apply_file(server_matches) {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(settings.worker_threads.count(cpus));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<bool> = runtime.block_on(async {
        match cli.command {
            Command::Server(settings) => {
                init_tracing();
                server::run(settings).await.map(|()| true)
            }
            Command::Deploy(args) => cli::deploy(args).await.map(|()| true),
            Command::Dev(mut args) => {
                args.watch = true;
                cli::deploy(args).await.map(|()| true)
            }
            Command::Invoke(args) => {
                cli::require_name(&args.name)?;
                cli::invoke(args).await
            }
            Command::Logs(args) => cli::logs::run(args).await.map(|()| true),
            Command::Ls(args) => cli::list(args).await.map(|()| true),
            Command::Rm(args) => cli::remove(args).await.map(|()| true),
            Command::Publish(args) => cli::versions::publish(args).await.map(|()| true),
            Command::Alias(args) => cli::versions::alias(args).await.map(|()| true),
            Command::Concurrency(args) => cli::versions::concurrency(args).await.map(|()| true),
            Command::Pending(args) => cli::pending(args).await.map(|()| true),
            Command::Routes(args) => cli::routes::run(args).await.map(|()| true),
            Command::Queue(args) => cli::queue::run(args).await.map(|()| true),
            Command::Topic(args) => cli::topic::run(args).await.map(|()| true),
            Command::Bench(args) => bench::run(args).await.map(|()| true),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "shoal", &mut script);
                cli::emit(format_args!(
                    "{}",
                    String::from_utf8_lossy(&script).trim_end()
                ));
                Ok(true)
            }
            Command::Sdk(args) => match args.command {
                sdk::SdkCommand::Install(install) => sdk::install(&install).map(|()| true),
            },
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = e
                .chain()
                .find_map(|cause| cause.downcast_ref::<cli::client::ClientError>())
                .and_then(|e| e.hint())
            {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod command_line_tests {
    use clap::ValueEnum;

    /// clap's checks of the definition, and every shell's completion script made from it
    /// (which looks up what each argument conflicts with).
    #[test]
    fn the_command_line_is_well_formed() {
        let mut command = <super::Cli as clap::CommandFactory>::command();
        command.clone().debug_assert();
        for shell in clap_complete::Shell::value_variants() {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "shoal", &mut script);
            assert!(!script.is_empty(), "{shell}");
        }
    }
}
