//! The upstream fixture packages: identifiers, declarations and signatures.

use std::path::PathBuf;

use dify_package::signature::{self, PrivateKey, PublicKey, SignatureError};
use dify_package::{read_archive, write_archive, DecodeLimits, Package};
use dify_protocol::manifest::PluginCategory;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn key_text(name: &str) -> String {
    String::from_utf8(fixture(&format!("keys/{name}"))).expect("utf-8 key")
}

fn decode(name: &str) -> Package {
    Package::from_bytes(fixture(name), &DecodeLimits::default()).expect("fixture decodes")
}

#[test]
fn agent_fixture_identifier_and_signature() {
    let package = decode("langgenius-agent_0.0.14.difypkg");
    assert_eq!(
        package.unique_identifier().unwrap().to_string(),
        "langgenius/agent:0.0.14@26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e"
    );
    let declaration = package.declaration();
    assert!(declaration.verified, "signed with the official key");
    assert_eq!(package.verification().unwrap().authorized_category, "langgenius");
    assert_eq!(declaration.category(), PluginCategory::AgentStrategy);
    let strategies = &declaration.agent_strategy.as_ref().expect("agent strategy provider").strategies;
    let names: Vec<&str> = strategies.iter().map(|s| s.identity.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(declaration.permissions().allows_llm());
    assert_eq!(package.file_names().count(), 16);
    assert!(package.assets().contains_key("icon.svg"));
    assert!(package.readme("ja_JP").is_some(), "falls back to en_US");
    assert!(declaration.validate_for_daemon().is_ok());
    assert!(dify_package::validate::for_upload(&package).is_ok());

    let verification = signature::verify(&fixture("langgenius-agent_0.0.14.difypkg"), &[]).expect("official signature");
    assert_eq!(verification.authorized_category, "langgenius");
}

#[test]
fn openai_fixture_models_by_glob_and_position() {
    let package = decode("openai.difypkg");
    assert_eq!(
        package.unique_identifier().unwrap().to_string(),
        "langgenius/openai:0.0.19@ee25cddb7264169044e305955abbf97eff0876a151ced2bf20c5907430ad5727"
    );
    let declaration = package.declaration();
    assert!(!declaration.verified);
    assert_eq!(declaration.category(), PluginCategory::Model);
    let model = declaration.model.as_ref().expect("model provider");
    assert!(!model.models.is_empty());
    let position = model.position.as_ref().expect("position read");
    let llm_order = position.llm.as_ref().expect("llm position file");
    assert!(!llm_order.is_empty());
    // Every model file found by glob is in the declaration, none of them a position file.
    let expected = package
        .file_names()
        .filter(|n| n.starts_with("models/") && n.ends_with(".yaml") && !n.ends_with("_position.yaml"))
        .count();
    assert_eq!(model.models.len(), expected);
    assert!(model.models.iter().all(|m| m.fetch_from == "predefined-model" || m.fetch_from == "customizable-model"));
    // The JSON form carries the resolved provider under `model` with its models.
    let json = declaration.to_json_value();
    assert!(json["model"]["models"].as_array().is_some_and(|m| m.len() == expected));
    assert!(json["plugins"]["tools"].is_null());
    assert!(json["tags"].is_array());
    // Model providers default their description to the plugin's.
    assert_eq!(json["model"]["description"]["en_US"], json["description"]["en_US"]);

    let error = signature::verify(&fixture("openai.difypkg"), &[]).unwrap_err();
    assert_eq!(error, SignatureError::NotSigned);
}

#[test]
fn dummy_fixture_is_an_unsigned_tool() {
    let package = decode("dummy_plugin.difypkg");
    assert_eq!(
        package.unique_identifier().unwrap().to_string(),
        "test/test:0.0.1@f47ca91dfa51d374e6dc4fa3b9b6839396e1e5bff0d6e846cc940c828f8f131b"
    );
    assert_eq!(package.declaration().category(), PluginCategory::Tool);
    assert!(package.declaration().tool.as_ref().is_some_and(|t| !t.tools.is_empty()));
    assert_eq!(signature::verify(&fixture("dummy_plugin.difypkg"), &[]).unwrap_err(), SignatureError::NotSigned);
}

#[test]
fn declaration_json_round_trips() {
    for name in ["langgenius-agent_0.0.14.difypkg", "openai.difypkg", "dummy_plugin.difypkg"] {
        let package = decode(name);
        let json = serde_json::to_vec(&package.declaration().to_json_value()).unwrap();
        let back = dify_protocol::PluginDeclaration::from_json(&json).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), package.declaration().to_json_value(), "{name}");
    }
}

#[test]
fn sign_with_test_key_and_verify() {
    let unsigned = fixture("dummy_plugin.difypkg");
    let private1 = PrivateKey::from_pem(&key_text("test_key_pair_1.private.pem")).unwrap();
    let public1 = PublicKey::from_pem(&key_text("test_key_pair_1.public.pem")).unwrap();
    let public2 = PublicKey::from_pem(&key_text("test_key_pair_2.public.pem")).unwrap();
    assert_eq!(private1.public_key(), public1);

    let signed = signature::sign(&unsigned, &private1, Some("partner")).unwrap();
    let verification = signature::verify_with_keys(&signed, &[&public1]).expect("key 1 verifies");
    assert_eq!(verification.authorized_category, "partner");
    assert_eq!(signature::verify_with_keys(&signed, &[&public2]).unwrap_err(), SignatureError::BadSignature);
    assert_eq!(signature::verify(&signed, &[]).unwrap_err(), SignatureError::BadSignature, "official key only");
    assert!(signature::verify(&signed, std::slice::from_ref(&public1)).is_ok(), "official + extra key");

    // The signed package still decodes; its checksum changed (verification file added).
    let mut package = Package::from_bytes(signed.clone(), &DecodeLimits::default()).unwrap();
    assert!(!package.declaration().verified);
    assert!(package.apply_verification(std::slice::from_ref(&public1)).is_ok());
    assert!(package.declaration().verified);
    assert_ne!(package.checksum(), decode("dummy_plugin.difypkg").checksum());

    // Re-signing replaces the verification file instead of duplicating it.
    let resigned = signature::sign(&signed, &private1, Some("community")).unwrap();
    let archive = read_archive(&resigned, &DecodeLimits::default()).unwrap();
    assert_eq!(archive.entries.iter().filter(|e| e.name == signature::VERIFICATION_FILE).count(), 1);
    assert_eq!(signature::verify_with_keys(&resigned, &[&public1]).unwrap().authorized_category, "community");
}

#[test]
fn tampering_breaks_the_signature() {
    let signed = fixture("langgenius-agent_0.0.14.difypkg");
    let archive = read_archive(&signed, &DecodeLimits::default()).unwrap();
    assert!(signature::verify(&signed, &[]).is_ok());
    for index in 0..archive.entries.len() {
        // One byte changed in one entry.
        let mut entries = archive.entries.clone();
        if entries[index].data.is_empty() {
            entries[index].data.push(b'x');
        } else {
            entries[index].data[0] ^= 0x01;
        }
        let tampered = write_archive(entries.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
        assert_eq!(signature::verify(&tampered, &[]).unwrap_err(), SignatureError::BadSignature, "entry {index}");
    }
    // Rewriting with identical content keeps the signature valid (it covers content, not bytes).
    let same = write_archive(archive.entries.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    assert!(signature::verify(&same, &[]).is_ok());
}

#[test]
fn renaming_or_reordering_breaks_the_signature() {
    let private1 = PrivateKey::from_pem(&key_text("test_key_pair_1.private.pem")).unwrap();
    let public1 = PublicKey::from_pem(&key_text("test_key_pair_1.public.pem")).unwrap();
    let signed = signature::sign(&fixture("dummy_plugin.difypkg"), &private1, Some("langgenius")).unwrap();
    let archive = read_archive(&signed, &DecodeLimits::default()).unwrap();
    assert!(signature::verify_with_keys(&signed, &[&public1]).is_ok());

    // Renaming an entry changes what the package is (its checksum), and the signed
    // verification-file binding: swap two entries' names so contents move between paths.
    let mut renamed = archive.entries.clone();
    let last = renamed.len() - 2;
    let (a, b) = (renamed[0].name.clone(), renamed[last].name.clone());
    renamed[0].name = b;
    renamed[last].name = a;
    renamed.swap(0, last);
    let bytes = write_archive(renamed.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    assert!(signature::verify_with_keys(&bytes, &[&public1]).is_err());

    // A plain rename of one entry.
    let mut renamed = archive.entries.clone();
    renamed[0].name = format!("{}.renamed", renamed[0].name);
    let bytes = write_archive(renamed.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    assert_eq!(signature::verify_with_keys(&bytes, &[&public1]).unwrap_err(), SignatureError::FilesChanged);

    // Renaming the verification file itself must not fall back to the default category.
    let mut renamed = archive.entries.clone();
    let verification = renamed.iter_mut().find(|e| e.name == signature::VERIFICATION_FILE).unwrap();
    verification.name = "notes.json".into();
    let bytes = write_archive(renamed.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    assert_eq!(signature::verify_with_keys(&bytes, &[&public1]).unwrap_err(), SignatureError::FilesChanged);

    // Adding an entry is detected too.
    let mut added = archive.entries.clone();
    added.insert(0, dify_package::ArchiveEntry { name: "extra.txt".into(), data: Vec::new() });
    let bytes = write_archive(added.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    assert!(signature::verify_with_keys(&bytes, &[&public1]).is_err());
}

#[test]
fn unsigned_and_malformed_comments() {
    let archive = read_archive(&fixture("dummy_plugin.difypkg"), &DecodeLimits::default()).unwrap();
    let files = || archive.entries.iter().map(|e| (e.name.as_str(), e.data.as_slice()));
    let garbage = write_archive(files(), b"not json").unwrap();
    assert!(matches!(signature::verify(&garbage, &[]), Err(SignatureError::MalformedSignature(_))));
    let bad_base64 = write_archive(files(), br#"{"signature":"***","time":1}"#).unwrap();
    assert!(matches!(signature::verify(&bad_base64, &[]), Err(SignatureError::MalformedSignature(_))));
    let wrong = write_archive(files(), br#"{"signature":"AAAA","time":1}"#).unwrap();
    assert_eq!(signature::verify(&wrong, &[]).unwrap_err(), SignatureError::BadSignature);
}

#[test]
fn keys_must_be_pkcs1() {
    assert!(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    assert!(PrivateKey::from_pem("garbage").is_err());
    assert!(PublicKey::from_pem(&key_text("test_key_pair_1.private.pem")).is_err());
}

#[test]
fn generated_keys_sign_and_verify() {
    // 4096 bits is the upstream size; a smaller key keeps the test fast and exercises the same code.
    let (private_pem, public_pem) = signature::generate_keypair(1024).unwrap();
    assert!(private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let private = PrivateKey::from_pem(&private_pem).unwrap();
    let public = PublicKey::from_pem(&public_pem).unwrap();
    let signed = signature::sign(&fixture("dummy_plugin.difypkg"), &private, None).unwrap();
    let verification = signature::verify_with_keys(&signed, &[&public]).unwrap();
    assert_eq!(verification.authorized_category, "langgenius", "no verification file means the default");
}

#[test]
fn extracted_fixtures_read_back_identically() {
    for name in ["langgenius-agent_0.0.14.difypkg", "openai.difypkg", "dummy_plugin.difypkg"] {
        let package = decode(name);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("plugin");
        package.extract_to(&root).unwrap();
        let from_dir = Package::from_dir(&root).unwrap();
        assert_eq!(from_dir.checksum(), package.checksum(), "{name}");
        let mut expected = package.declaration().clone();
        expected.verified = false;
        assert_eq!(from_dir.declaration(), &expected, "{name}");
        // Re-packaging the extracted tree yields the same identifier.
        let repacked = dify_package::write::package_dir(&root).unwrap();
        let repacked = Package::from_bytes(repacked, &DecodeLimits::default()).unwrap();
        assert_eq!(repacked.unique_identifier().unwrap(), package.unique_identifier().unwrap(), "{name}");
    }
}

/// A caller that has already checked the size elsewhere may lift the limit entirely; the reader must
/// still work (no arithmetic overflow on the budget) and extract every fixture.
#[test]
fn unlimited_size_limit_decodes_and_extracts_every_fixture() {
    let limits = dify_package::DecodeLimits::with_max_uncompressed_size(u64::MAX);
    for name in ["langgenius-agent_0.0.14.difypkg", "openai.difypkg", "dummy_plugin.difypkg"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream").join(name);
        let bytes = std::fs::read(&path).expect("read fixture");
        let package = dify_package::Package::from_bytes(bytes, &limits).expect("decode with an unlimited size");
        let dir = tempfile::tempdir().expect("tempdir");
        package.extract_to(dir.path().join("x")).expect("extract");
        assert!(dir.path().join("x/manifest.yaml").is_file(), "{name}: manifest extracted");
    }
}
