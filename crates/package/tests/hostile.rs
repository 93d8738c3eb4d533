//! Hostile archives: each must be refused with its own error variant, never a panic.

mod support;

use dify_package::{DecodeLimits, Package, PackageError};
use support::{build_zip, raw_plugin_entries, RawEntry};

fn decode(bytes: Vec<u8>) -> Result<Package, PackageError> {
    Package::from_bytes(bytes, &DecodeLimits::default())
}

fn with_extra(entry: RawEntry) -> Vec<u8> {
    let mut entries = raw_plugin_entries();
    entries.push(entry);
    build_zip(&entries, b"")
}

#[test]
fn the_baseline_plugin_decodes() {
    let package = decode(build_zip(&raw_plugin_entries(), b"")).expect("valid plugin");
    assert_eq!(package.declaration().name, "demo_tool");
}

#[test]
fn zip_slip_is_refused() {
    for name in ["../evil.py", "a/../../evil.py", "tools/../../x", ".."] {
        let error = decode(with_extra(RawEntry::file(name, b"x"))).unwrap_err();
        assert_eq!(error, PackageError::PathTraversal { name: name.into() }, "{name}");
    }
}

#[test]
fn absolute_paths_are_refused() {
    for name in ["/etc/passwd", "C:/windows/x"] {
        let error = decode(with_extra(RawEntry::file(name, b"x"))).unwrap_err();
        assert_eq!(error, PackageError::AbsolutePath { name: name.into() }, "{name}");
    }
}

#[test]
fn symlinks_are_refused() {
    let mut link = RawEntry::file("link", b"/etc/passwd");
    link.unix_mode = 0o120777;
    assert_eq!(decode(with_extra(link)).unwrap_err(), PackageError::Symlink { name: "link".into() });
}

#[test]
fn duplicate_entries_are_refused() {
    let error = decode(with_extra(RawEntry::file("main.py", b"print('other')"))).unwrap_err();
    assert_eq!(error, PackageError::DuplicateEntry { name: "main.py".into() });
}

#[test]
fn non_utf8_names_are_refused() {
    let mut entry = RawEntry::file("x", b"x");
    entry.name = vec![b'a', 0xff, 0xfe, b'.', b'p', b'y'];
    assert!(matches!(decode(with_extra(entry)).unwrap_err(), PackageError::NonUtf8Name { .. }));
}

#[test]
fn backslash_and_nul_names_are_refused() {
    for name in ["a\\..\\b", "a\0b"] {
        let error = decode(with_extra(RawEntry::file(name, b"x"))).unwrap_err();
        assert!(matches!(error, PackageError::InvalidName { .. }), "{name:?}: {error:?}");
    }
}

#[test]
fn declared_zip_bomb_is_refused_before_inflating() {
    let mut bomb = RawEntry::file("bomb.bin", b"tiny");
    bomb.declared_size = Some(60 * 1024 * 1024);
    let error = decode(with_extra(bomb)).unwrap_err();
    assert_eq!(error, PackageError::UncompressedSizeExceeded { limit: 50 * 1024 * 1024 });
}

#[test]
fn lying_headers_cannot_hide_a_zip_bomb() {
    // The headers claim 10 bytes; the stream inflates to 2 MiB; the limit is 1 MiB.
    let mut bomb = RawEntry::file("bomb.bin", &vec![0u8; 2 * 1024 * 1024]);
    bomb.declared_size = Some(10);
    let limits = DecodeLimits { max_uncompressed_size: 1024 * 1024, ..DecodeLimits::default() };
    let error = Package::from_bytes(with_extra(bomb), &limits).unwrap_err();
    assert_eq!(error, PackageError::UncompressedSizeExceeded { limit: 1024 * 1024 });
}

#[test]
fn lying_size_within_limits_is_corrupt() {
    let mut entry = RawEntry::file("data.bin", &[7u8; 100]);
    entry.declared_size = Some(10);
    assert!(matches!(decode(with_extra(entry)).unwrap_err(), PackageError::CorruptEntry { .. }));
}

#[test]
fn extreme_compression_ratio_is_refused() {
    let bomb = RawEntry::file("zeros.bin", &vec![0u8; 4 * 1024 * 1024]);
    let error = decode(with_extra(bomb)).unwrap_err();
    assert!(matches!(error, PackageError::CompressionRatioExceeded { ref name, .. } if name == "zeros.bin"), "{error:?}");
}

#[test]
fn too_many_entries_are_refused() {
    let limits = DecodeLimits { max_entries: 3, ..DecodeLimits::default() };
    let error = Package::from_bytes(build_zip(&raw_plugin_entries(), b""), &limits).unwrap_err();
    assert!(matches!(error, PackageError::TooManyEntries { limit: 3, .. }), "{error:?}");
}

#[test]
fn truncated_archives_are_refused() {
    let bytes = build_zip(&raw_plugin_entries(), b"");
    for keep in [bytes.len() / 2, bytes.len() - 1, bytes.len() - 10, 40] {
        let error = decode(bytes[..keep].to_vec()).unwrap_err();
        assert_eq!(error, PackageError::Truncated, "kept {keep} bytes");
    }
}

#[test]
fn garbage_is_not_an_archive() {
    assert!(matches!(decode(b"definitely not a zip file".to_vec()).unwrap_err(), PackageError::InvalidArchive(_)));
    assert!(matches!(decode(Vec::new()).unwrap_err(), PackageError::InvalidArchive(_)));
}

#[test]
fn crc_mismatch_is_corrupt() {
    let mut entry = RawEntry::file("data.bin", b"some data");
    entry.crc = Some(0xdead_beef);
    let error = decode(with_extra(entry)).unwrap_err();
    assert_eq!(error, PackageError::CorruptEntry { name: "data.bin".into(), reason: "CRC-32 mismatch".into() });
}

#[test]
fn encrypted_entries_are_unsupported() {
    let mut entry = RawEntry::file("secret.bin", b"x");
    entry.flags = 1;
    assert!(matches!(decode(with_extra(entry)).unwrap_err(), PackageError::UnsupportedEntry { .. }));
}

#[test]
fn missing_manifest_is_refused() {
    let entries: Vec<RawEntry> = raw_plugin_entries().into_iter().filter(|e| e.name != b"manifest.yaml").collect();
    assert_eq!(decode(build_zip(&entries, b"")).unwrap_err(), PackageError::MissingManifest);
}

#[test]
fn manifest_pointing_at_a_missing_file_is_refused() {
    let entries: Vec<RawEntry> = raw_plugin_entries().into_iter().filter(|e| e.name != b"provider/demo.yaml").collect();
    assert_eq!(
        decode(build_zip(&entries, b"")).unwrap_err(),
        PackageError::MissingReferencedFile { path: "provider/demo.yaml".into(), referenced_by: "manifest.yaml".into() }
    );
    let entries: Vec<RawEntry> = raw_plugin_entries().into_iter().filter(|e| e.name != b"tools/echo.yaml").collect();
    assert_eq!(
        decode(build_zip(&entries, b"")).unwrap_err(),
        PackageError::MissingReferencedFile { path: "tools/echo.yaml".into(), referenced_by: "provider/demo.yaml".into() }
    );
}

#[test]
fn invalid_yaml_names_the_file() {
    let mut entries = raw_plugin_entries();
    entries[0] = RawEntry::file("manifest.yaml", b"version: [unclosed");
    assert!(matches!(decode(build_zip(&entries, b"")).unwrap_err(), PackageError::InvalidYaml { ref path, .. } if path == "manifest.yaml"));
}

#[test]
fn nested_archives_are_kept_as_opaque_bytes() {
    // Nested archives are never inflated by the decoder, so they cannot expand; they are ordinary
    // (size-limited) files. Bundles rely on this for their embedded packages.
    let inner = build_zip(&raw_plugin_entries(), b"");
    let package = decode(with_extra(RawEntry::file("_assets/inner.difypkg", &inner))).unwrap();
    assert_eq!(package.read_file("_assets/inner.difypkg"), Some(inner.as_slice()));
}

#[test]
fn directory_entries_are_skipped() {
    let mut dir = RawEntry::file("provider/", b"");
    dir.unix_mode = 0o040755;
    let package = decode(with_extra(dir)).unwrap();
    assert!(package.file_names().all(|n| !n.ends_with('/')));
}
