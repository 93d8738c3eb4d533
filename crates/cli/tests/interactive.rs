//! `plugin init` and `bundle init` ask their questions when run on a terminal. A pseudo-terminal is
//! provided by util-linux `script`, answers are typed into it, and the created files are checked.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `dify <args>` on a pseudo-terminal fed with `answers`; returns (exit code, transcript).
fn on_terminal(cwd: &Path, args: &str, answers: &str) -> (i32, String) {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_dify"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` is needed to provide a terminal");
    child.stdin.take().unwrap().write_all(answers.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
            return (status.code().unwrap_or(-1), transcript);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("interactive command did not finish within 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn plugin_init_asks_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    // name, author, description, repo, readme languages, category, tool?, model?, llm? ... min version
    let answers = "asked_plugin\nacme\nAsked on a terminal\nhttps://github.com/acme/asked\npt_BR\nllm\nn\ny\ny\nn\nn\nn\nn\nn\nn\nn\nn\ny\n4096\n1.10.0\n";
    let (code, transcript) = on_terminal(tmp.path(), "plugin init", answers);
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains("Plugin name"), "{transcript}");
    assert!(transcript.contains("plugin created successfully name=asked_plugin"), "{transcript}");
    let dir = tmp.path().join("asked_plugin");
    let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("manifest.yaml")).unwrap()).unwrap();
    assert_eq!(manifest["description"]["en_US"].as_str(), Some("Asked on a terminal"));
    assert_eq!(manifest["repo"].as_str(), Some("https://github.com/acme/asked"));
    assert_eq!(manifest["plugins"]["models"][0].as_str(), Some("provider/asked_plugin.yaml"));
    assert_eq!(manifest["resource"]["permission"]["model"]["llm"].as_bool(), Some(true));
    assert_eq!(manifest["resource"]["permission"]["storage"]["size"].as_u64(), Some(4096));
    assert_eq!(manifest["meta"]["minimum_dify_version"].as_str(), Some("1.10.0"));
    assert!(dir.join("readme/README_pt_BR.md").is_file());
    assert!(dir.join("models/llm/llm.py").is_file());
}

#[test]
fn quick_init_does_not_ask_even_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, transcript) = on_terminal(tmp.path(), "plugin init --quick --name quick_one --author acme --description d", "");
    assert_eq!(code, 0, "{transcript}");
    assert!(!transcript.contains("Plugin name"), "{transcript}");
    assert!(tmp.path().join("quick_one/manifest.yaml").is_file());
}

#[test]
fn bundle_init_asks_for_missing_values_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, transcript) = on_terminal(tmp.path(), "bundle init --author acme", "asked_kit\n\nA kit\n");
    assert_eq!(code, 0, "{transcript}");
    let manifest = std::fs::read_to_string(tmp.path().join("asked_kit/manifest.yaml")).unwrap();
    insta::assert_snapshot!("bundle_init_asked_manifest", manifest);
}
