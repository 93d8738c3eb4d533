//! The README's quickstart, run exactly as written: the block between the `quickstart:begin` and
//! `quickstart:end` markers is executed by bash in an empty directory with the freshly built binaries on
//! `PATH`. Only the ports (and the daemon URL the client uses) are chosen by the test, through variables
//! the block leaves alone, so the test can run beside others. The machine it simulates has a Python but no
//! `uv`: the test command's uv is kept out of the block's environment.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

fn quickstart_block(readme: &str) -> String {
    let start = readme.find("<!-- quickstart:begin -->").expect("README has a quickstart:begin marker");
    let end = readme.find("<!-- quickstart:end -->").expect("README has a quickstart:end marker");
    let section = &readme[start..end];
    let open = section.find("```sh\n").expect("quickstart holds a sh block") + "```sh\n".len();
    let close = section[open..].find("```").expect("quickstart block is closed") + open;
    section[open..close].to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn readme_quickstart_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let script = quickstart_block(&readme);
    for command in
        ["dify-plugin-daemon", "dify plugin init", "dify plugin package", "dify-plugin-client install", "dify-plugin-client invoke"]
    {
        assert!(script.contains(command), "the quickstart must show `{command}`");
    }

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dify-plugin-daemon")).parent().expect("bin dir").to_path_buf();
    for bin in ["dify", "dify-plugin-client"] {
        assert!(bin_dir.join(bin).is_file(), "{bin} is not built in {}; run `cargo build --workspace --bins` first", bin_dir.display());
    }
    let workdir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A newcomer's machine: a Python >= 3.12 (PATH, pyenv) but no uv. The test command's own uv
    // (`UV_PATH`, a directory holding `uv`) is withheld, so the daemon must provide one itself.
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin_dir.clone()).chain(std::env::split_paths(&inherited).filter(|dir| !dir.join("uv").exists()));
    let path = std::env::join_paths(dirs).expect("PATH");

    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &format!("{script}\nstatus=0\nkill %1 2>/dev/null || true\nwait || true\nexit $status")])
        .current_dir(workdir.path())
        .env_remove("UV_PATH")
        .env_remove("VIRTUAL_ENV")
        .env("PATH", path)
        .env("HOME", workdir.path())
        .env("SERVER_PORT", port.to_string())
        .env("PLUGIN_REMOTE_INSTALLING_PORT", "0")
        .env("DIFY_PLUGIN_DAEMON_URL", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run bash");

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever happened, stop the daemon and anything else the block started.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    let daemon_log = std::fs::read_to_string(workdir.path().join("daemon.log")).unwrap_or_default();
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\ndaemon.log:\n{daemon_log}");

    let status = status.unwrap_or_else(|| panic!("the quickstart did not finish within 300 s\n{context}"));
    assert!(status.success(), "the quickstart failed ({status})\n{context}");
    assert!(workdir.path().join("hello/manifest.yaml").is_file(), "plugin init wrote no manifest\n{context}");
    assert!(workdir.path().join("hello.difypkg").is_file(), "plugin package wrote no hello.difypkg\n{context}");
    assert!(stdout.contains("success"), "install did not report success\n{context}");
    assert!(stdout.contains("hello received: world"), "invoke did not stream the tool's text\n{context}");
    assert!(stdout.contains("\"query\":\"world\""), "invoke did not print the tool's JSON message\n{context}");
    assert!(workdir.path().join("cwd/tools/uv/bin/uv").is_file(), "the daemon did not install its own uv\n{context}");
}
