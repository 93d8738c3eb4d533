//! Uploaded packages and bundles: decoding, signature rules, persistence of package bytes, assets and
//! declarations, and everything read back from a stored package (manifest, readme, files, assets).
//!
//! Persistence order keeps crashes harmless: assets and package bytes are written (atomically)
//! before the declaration row that makes the version visible, and every step is idempotent; the
//! temporary upload files a crash leaves behind are removed at the next start
//! ([`remove_stale_uploads`]).

use dify_protocol::api::{PackageBundleDependency, PluginBundleDependency, PluginDecodeResponse, PluginReadmeResponse, PluginVerification};
use dify_protocol::{DaemonError, PluginDeclaration};
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::codec::{self, BundleDependency, DecodedPackage};
use super::{asset_key, load_declaration, load_declaration_row, package_key, parse_identifier, ServiceResult};
use crate::config::Settings;
use crate::service::state::AppState;

/// Exact upstream text for a package that fails the signature requirement.
pub const BAD_SIGNATURE_MESSAGE: &str = "plugin verification has been enabled, and the plugin you want to install has a bad signature";
/// Text for an unsigned package that claims langgenius authorship.
pub const LANGGENIUS_UNSIGNED_MESSAGE: &str = "plugin claims to be authored by langgenius but is not signed by langgenius";
pub const FILE_TOO_LARGE_MESSAGE: &str = "file size exceeds the maximum limit";

/// Content-addressed asset id: sha256(bytes ‖ file name) in hex plus the file's extension.
pub fn asset_id(file_name: &str, bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update(file_name.as_bytes());
    let ext = std::path::Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    format!("{}{}", hex::encode(hasher.finalize()), ext)
}

const ICON_FIELDS: [&str; 6] = ["icon", "icon_dark", "icon_small", "icon_large", "icon_small_dark", "icon_large_dark"];

/// Rewrites every icon field of a declaration (at any depth) that names a package asset to the
/// asset's id. I18n icon objects have each language rewritten.
pub fn remap_icon_fields(value: &mut Value, ids: &std::collections::HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if ICON_FIELDS.contains(&key.as_str()) {
                    match child {
                        Value::String(s) => {
                            if let Some(id) = ids.get(s.as_str()) {
                                *s = id.clone();
                            }
                        }
                        Value::Object(langs) => {
                            for v in langs.values_mut() {
                                if let Value::String(s) = v {
                                    if let Some(id) = ids.get(s.as_str()) {
                                        *s = id.clone();
                                    }
                                }
                            }
                        }
                        _ => remap_icon_fields(child, ids),
                    }
                } else {
                    remap_icon_fields(child, ids);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| remap_icon_fields(v, ids)),
        _ => {}
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Decodes and checks a package against the signature rules; nothing is stored.
fn check_package(
    state: &AppState,
    bytes: &[u8],
    verify_signature: bool,
    enforce_langgenius: bool,
) -> ServiceResult<(DecodedPackage, Option<PluginVerification>)> {
    let decoded = codec::decode_package(bytes, state.settings.max_plugin_package_size, &state.extra_public_keys);
    check_decoded(state, decoded, verify_signature, enforce_langgenius)
}

/// The signature and manifest rules of [`check_package`] on a decoding result.
fn check_decoded(
    state: &AppState,
    decoded: Result<(DecodedPackage, Option<PluginVerification>), codec::CodecError>,
    verify_signature: bool,
    enforce_langgenius: bool,
) -> ServiceResult<(DecodedPackage, Option<PluginVerification>)> {
    let (decoded, verification) = decoded.map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to decode package")))?;
    if is_uuid(&decoded.declaration.author) {
        return Err(DaemonError::bad_request("cannot set author to an UUID"));
    }
    if let Err(problems) = decoded.declaration.validate_for_daemon() {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(DaemonError::bad_request(format!("{}\nillegal plugin manifest\nfailed to decode package", text.join("\n"))));
    }
    if (state.settings.force_verifying_signature || verify_signature) && verification.is_none() {
        return Err(DaemonError::bad_request(BAD_SIGNATURE_MESSAGE));
    }
    if enforce_langgenius
        && decoded.declaration.author.eq_ignore_ascii_case("langgenius")
        && verification.as_ref().map(|v| v.authorized_category.as_str()) != Some("langgenius")
    {
        return Err(DaemonError::bad_request(LANGGENIUS_UNSIGNED_MESSAGE));
    }
    Ok((decoded, verification))
}

/// Where the bytes of a package to store are: in memory, or in a local file (an upload received
/// into a [`SpooledUpload`]) that is streamed to the blob store.
enum PackageBytes<'a> {
    Memory(&'a [u8]),
    File(&'a std::path::Path),
}

/// Stores assets, package bytes and the declaration of a checked package; returns the upload data.
async fn persist_package(
    state: &AppState,
    bytes: PackageBytes<'_>,
    decoded: DecodedPackage,
    verification: Option<PluginVerification>,
) -> ServiceResult<PluginDecodeResponse> {
    let uid = decoded.unique_identifier.to_string();
    let mut ids = std::collections::HashMap::new();
    for (name, content) in &decoded.assets {
        let id = asset_id(name, content);
        state
            .blobs
            .put(&asset_key(state, &id), content)
            .await
            .map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to save package")))?;
        ids.insert(name.clone(), id);
    }
    let mut declaration = decoded.declaration;
    declaration.verified = verification.is_some();
    let mut manifest = declaration.to_json_value();
    remap_icon_fields(&mut manifest, &ids);
    let key = package_key(state, &uid);
    let stored = match bytes {
        PackageBytes::Memory(bytes) => state.blobs.put(&key, bytes).await,
        PackageBytes::File(path) => state.blobs.put_file(&key, path).await,
    };
    stored.map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to save package")))?;
    state
        .db
        .save_declaration(&uid, decoded.unique_identifier.plugin_id(), &manifest.to_string())
        .await
        .map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to save package")))?;
    // An earlier upload of the same bytes may have stored the declaration; answer with what is stored.
    let stored = match load_declaration_row(state, &uid).await? {
        Some(stored) => stored,
        None => PluginDeclaration::from_json(manifest.to_string().as_bytes())
            .map_err(|e| DaemonError::internal(format!("declaration of {uid} is unreadable: {e}")))?,
    };
    Ok(PluginDecodeResponse { unique_identifier: decoded.unique_identifier, manifest: stored, verification })
}

/// The declaration of a version whose `plugin_declarations` row is gone, decoded again from its stored
/// package and persisted as on upload (assets, declaration row). `None` when no package is stored
/// under `uid`; the signature rules are not applied again (the package passed them on upload).
pub(crate) async fn restore_declaration(state: &AppState, uid: &str) -> ServiceResult<Option<PluginDeclaration>> {
    let bytes = match state.blobs.get(&package_key(state, uid)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(DaemonError::internal(format!("stored package of {uid} is unreadable: {e}"))),
    };
    let (decoded, verification) = codec::decode_package(&bytes, state.settings.max_plugin_package_size, &state.extra_public_keys)
        .map_err(|e| DaemonError::internal(format!("stored package of {uid} is undecodable: {e}")))?;
    if decoded.unique_identifier.as_str() != uid {
        return Ok(None);
    }
    let response = persist_package(state, PackageBytes::Memory(&bytes), decoded, verification).await?;
    Ok(Some(response.manifest))
}

/// `POST install/upload/package`.
pub async fn upload_package(state: &AppState, upload: &SpooledUpload, verify_signature: bool) -> ServiceResult<PluginDecodeResponse> {
    if upload.too_large() || upload.size() > state.settings.max_plugin_package_size {
        state.metrics.observe_upload("failed");
        return Err(DaemonError::bad_request(FILE_TOO_LARGE_MESSAGE));
    }
    let result = async {
        // The archive is decoded in memory; the bucket gets the file streamed from disk.
        let bytes = tokio::fs::read(upload.path())
            .await
            .map_err(|e| DaemonError::internal(format!("cannot read the received package: {e}")))?;
        // As upstream, the langgenius-authorship rule applies to bundles only: a single unsigned package
        // by `langgenius` (an offline or repackaged copy of an official plugin) is accepted.
        let decoded = codec::decode_owned_package(bytes, state.settings.max_plugin_package_size, &state.extra_public_keys);
        let (decoded, verification) = check_decoded(state, decoded, verify_signature, false)?;
        persist_package(state, PackageBytes::File(upload.path()), decoded, verification).await
    }
    .await;
    state.metrics.observe_upload(if result.is_ok() { "success" } else { "failed" });
    result
}

/// The directory uploads are spooled to (and package copies pass through): `<storage root>/.uploads`.
pub fn uploads_dir(settings: &Settings) -> PathBuf {
    settings.storage_root().join(".uploads")
}

/// Removes the temporary files a daemon that stopped mid-upload left in [`uploads_dir`]: only regular
/// files directly in that directory (nothing below it, no directory), and only those last modified
/// before `started`, this process's start, so that nothing this run spools is touched. Returns how
/// many were removed; a missing directory is none, and a file that cannot be removed is logged and
/// kept.
pub fn remove_stale_uploads(settings: &Settings, started: SystemTime) -> usize {
    let dir = uploads_dir(settings);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "cannot list the upload directory to remove leftover files");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        // `file_type` does not follow symbolic links: a link is neither followed nor removed.
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let older = entry.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified < started);
        if !is_file || !older {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, file = %entry.path().display(), "cannot remove a leftover upload file"),
        }
    }
    removed
}

/// An uploaded file received into a temporary file under `<PLUGIN_STORAGE_LOCAL_ROOT>/.uploads`, so
/// that a request body is never held whole in memory while it arrives. Counting stops writing once
/// the size passes the limit (the rest of the body is only counted). The file is removed on drop.
pub struct SpooledUpload {
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
    max: u64,
}

impl SpooledUpload {
    /// An empty upload accepting at most `max` bytes.
    pub async fn create(state: &AppState, max: u64) -> std::io::Result<SpooledUpload> {
        let dir = uploads_dir(&state.settings);
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(uuid::Uuid::now_v7().to_string());
        let file = tokio::fs::File::create(&path).await?;
        Ok(SpooledUpload { path, file: Some(file), size: 0, max })
    }

    /// Appends a chunk of the body (only counted once the limit is passed).
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.size += chunk.len() as u64;
        if self.size > self.max {
            if let Some(file) = self.file.take() {
                drop(file);
                tokio::fs::write(&self.path, b"").await?;
            }
            return Ok(());
        }
        if let Some(file) = &mut self.file {
            file.write_all(chunk).await?;
        }
        Ok(())
    }

    /// Flushes what was written; call before reading the file.
    pub async fn finish(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if let Some(file) = &mut self.file {
            file.flush().await?;
            file.sync_data().await?;
        }
        Ok(())
    }

    pub fn too_large(&self) -> bool {
        self.size > self.max
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for SpooledUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `POST install/upload/bundle`: every embedded package is checked before any is stored.
pub async fn upload_bundle(state: &AppState, bytes: &[u8], verify_signature: bool) -> ServiceResult<Vec<PluginBundleDependency>> {
    if bytes.len() as u64 > state.settings.max_bundle_package_size {
        return Err(DaemonError::bad_request(FILE_TOO_LARGE_MESSAGE));
    }
    let dependencies = codec::decode_bundle(bytes).map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to decode bundle")))?;
    let mut checked = Vec::new();
    for dependency in &dependencies {
        if let BundleDependency::Package { bytes: pkg } = dependency {
            let (decoded, verification) = check_package(state, pkg, verify_signature, state.settings.enforce_langgenius_plugin_signatures)?;
            checked.push(Some((pkg.clone(), decoded, verification)));
        } else {
            checked.push(None);
        }
    }
    // The bundle itself is kept by content hash, like packages are kept by identifier.
    let bundle_key = format!("bundles/{}.difybndl", hex::encode(Sha256::digest(bytes)));
    state
        .blobs
        .put(&bundle_key, bytes)
        .await
        .map_err(|e| DaemonError::internal(format!("{e}\nfailed to save bundle")))?;
    let mut out = Vec::new();
    for (dependency, checked) in dependencies.into_iter().zip(checked) {
        match (dependency, checked) {
            (BundleDependency::Package { .. }, Some((pkg, decoded, verification))) => {
                let uploaded = persist_package(state, PackageBytes::Memory(&pkg), decoded, verification)
                    .await
                    .map_err(|e| DaemonError::internal(e.message))?;
                out.push(PluginBundleDependency::Package(Box::new(PackageBundleDependency {
                    unique_identifier: uploaded.unique_identifier,
                    manifest: uploaded.manifest,
                })));
            }
            (BundleDependency::Github(github), _) => out.push(PluginBundleDependency::Github(github)),
            (BundleDependency::Marketplace(marketplace), _) => out.push(PluginBundleDependency::Marketplace(marketplace)),
            (BundleDependency::Package { .. }, None) => {}
        }
    }
    Ok(out)
}

async fn stored_package(state: &AppState, uid: &str) -> ServiceResult<Option<Vec<u8>>> {
    state.blobs.get(&package_key(state, uid)).await.map_err(|e| DaemonError::internal(e.to_string()))
}

/// `GET decode/from_identifier`: re-decodes the stored package.
pub async fn decode_from_identifier(state: &AppState, uid: &str) -> ServiceResult<PluginDecodeResponse> {
    let id = parse_identifier(uid)?;
    let Some(bytes) = stored_package(state, id.as_str()).await? else {
        return Err(DaemonError::bad_request("plugin package not found, please upload it firstly"));
    };
    let (decoded, verification) = codec::decode_package(&bytes, state.settings.max_plugin_package_size, &state.extra_public_keys)
        .map_err(|e| DaemonError::bad_request(format!("{e}\nfailed to decode package")))?;
    let manifest = match load_declaration(state, id.as_str()).await? {
        Some(stored) => stored,
        None => {
            let mut d = decoded.declaration;
            d.verified = verification.is_some();
            d.fill_in_default_values();
            d
        }
    };
    Ok(PluginDecodeResponse { unique_identifier: decoded.unique_identifier, manifest, verification })
}

/// `GET fetch/manifest`.
pub async fn fetch_manifest(state: &AppState, uid: &str) -> ServiceResult<PluginDeclaration> {
    let id = parse_identifier(uid)?;
    match load_declaration(state, id.as_str()).await? {
        Some(stored) => Ok(stored),
        None => Err(DaemonError::bad_request("plugin not found")),
    }
}

/// `GET fetch/identifier`: whether some tenant has this version installed.
pub async fn fetch_identifier(state: &AppState, uid: &str) -> ServiceResult<bool> {
    let id = parse_identifier(uid)?;
    Ok(state.db.plugin(id.as_str()).await?.is_some())
}

/// `GET fetch/readme`: the requested language, else `en_US`, else any.
pub async fn fetch_readme(state: &AppState, uid: &str, language: Option<&str>) -> ServiceResult<PluginReadmeResponse> {
    let id = parse_identifier(uid)?;
    let mut readmes = state.db.readmes(id.as_str()).await?;
    if readmes.is_empty() {
        if let Some(bytes) = stored_package(state, id.as_str()).await? {
            if let Ok((decoded, _)) = codec::decode_package(&bytes, state.settings.max_plugin_package_size, &[]) {
                if !decoded.readmes.is_empty() {
                    state.db.save_readmes(id.as_str(), &decoded.readmes).await?;
                    readmes = decoded.readmes;
                }
            }
        }
    }
    let pick = language
        .filter(|l| !l.is_empty())
        .and_then(|l| readmes.iter().find(|(lang, _)| lang == l))
        .or_else(|| readmes.iter().find(|(lang, _)| lang == "en_US"))
        .or_else(|| readmes.first());
    match pick {
        Some((lang, content)) => Ok(PluginReadmeResponse { content: content.clone(), language: lang.clone() }),
        None => Err(DaemonError::not_found("no readme content available for this plugin")),
    }
}

/// `GET extract-asset/`: a file inside the stored package (empty when the path is absent).
pub async fn extract_asset(state: &AppState, uid: &str, file_path: &str) -> ServiceResult<Vec<u8>> {
    let id = parse_identifier(uid)?;
    let Some(bytes) = stored_package(state, id.as_str()).await? else {
        return Err(DaemonError::internal("plugin package not found"));
    };
    codec::read_file(&bytes, file_path, state.settings.max_plugin_package_size)
        .map(|f| f.unwrap_or_default())
        .map_err(|e| DaemonError::internal(e.to_string()))
}

/// Longest asset id accepted: ids are a 64-digit hash plus the file's extension.
pub const MAX_ASSET_ID_LEN: usize = 128;

/// Whether `id` can name a stored asset: 1..=[`MAX_ASSET_ID_LEN`] bytes of ASCII letters, digits,
/// `.`, `_` and `-`, not starting with a dot and without `..` (so never a path, a control character
/// or a name the file system refuses).
pub fn is_plausible_asset_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ASSET_ID_LEN
        && !id.starts_with('.')
        && !id.contains("..")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `GET asset/:id`: stored asset bytes (`None` when absent).
pub async fn asset(state: &AppState, asset_id: &str) -> ServiceResult<Option<Vec<u8>>> {
    if !is_plausible_asset_id(asset_id) {
        return Ok(None);
    }
    state.blobs.get(&asset_key(state, asset_id)).await.map_err(|e| DaemonError::internal(e.to_string()))
}

/// The declaration stored for `uid`, or the install-time error upstream reports.
pub async fn declaration_for_install(state: &AppState, uid: &str) -> ServiceResult<PluginDeclaration> {
    load_declaration(state, uid)
        .await?
        .ok_or_else(|| DaemonError::internal("plugin not found\nfailed to get plugin declaration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn icon_fields_are_remapped_at_any_depth() {
        let mut ids = std::collections::HashMap::new();
        ids.insert("icon.svg".to_string(), "abc.svg".to_string());
        let mut v = json!({"icon": "icon.svg", "icon_dark": "", "model": {"icon_small": {"en_US": "icon.svg"}},
                           "tool": {"identity": {"icon": "icon.svg", "name": "icon.svg"}}});
        remap_icon_fields(&mut v, &ids);
        assert_eq!(v["icon"], "abc.svg");
        assert_eq!(v["icon_dark"], "");
        assert_eq!(v["model"]["icon_small"]["en_US"], "abc.svg");
        assert_eq!(v["tool"]["identity"]["icon"], "abc.svg");
        assert_eq!(v["tool"]["identity"]["name"], "icon.svg");
    }

    #[test]
    fn asset_id_keeps_extension() {
        let id = asset_id("icon.svg", b"<svg/>");
        assert!(id.ends_with(".svg"));
        assert_eq!(id.len(), 64 + 4);
        assert!(is_plausible_asset_id(&id));
    }

    #[test]
    fn implausible_asset_ids() {
        let long = "a".repeat(MAX_ASSET_ID_LEN + 1);
        for id in ["", "a\0b", "a/b", "..", "../x", ".hidden", "a b", "a\u{7f}b", "é.svg", long.as_str()] {
            assert!(!is_plausible_asset_id(id), "{id:?}");
        }
        assert!(is_plausible_asset_id("abc-DEF_1.png"));
    }
}
