//! The `switchyard` binary: parse the command line, set up logging, run, map the result to an
//! exit code (0 ok, 1 fatal error, 2 partial).

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{Cli, Command, LogFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_allocator(&cli.command);
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

/// mimalloc keeps freed memory committed for 10 ms before it returns it to the OS; under batch
/// `ingest` (parse workers and encode tasks on every core) that held the peak RSS of a
/// 1.44M-record import at 561 MB, and purging at once brings it to 410-427 MB at the same user
/// CPU time (glibc's malloc with one arena per core: 348 MB, but slower queries; README,
/// Benchmarks). Everything else keeps the delay: a warm `serve` answering queries spent 27% of
/// its CPU time in the kernel when it purged at once (faulting in and zeroing the pages it had
/// just given back; the `datafusion` Python package on the same SQL: 15%) and ran 9% slower.
/// A long-running `serve` still returns what a large query freed, 10 ms later.
/// `MIMALLOC_PURGE_DELAY` in the environment (mimalloc's own setting) overrides both.
#[allow(unsafe_code)]
fn tune_allocator(command: &Command) {
    // The `mi_option_t` value in `mimalloc.h` (the same in mimalloc 2 and 3) that
    // libmimalloc-sys does not name.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if !matches!(command, Command::Ingest(_)) || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
    {
        return;
    }
    // SAFETY: mi_option_set only stores an option's value; it is called before any other
    // thread exists (it is not thread-safe), with an option mimalloc defines.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}
