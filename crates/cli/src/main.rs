//! Entry point of the `dify` binary: everything happens in [`dify_cli::run_from_args`].

fn main() {
    let status = dify_cli::run_from_args(std::env::args_os());
    std::process::exit(status);
}
