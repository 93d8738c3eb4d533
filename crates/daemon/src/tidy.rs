//! Tidy check of the daemon's module layers, run as a unit test over every file under `src/`.
//!
//! Owns the layer table and the three rules ARCHITECTURE.md states: a module never imports a layer
//! above its own, only `store` mentions `sqlx`, only `http` (and `server`, which serves it) mentions
//! `axum`. The check reads source text: comments and string literals are blanked first, then
//! `crate::<module>` paths (grouped `crate::{a::X, b::Y}` imports included) and `super::` chains that
//! climb to the crate root are resolved to top-level modules.

use std::path::{Path, PathBuf};

/// Top-level modules and their layer; a module may import its own layer and the layers below.
/// `runtime` sits below `backwards` (backwards uses the runtime's configuration) and `session`, so
/// the runtime never reaches the handlers of backwards invocations or sessions.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("shutdown", 0),
    ("trace", 0),
    ("telemetry", 0),
    ("store", 1),
    ("coord", 1),
    ("runtime", 2),
    ("backwards", 3),
    ("session", 4),
    ("service", 5),
    ("http", 6),
    ("server", 7),
    ("doctor", 7),
];

/// Top-level modules that may mention `sqlx` / `axum`.
const SQLX_MODULES: &[&str] = &["store"];
const AXUM_MODULES: &[&str] = &["http", "server"];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

/// `src`-relative path → (top-level module, depth of the file's module path).
/// `session.rs` → (`session`, 1); `service/install.rs` → (`service`, 2); `http/mod.rs` → (`http`, 1).
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let top = parts.first()?.trim_end_matches(".rs").to_string();
    let last = parts.last()?;
    let depth = if last == "mod.rs" { parts.len() - 1 } else { parts.len() };
    Some((top, depth))
}

/// The source with comments, string literals and char literals replaced by spaces (newlines kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let previous_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && !previous_is_ident && matches!(next, Some('"') | Some('#')) {
            // A raw string r"..." / r#"..."#, or an identifier starting with r followed by `#`.
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let mut k = j + 1;
            while k < chars.len() {
                if chars[k] == '"' && (0..hashes).all(|h| chars.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for &skipped in &chars[i..k.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = k;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote right after.
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(' ');
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier starting at `at` (after spaces), if any.
fn ident_at(code: &[char], mut at: usize) -> (String, usize) {
    while code.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    let start = at;
    while code.get(at).is_some_and(|c| is_ident(*c)) {
        at += 1;
    }
    (code[start..at].iter().collect(), at)
}

/// Top-level modules named by a `{a::X, b::{Y, Z}, c}` group starting at `open` (the `{`).
fn group_heads(code: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expect_head = true;
    let mut i = open;
    while i < code.len() {
        match code[i] {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect_head = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_head = true,
            c if depth == 1 && expect_head && is_ident(c) => {
                let (name, end) = ident_at(code, i);
                heads.push(name);
                expect_head = false;
                i = end;
                continue;
            }
            c if !c.is_whitespace() && depth == 1 => expect_head = false,
            _ => {}
        }
        i += 1;
    }
    heads
}

/// Whether `word` occurs in `code` as a whole identifier.
fn mentions(code: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = code[from..].find(word) {
        let at = from + found;
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(code[..at].matches('\n').count() + 1);
        }
        from = at + word.len();
    }
    None
}

/// Every top-level module the code refers to by path, with its line.
fn referenced_modules(code: &str, depth: usize) -> Vec<(usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        let starts_word = i == 0 || !is_ident(chars[i - 1]);
        if !starts_word {
            i += 1;
            continue;
        }
        // `crate::` or a `super::` chain that climbs to the crate root.
        let mut root_end = None;
        if chars[i..].starts_with(&['c', 'r', 'a', 't', 'e', ':', ':']) {
            root_end = Some(i + 7);
        } else if chars[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
            let mut j = i;
            let mut climbs = 0;
            while chars[j..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                climbs += 1;
                j += 7;
            }
            if climbs >= depth {
                root_end = Some(j);
            } else {
                i = j;
                continue;
            }
        }
        let Some(end) = root_end else {
            i += 1;
            continue;
        };
        let mut after = end;
        while chars.get(after).is_some_and(|c| c.is_whitespace()) {
            after += 1;
        }
        if chars.get(after) == Some(&'{') {
            for head in group_heads(&chars, after) {
                found.push((line, head));
            }
        } else {
            let (name, _) = ident_at(&chars, after);
            if !name.is_empty() {
                found.push((line, name));
            }
        }
        i = end;
    }
    found
}

/// The rule violations of one file of top-level module `module` at module depth `depth`.
fn violations(file: &str, module: &str, depth: usize, source: &str) -> Vec<String> {
    let Some(own_layer) = layer_of(module) else {
        return vec![format!("{file}: module `{module}` has no layer; add it to the layer table in tidy.rs")];
    };
    let code = code_only(source);
    let mut problems = Vec::new();
    for (line, target) in referenced_modules(&code, depth) {
        if let Some(layer) = layer_of(&target) {
            if layer > own_layer {
                problems.push(format!("{file}:{line}: `{module}` imports `{target}`, a layer above it"));
            }
        }
    }
    if !SQLX_MODULES.contains(&module) {
        if let Some(line) = mentions(&code, "sqlx") {
            problems.push(format!("{file}:{line}: only `store` may use sqlx"));
        }
    }
    if !AXUM_MODULES.contains(&module) {
        if let Some(line) = mentions(&code, "axum") {
            problems.push(format!("{file}:{line}: only `http` (and `server`) may use axum"));
        }
    }
    problems
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable source directory").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn daemon_modules_respect_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 30, "expected the daemon's sources under {}", src.display());
    let mut problems = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).expect("file under src");
        // The crate root and the binary declare or use every module; this checker names them all.
        if ["lib.rs", "main.rs", "tidy.rs"].iter().any(|skip| relative == Path::new(skip)) {
            continue;
        }
        let (module, depth) = module_of(relative).expect("module path");
        let source = std::fs::read_to_string(&path).expect("readable source file");
        problems.extend(violations(&relative.display().to_string(), &module, depth, &source));
    }
    assert!(problems.is_empty(), "layer rules broken (see ARCHITECTURE.md):\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_violations() {
    // Upward imports, plain and grouped, and through `super::` chains that reach the crate root.
    let bad = "use crate::service::state::AppState;\nuse crate::{config::Settings, http::router};\n";
    let found = violations("store/x.rs", "store", 2, bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("store/x.rs:1") && found[0].contains("`service`"), "{found:?}");
    assert!(found[1].contains("store/x.rs:2") && found[1].contains("`http`"), "{found:?}");
    assert_eq!(violations("runtime/x.rs", "runtime", 2, "use super::super::session::Foo;").len(), 1);
    assert_eq!(violations("runtime.rs", "runtime", 1, "fn f() { super::backwards::g() }").len(), 1);
    assert!(violations("runtime/debug.rs", "runtime", 2, "use super::connection::X;").is_empty());
    assert!(violations("session.rs", "session", 1, "use crate::{runtime::X, backwards::{Y, Z}};").is_empty());
    // Libraries of other layers.
    assert_eq!(violations("service/x.rs", "service", 2, "use sqlx::Row;").len(), 1);
    assert_eq!(violations("service/x.rs", "service", 2, "fn f(_: axum::body::Body) {}").len(), 1);
    assert!(violations("store/x.rs", "store", 2, "use sqlx::Row;").is_empty());
    assert!(violations("server.rs", "server", 1, "use crate::http::router; fn f() { axum::serve }").is_empty());
    // Comments, strings and longer identifiers do not count.
    let quiet = "// crate::server\n/* crate::http */\nconst A: &str = \"crate::http axum\";\nconst B: &str = r#\"sqlx\"#;\nlet c = '\"'; let d = my_sqlx_helper;\n";
    assert!(violations("store/x.rs", "store", 2, quiet).is_empty(), "{:?}", violations("store/x.rs", "store", 2, quiet));
    assert!(violations("config.rs", "config", 1, quiet).is_empty());
    // A module the table does not know is reported, so new modules get a layer.
    assert_eq!(violations("cluster/x.rs", "cluster", 2, "").len(), 1);
}
