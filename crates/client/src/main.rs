//! `dify-plugin-client`: see `dify_client::cli`.

fn main() {
    std::process::exit(dify_client::cli::run(std::env::args_os().collect()));
}
