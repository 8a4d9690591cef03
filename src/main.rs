//! The `switchyard` binary: parse the command line, set up logging, run, map the result to an
//! exit code (0 ok, 1 fatal error, 2 partial).

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{Cli, LogFormat};

/// mimalloc with its defaults (freed memory goes back to the OS 10 ms later). Returning it at
/// once held a batch import's peak RSS 5-10% lower but cost it 8-10% of its time, and made a
/// warm `serve` spend 27% of its CPU time in the kernel (faulting in and zeroing pages it had
/// just given back) and answer 9% slower (README, Benchmarks). Built without transparent
/// huge pages (`no_thp`): with them every 2 MiB region it touched was zeroed whole at its
/// first fault, 16% of a batch import's CPU time; without them a batch import and a CLI
/// query each ran 10-20% faster with less memory (README, Benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
