//! The `dify-plugin-daemon` binary: reads configuration (environment and `.env`) and runs the server;
//! `dify-plugin-daemon doctor` checks the configuration and what start-up needs instead.
//! Everything else lives in the library (`dify_daemon`).
//!
//! The binary allocates with mimalloc: an invocation makes a few dozen short-lived allocations on
//! two threads, and glibc's allocator spent a fifth of the daemon's CPU on them (free-list
//! consolidation for every allocation of 1 KiB or more). Nothing between `fork` and `exec` in the
//! daemon allocates, so the allocator's choice does not reach child processes.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "doctor") {
        return dify_daemon::doctor::main();
    }
    let settings = match dify_daemon::config::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dify_daemon::server::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dify-plugin-daemon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
