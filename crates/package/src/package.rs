//! A decoded plugin package: its files, resolved declaration, checksum and signature status.
//!
//! Built from `.difypkg` bytes or from a plugin directory (honouring `.difyignore`). Owns file
//! access, readmes, assets and safe extraction. Must not run plugins or know about storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use once_cell::sync::Lazy;
use regex::Regex;

use crate::archive::{read_archive, ArchiveEntry};
use crate::checksum::{checksum_from_hashes, content_hashes};
use crate::error::PackageError;
use crate::ignore::IgnoreRules;
use crate::limits::DecodeLimits;
use crate::load::{clean_path, load_declaration, FileView};
use crate::signature::{official_public_key, verify_hashed_entries, PublicKey, SignatureError, Verification};

static I18N_README: Lazy<Regex> = Lazy::new(|| Regex::new(r"^README_([a-z]{2}_[A-Za-z]{2,})\.md$").expect("valid regex"));

/// Where the files of a package came from.
#[derive(Debug, Clone)]
enum Source {
    Archive { bytes: Vec<u8>, comment: Vec<u8> },
    Directory { root: PathBuf },
}

/// A decoded plugin package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Files in archive order (ZIP) or walk order (directory).
    entries: Vec<ArchiveEntry>,
    /// Path → index into `entries`, sorted byte-wise.
    index: BTreeMap<String, usize>,
    /// SHA-256 of each entry's content, aligned with `entries`.
    hashes: Vec<[u8; 32]>,
    declaration: PluginDeclaration,
    checksum: String,
    source: Source,
    verification: Option<Verification>,
}

fn build_index(entries: &[ArchiveEntry]) -> BTreeMap<String, usize> {
    entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect()
}

impl Package {
    /// Decodes `.difypkg` bytes within `limits`. The signature is checked against the official
    /// key and recorded in `declaration().verified`; use
    /// [`apply_verification`](Self::apply_verification) to trust more keys.
    pub fn from_bytes(bytes: Vec<u8>, limits: &DecodeLimits) -> Result<Package, PackageError> {
        let archive = read_archive(&bytes, limits)?;
        let source = Source::Archive { bytes, comment: archive.comment };
        Self::from_entries(archive.entries, source)
    }

    /// Reads a plugin directory (non-ignored regular files, lexical walk order) with the default
    /// size limit.
    pub fn from_dir(path: impl AsRef<Path>) -> Result<Package, PackageError> {
        Self::from_dir_with_limits(path, &DecodeLimits::default())
    }

    /// Like [`from_dir`](Self::from_dir) with an explicit total size limit.
    pub fn from_dir_with_limits(path: impl AsRef<Path>, limits: &DecodeLimits) -> Result<Package, PackageError> {
        let root = path.as_ref().to_path_buf();
        let entries = read_plugin_dir(&root, limits)?;
        Self::from_entries(entries, Source::Directory { root })
    }

    fn from_entries(entries: Vec<ArchiveEntry>, source: Source) -> Result<Package, PackageError> {
        let index = build_index(&entries);
        let mut declaration = load_declaration(&FileView { entries: &entries, index: &index })?;
        // Each entry is hashed once; the checksum and the signature check share the hashes.
        let hashes = content_hashes(entries.iter().map(|e| e.data.as_slice()));
        let checksum = checksum_from_hashes(entries.iter().zip(&hashes).map(|(e, hash)| (e.name.as_str(), hash)));
        let verification = match &source {
            Source::Archive { comment, .. } if !comment.is_empty() => {
                verify_hashed_entries(&entries, &hashes, comment, &[official_public_key()]).ok()
            }
            _ => None,
        };
        declaration.verified = verification.is_some();
        Ok(Package { entries, index, hashes, declaration, checksum, source, verification })
    }

    /// The resolved declaration (`verified` reflects the last signature check).
    pub fn declaration(&self) -> &PluginDeclaration {
        &self.declaration
    }

    /// `author/name:version@checksum`. Fails when author, name or version do not fit the
    /// identifier format (the daemon refuses such packages).
    pub fn unique_identifier(&self) -> Result<PluginUniqueIdentifier, PackageError> {
        let d = &self.declaration;
        Ok(PluginUniqueIdentifier::from_parts(&d.author, &d.name, &d.version, &self.checksum)?)
    }

    /// Lowercase hex package checksum.
    pub fn checksum(&self) -> String {
        self.checksum.clone()
    }

    /// Paths of all files, in archive (or walk) order.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Content of a file, by path relative to the package root.
    pub fn read_file(&self, path: &str) -> Option<&[u8]> {
        let cleaned = clean_path(path);
        self.index.get(&cleaned).map(|&i| self.entries[i].data.as_slice())
    }

    /// Files in archive order as `(path, content)`.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|e| (e.name.as_str(), e.data.as_slice()))
    }

    /// Sum of the uncompressed file sizes.
    pub fn uncompressed_size(&self) -> u64 {
        self.entries.iter().map(|e| e.data.len() as u64).sum()
    }

    /// The original `.difypkg` bytes, when decoded from an archive.
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Archive { bytes, .. } => Some(bytes),
            Source::Directory { .. } => None,
        }
    }

    /// The plugin directory, when read from one.
    pub fn source_dir(&self) -> Option<&Path> {
        match &self.source {
            Source::Directory { root } => Some(root),
            Source::Archive { .. } => None,
        }
    }

    /// Every file under `_assets/`, keyed by its path relative to `_assets/`.
    pub fn assets(&self) -> BTreeMap<String, Vec<u8>> {
        self.index
            .range::<str, _>((std::ops::Bound::Included("_assets/"), std::ops::Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with("_assets/"))
            .map(|(name, &i)| (name["_assets/".len()..].to_owned(), self.entries[i].data.clone()))
            .collect()
    }

    /// One asset by its path relative to `_assets/`.
    pub fn asset(&self, name: &str) -> Option<&[u8]> {
        self.read_file(&format!("_assets/{name}"))
    }

    /// Readmes by language: `en_US` from `README.md` (required) plus `readme/README_<lang>.md`.
    pub fn readmes(&self) -> Result<BTreeMap<String, String>, PackageError> {
        let english = self.read_file("README.md").ok_or(PackageError::ReadmeNotFound)?;
        let mut readmes = BTreeMap::new();
        readmes.insert("en_US".to_owned(), String::from_utf8_lossy(english).into_owned());
        for (name, &i) in self
            .index
            .range::<str, _>((std::ops::Bound::Included("readme/"), std::ops::Bound::Unbounded))
            .take_while(|(n, _)| n.starts_with("readme/"))
        {
            let file = &name["readme/".len()..];
            if let Some(captures) = I18N_README.captures(file) {
                readmes.insert(captures[1].to_owned(), String::from_utf8_lossy(&self.entries[i].data).into_owned());
            }
        }
        Ok(readmes)
    }

    /// The readme for `language`, falling back to `en_US`, then to any language. Returns the
    /// language actually served and the content.
    pub fn readme_with_language(&self, language: &str) -> Option<(String, String)> {
        let mut readmes = self.readmes().ok()?;
        if let Some(content) = readmes.remove(language) {
            return Some((language.to_owned(), content));
        }
        if let Some(content) = readmes.remove("en_US") {
            return Some(("en_US".to_owned(), content));
        }
        readmes.into_iter().next()
    }

    /// The readme content for `language` with the same fallback as
    /// [`readme_with_language`](Self::readme_with_language).
    pub fn readme(&self, language: &str) -> Option<String> {
        self.readme_with_language(language).map(|(_, content)| content)
    }

    /// The verification found with the official key at decode time (or by the last
    /// [`apply_verification`](Self::apply_verification)).
    pub fn verification(&self) -> Option<&Verification> {
        self.verification.as_ref()
    }

    /// Re-checks the signature against the official key plus `extra_keys`, records the result in
    /// `declaration().verified`, and returns it.
    pub fn apply_verification(&mut self, extra_keys: &[PublicKey]) -> Result<Verification, SignatureError> {
        let result = self.verify_signature(extra_keys);
        self.verification = result.as_ref().ok().cloned();
        self.declaration.verified = self.verification.is_some();
        result
    }

    /// Checks the signature against the official key plus `extra_keys` without changing state.
    pub fn verify_signature(&self, extra_keys: &[PublicKey]) -> Result<Verification, SignatureError> {
        let comment = match &self.source {
            Source::Archive { comment, .. } => comment.as_slice(),
            Source::Directory { .. } => &[],
        };
        if comment.is_empty() {
            return Err(SignatureError::NotSigned);
        }
        let mut keys: Vec<&PublicKey> = vec![official_public_key()];
        keys.extend(extra_keys.iter());
        verify_hashed_entries(&self.entries, &self.hashes, comment, &keys)
    }

    /// Writes every file under `dir` (created if needed; dirs 0755, files 0644). On any error the
    /// whole `dir` is removed, like upstream.
    pub fn extract_to(&self, dir: impl AsRef<Path>) -> Result<(), PackageError> {
        let dir = dir.as_ref();
        let result = self.extract_inner(dir);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }

    fn extract_inner(&self, dir: &Path) -> Result<(), PackageError> {
        std::fs::create_dir_all(dir)?;
        for entry in &self.entries {
            // Names were checked at decode time; re-check so extraction is safe on its own.
            let relative = Path::new(&entry.name);
            let safe = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe {
                return Err(PackageError::PathTraversal { name: entry.name.clone() });
            }
            let target = dir.join(relative);
            if let Some(parent) = target.parent() {
                create_dirs_without_symlinks(dir, parent)?;
            }
            write_file_0644(&target, &entry.data)?;
        }
        Ok(())
    }
}

/// Creates `parent` (inside `root`), refusing to walk through a symlink planted in the tree.
fn create_dirs_without_symlinks(root: &Path, parent: &Path) -> Result<(), PackageError> {
    let relative = parent.strip_prefix(root).map_err(|_| PackageError::PathTraversal { name: parent.display().to_string() })?;
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(PackageError::Symlink { name: current.display().to_string() }),
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(PackageError::Io(format!("{} exists and is not a directory", current.display()))),
            Err(_) => {
                std::fs::create_dir(&current)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
    }
    Ok(())
}

fn write_file_0644(path: &Path, data: &[u8]) -> Result<(), PackageError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(PackageError::Symlink { name: path.display().to_string() });
        }
    }
    std::fs::write(path, data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Loads the ignore rules of a plugin directory: `.difyignore`, else `.gitignore`, else none.
pub fn ignore_rules_for(root: &Path) -> Result<IgnoreRules, PackageError> {
    for name in [".difyignore", ".gitignore"] {
        match std::fs::read_to_string(root.join(name)) {
            Ok(text) => return Ok(IgnoreRules::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(IgnoreRules::default())
}

/// Lists the non-ignored regular files of a plugin directory as relative `/` paths, in lexical
/// walk order, with their sizes.
pub fn list_plugin_dir(root: &Path) -> Result<Vec<(String, u64)>, PackageError> {
    let rules = ignore_rules_for(root)?;
    let mut files = Vec::new();
    walk(root, "", &rules, &mut files)?;
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, rules: &IgnoreRules, out: &mut Vec<(String, u64)>) -> Result<(), PackageError> {
    let mut children: Vec<(String, std::fs::FileType, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|raw| PackageError::NonUtf8Name { raw: raw.to_string_lossy().into_owned().into_bytes() })?;
        let meta = entry.path().symlink_metadata()?;
        children.push((name, meta.file_type(), meta.len()));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, file_type, len) in children {
        let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if file_type.is_dir() {
            if !rules.is_ignored(&relative, true) {
                walk(&dir.join(&name), &relative, rules, out)?;
            }
        } else if file_type.is_file() && !rules.is_ignored(&relative, false) {
            out.push((relative, len));
        }
    }
    Ok(())
}

/// Reads the non-ignored files of a plugin directory within `limits.max_uncompressed_size`.
pub(crate) fn read_plugin_dir(root: &Path, limits: &DecodeLimits) -> Result<Vec<ArchiveEntry>, PackageError> {
    let listed = list_plugin_dir(root)?;
    let total: u64 = listed.iter().map(|(_, len)| len).sum();
    if total > limits.max_uncompressed_size {
        let mut largest = listed.clone();
        largest.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
        largest.truncate(5);
        return Err(PackageError::DirectoryTooLarge { limit: limits.max_uncompressed_size, largest });
    }
    listed
        .into_iter()
        .map(|(name, _)| {
            let data = std::fs::read(root.join(&name))?;
            Ok(ArchiveEntry { name, data })
        })
        .collect()
}
