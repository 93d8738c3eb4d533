//! The daemon binary reads every setting, its runtime's included, through the one settings table: a
//! bad value of a variable only the plugin runtime uses, given in the environment or in a `.env` file,
//! stops start-up with exit status 2 and a message naming the variable, before anything is created on
//! disk. Also the allocator option the binary sets at start-up. The test owns nothing but the daemon
//! processes it starts and their temporary directories.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the daemon in `dir` with `env` added, waiting at most 30 seconds; returns (status, stderr).
fn run_daemon(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    command.current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // A port nobody listens on, in case a regression lets the daemon start.
    command.env("SERVER_PORT", "0").env("PLUGIN_REMOTE_INSTALLING_ENABLED", "false");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start dify-plugin-daemon");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the daemon") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not stop on a bad setting within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    (status.code(), stderr)
}

#[test]
fn bad_runtime_variable_in_the_environment_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, stderr) = run_daemon(dir.path(), &[("PLUGIN_HEARTBEAT_TIMEOUT", "soon")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("PLUGIN_HEARTBEAT_TIMEOUT") && stderr.contains("soon"), "{stderr}");
    assert!(!dir.path().join("cwd").exists() && !dir.path().join("storage").exists(), "nothing is created on a bad setting");
}

#[test]
fn bad_runtime_variable_in_a_dotenv_file_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "PLUGIN_ENV_BUILD_RETRIES=many\n").expect("write .env");
    let (status, stderr) = run_daemon(dir.path(), &[]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("PLUGIN_ENV_BUILD_RETRIES") && stderr.contains("many"), "{stderr}");
}

#[test]
fn third_party_key_that_is_not_a_public_key_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("not-a-key.pem");
    std::fs::write(&key, "-----BEGIN RSA PUBLIC KEY-----\nbm90IGEga2V5\n-----END RSA PUBLIC KEY-----\n").expect("write key");
    let key = key.display().to_string();
    let (status, stderr) = run_daemon(
        dir.path(),
        &[("THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED", "true"), ("THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS", &key)],
    );
    assert_ne!(status, Some(0), "a daemon that cannot read a trusted key must not start silently: {stderr}");
    assert!(stderr.contains("not-a-key.pem") && stderr.contains("not a PEM RSA public key"), "{stderr}");
}

/// The binary's allocator commits its arenas on demand: mimalloc reports its options at start-up
/// when asked (`MIMALLOC_VERBOSE=1`), and the option the binary sets before the first allocation
/// reads 0 there, unless the operator set it.
#[test]
fn the_allocator_commits_arenas_on_demand_unless_the_operator_says_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = ("PLUGIN_HEARTBEAT_TIMEOUT", "soon");
    let (status, stderr) = run_daemon(dir.path(), &[bad, ("MIMALLOC_VERBOSE", "1")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("option 'arena_eager_commit': 0"), "{stderr}");
    let (status, stderr) = run_daemon(dir.path(), &[bad, ("MIMALLOC_VERBOSE", "1"), ("MIMALLOC_ARENA_EAGER_COMMIT", "1")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("option 'arena_eager_commit': 1"), "{stderr}");
}
