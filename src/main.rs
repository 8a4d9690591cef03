//! The `switchyard` binary: parse the command line, set up logging, run, map the result to an
//! exit code (0 ok, 1 fatal error, 2 partial).

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Serve(_) | Command::Proxy(_) | Command::Ingest(_)
    ) {
        limit_malloc_arenas();
    }
    init_tracing(cli.global.log_format);
    // Fault injection for tests: configured only by the FAILPOINTS variable (store::faults).
    let _faults = fail::FailScenario::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(switchyard::commands::run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and memory freed
/// into one arena is not reused by another: under ingest load the heap grows to several times
/// the live data. One arena per core keeps the long-running server's footprint near its
/// working set at no measured cost in throughput (see the ingest benchmark in the README).
/// Batch `ingest` too: its parse workers and encode tasks otherwise spread the heap over a
/// dozen arenas (peak RSS on a 1.4M-record file: 612 MB with glibc's default, 295 MB with one
/// arena per core, same time). Other short commands keep glibc's default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores).unwrap_or(2);
    // SAFETY: mallopt only adjusts allocator tuning; it is called first thing in main, before
    // any other thread exists, with a valid parameter and value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
