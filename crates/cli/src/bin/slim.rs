//! Entry point of the `slim` binary (upstream `slim`'s one-shot invoker): everything happens in
//! [`dify_cli::slim::run`].

fn main() {
    let status = dify_cli::slim::run(std::env::args_os().skip(1).collect());
    std::process::exit(status);
}
