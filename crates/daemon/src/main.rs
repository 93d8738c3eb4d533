//! The `dify-plugin-daemon` binary: reads configuration (environment and `.env`) and runs the server;
//! `dify-plugin-daemon doctor` checks the configuration and what start-up needs instead.
//! Everything else lives in the library (`dify_daemon`).
//!
//! The binary allocates with mimalloc: an invocation makes a few dozen short-lived allocations on
//! two threads, and glibc's allocator spent a fifth of the daemon's CPU on them (free-list
//! consolidation for every allocation of 1 KiB or more). Its arenas are committed on demand rather
//! than up front, which keeps the daemon's resident memory within about 1.5 MiB of glibc's (eager
//! commit cost 11 MiB idle and 40 MiB with 50 plugins running). Nothing between `fork` and `exec` in the daemon
//! allocates, so the allocator's choice does not reach child processes.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 3's option enum (`MIMALLOC_ARENA_EAGER_COMMIT`).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Sets the allocator's options before the first allocation: the first arena is reserved by the
/// runtime's own start-up, before `main`, so this runs from the executable's initialisers. An
/// operator's own `MIMALLOC_ARENA_EAGER_COMMIT` (read by mimalloc itself) wins.
extern "C" fn configure_allocator() {
    // SAFETY: `getenv` with a NUL-terminated name, before any thread exists; `mi_option_set` sets
    // one of mimalloc's documented options.
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

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
