//! Test helpers: a raw ZIP builder that can express what well-behaved writers refuse to
//! (duplicate names, lying sizes, symlinks, non-UTF-8 names), and a minimal valid plugin.
#![allow(dead_code)]

use std::io::Write;

/// One entry as it will appear in the archive.
#[derive(Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
    pub deflate: bool,
    /// Unix mode stored in the external attributes (made-by host = Unix).
    pub unix_mode: u32,
    pub flags: u16,
    /// Overrides the uncompressed size written in the headers.
    pub declared_size: Option<u32>,
    /// Overrides the CRC written in the headers.
    pub crc: Option<u32>,
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            data: data.to_vec(),
            deflate: true,
            unix_mode: 0o100644,
            flags: 0,
            declared_size: None,
            crc: None,
        }
    }
}

pub fn build_zip(entries: &[RawEntry], comment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in entries {
        let stored = if entry.deflate {
            let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&entry.data).unwrap();
            encoder.finish().unwrap()
        } else {
            entry.data.clone()
        };
        let crc = entry.crc.unwrap_or_else(|| crc32fast::hash(&entry.data));
        let size = entry.declared_size.unwrap_or(entry.data.len() as u32);
        let method: u16 = if entry.deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&entry.flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&entry.name);
        out.extend_from_slice(&stored);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&entry.flags.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&(entry.unix_mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&entry.name);
    }
    let directory_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
    out.extend_from_slice(comment);
    out
}

pub const MANIFEST: &str = r#"version: 0.0.1
type: plugin
author: acme
name: demo_tool
label:
  en_US: Demo tool
description:
  en_US: A demo tool plugin
icon: icon.svg
resource:
  memory: 268435456
  permission:
    storage:
      enabled: true
      size: 1048576
plugins:
  tools:
    - provider/demo.yaml
meta:
  version: 0.0.1
  arch:
    - amd64
    - arm64
  runner:
    language: python
    version: "3.12"
    entrypoint: main
created_at: 2026-01-01T10:00:00.123456789Z
tags:
  - utilities
execution:
  ignored: true
"#;

pub const PROVIDER: &str = r#"identity:
  author: acme
  name: demo
  label:
    en_US: Demo
  description:
    en_US: ""
  icon: icon.svg
credentials_for_provider:
  api_key:
    type: secret-input
    required: true
    label:
      en_US: API key
tools:
  - tools/echo.yaml
  - identity:
      author: acme
      name: inline_tool
      label:
        en_US: Inline
    description:
      human:
        en_US: inline
      llm: inline
"#;

pub const TOOL: &str = r#"identity:
  author: acme
  name: echo
  label:
    en_US: Echo
description:
  human:
    en_US: Echo the input
  llm: Echo the input back
parameters:
  - name: text
    type: string
    form: llm
    required: true
    label:
      en_US: Text
    human_description:
      en_US: Text to echo
    llm_description: the text
  - name: mode
    type: select
    form: form
    default: loud
    options:
      - value: loud
        label:
          en_US: Loud
      - value: 1
        label:
          en_US: One
    label:
      en_US: Mode
    human_description:
      en_US: Mode
    min: 1
    max: 2.5
output_schema:
  type: object
  properties:
    text:
      type: string
"#;

/// The files of a small valid tool plugin.
pub fn plugin_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("manifest.yaml".into(), MANIFEST.as_bytes().to_vec()),
        ("provider/demo.yaml".into(), PROVIDER.as_bytes().to_vec()),
        ("tools/echo.yaml".into(), TOOL.as_bytes().to_vec()),
        ("main.py".into(), b"print('hi')\n".to_vec()),
        ("README.md".into(), b"# Demo\n".to_vec()),
        ("readme/README_zh_Hans.md".into(), "# 演示\n".as_bytes().to_vec()),
        ("readme/README_bad.md".into(), b"skipped\n".to_vec()),
        ("_assets/icon.svg".into(), b"<svg/>".to_vec()),
        ("requirements.txt".into(), b"dify_plugin>=0.10.0,<0.11.0\n".to_vec()),
    ]
}

pub fn raw_plugin_entries() -> Vec<RawEntry> {
    plugin_files().iter().map(|(name, data)| RawEntry::file(name, data)).collect()
}
