//! Package signatures (docs/packaging.md §3): RSA PKCS#1 v1.5 + SHA-256 over the SHA-256 of
//! every entry in archive order followed by the decimal signing time; the signature and time live
//! in the ZIP comment as `{"signature":"<base64>","time":<secs>}`; the optional
//! `.verification.dify.json` entry carries the authorized category.
//! Owns key parsing (PKCS#1 PEM only), key generation, signing and verification. Must not read
//! configuration or key files: callers pass PEM text.

use base64::Engine;
use once_cell::sync::Lazy;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{read_archive, write_archive, ArchiveEntry};
use crate::checksum::{checksum_from_hashes, content_hashes};
use crate::error::PackageError;
use crate::limits::DecodeLimits;

/// Name of the entry holding the authorized category of a signed package.
pub const VERIFICATION_FILE: &str = ".verification.dify.json";

/// The official public key that signs marketplace plugins.
const OFFICIAL_PUBLIC_KEY_PEM: &str = include_str!("../../../tests/fixtures/upstream/keys/official_public_key.pem");

static OFFICIAL_PUBLIC_KEY: Lazy<PublicKey> =
    Lazy::new(|| PublicKey::from_pem(OFFICIAL_PUBLIC_KEY_PEM).expect("the embedded official key is a valid PKCS#1 PEM"));

/// Categories a signer may claim.
pub const AUTHORIZED_CATEGORIES: [&str; 3] = ["langgenius", "partner", "community"];

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("plugin is not signed")]
    NotSigned,
    #[error("malformed signature comment: {0}")]
    MalformedSignature(String),
    #[error("signature does not match any trusted key")]
    BadSignature,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("signed files were renamed, added or removed after signing")]
    FilesChanged,
    #[error("invalid verification file: {0}")]
    InvalidVerificationFile(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// An RSA public key read from a PKCS#1 PEM (`RSA PUBLIC KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(RsaPublicKey);

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        RsaPublicKey::from_pkcs1_pem(pem.trim()).map(Self).map_err(|e| SignatureError::InvalidKey(e.to_string()))
    }

    pub fn to_pem(&self) -> Result<String, SignatureError> {
        self.0.to_pkcs1_pem(LineEnding::LF).map_err(|e| SignatureError::InvalidKey(e.to_string()))
    }
}

/// An RSA private key read from a PKCS#1 PEM (`RSA PRIVATE KEY`).
#[derive(Clone)]
pub struct PrivateKey(RsaPrivateKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        RsaPrivateKey::from_pkcs1_pem(pem.trim()).map(Self).map_err(|e| SignatureError::InvalidKey(e.to_string()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_public_key())
    }
}

/// The embedded official key.
pub fn official_public_key() -> &'static PublicKey {
    &OFFICIAL_PUBLIC_KEY
}

/// Content of `.verification.dify.json`; also the result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub authorized_category: String,
}

impl Default for Verification {
    /// Signed packages without a verification file were all signed by LangGenius.
    fn default() -> Self {
        Self { authorized_category: "langgenius".to_owned() }
    }
}

/// What this implementation writes into `.verification.dify.json`. Upstream's signed message
/// covers entry contents and time but not entry names, so renaming an entry would keep a signature
/// valid. `files_checksum` (the package checksum of every other entry, names included) binds the
/// names: the file itself is covered by the signature, and Go verifiers ignore the extra key.
#[derive(Serialize, Deserialize)]
struct VerificationFile {
    authorized_category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files_checksum: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SignatureComment {
    signature: String,
    time: i64,
}

/// Generates an RSA key pair; returns `(private_pem, public_pem)` in PKCS#1 form. Upstream uses
/// 4096 bits.
pub fn generate_keypair(bits: usize) -> Result<(String, String), SignatureError> {
    let mut rng = rand::thread_rng();
    let private = RsaPrivateKey::new(&mut rng, bits).map_err(|e| SignatureError::InvalidKey(e.to_string()))?;
    let private_pem = private.to_pkcs1_pem(LineEnding::LF).map_err(|e| SignatureError::InvalidKey(e.to_string()))?.to_string();
    let public_pem = private.to_public_key().to_pkcs1_pem(LineEnding::LF).map_err(|e| SignatureError::InvalidKey(e.to_string()))?;
    Ok((private_pem, public_pem))
}

/// The digest that is signed: SHA-256 of (SHA-256 of each entry in order ‖ decimal time).
fn signed_digest(hashes: &[[u8; 32]], time: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(hashes.len() * 32 + 20);
    for hash in hashes {
        message.extend_from_slice(hash);
    }
    message.extend_from_slice(time.to_string().as_bytes());
    Sha256::digest(&message).to_vec()
}

/// Verifies decoded entries (in archive order) and the archive comment against `keys`.
pub fn verify_entries(entries: &[ArchiveEntry], comment: &[u8], keys: &[&PublicKey]) -> Result<Verification, SignatureError> {
    if comment.is_empty() {
        return Err(SignatureError::NotSigned);
    }
    let hashes = content_hashes(entries.iter().map(|e| e.data.as_slice()));
    verify_hashed_entries(entries, &hashes, comment, keys)
}

/// [`verify_entries`] with the entries' content hashes already computed (same order).
pub(crate) fn verify_hashed_entries(
    entries: &[ArchiveEntry],
    hashes: &[[u8; 32]],
    comment: &[u8],
    keys: &[&PublicKey],
) -> Result<Verification, SignatureError> {
    if comment.is_empty() {
        return Err(SignatureError::NotSigned);
    }
    let parsed: SignatureComment = serde_json::from_slice(comment).map_err(|e| SignatureError::MalformedSignature(e.to_string()))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(parsed.signature.as_bytes())
        .map_err(|e| SignatureError::MalformedSignature(e.to_string()))?;
    let digest = signed_digest(hashes, parsed.time);
    let trusted = keys.iter().any(|key| key.0.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature).is_ok());
    if !trusted {
        return Err(SignatureError::BadSignature);
    }
    match entries.iter().find(|e| e.name == VERIFICATION_FILE) {
        Some(entry) => {
            let file: VerificationFile =
                serde_json::from_slice(&entry.data).map_err(|e| SignatureError::InvalidVerificationFile(e.to_string()))?;
            if let Some(expected) = file.files_checksum {
                if files_checksum(entries, hashes) != expected {
                    return Err(SignatureError::FilesChanged);
                }
            }
            Ok(Verification { authorized_category: file.authorized_category })
        }
        None => {
            // A verification file moved to another name would otherwise silently fall back to
            // the default (most trusted) category.
            if entries.iter().any(|e| looks_like_verification_file(&e.data)) {
                return Err(SignatureError::FilesChanged);
            }
            Ok(Verification::default())
        }
    }
}

fn looks_like_verification_file(data: &[u8]) -> bool {
    data.len() <= 4096
        && data.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
            .is_ok_and(|object| object.contains_key("authorized_category"))
}

/// Checksum (names and contents) of every entry except the verification file.
fn files_checksum(entries: &[ArchiveEntry], hashes: &[[u8; 32]]) -> String {
    checksum_from_hashes(
        entries
            .iter()
            .zip(hashes)
            .filter(|(e, _)| e.name != VERIFICATION_FILE)
            .map(|(e, hash)| (e.name.as_str(), hash)),
    )
}

/// Verifies a package with the official key plus `extra_keys` (default decode limits). When the
/// package is decoded anyway, [`Package::verify_signature`](crate::Package::verify_signature)
/// avoids inflating it a second time.
pub fn verify(bytes: &[u8], extra_keys: &[PublicKey]) -> Result<Verification, SignatureError> {
    let mut keys: Vec<&PublicKey> = vec![official_public_key()];
    keys.extend(extra_keys.iter());
    verify_with_keys(bytes, &keys)
}

/// Verifies a package with exactly the given keys (the CLI's `verify -p`), decoding it within
/// the default limits.
pub fn verify_with_keys(bytes: &[u8], keys: &[&PublicKey]) -> Result<Verification, SignatureError> {
    verify_with_limits(bytes, keys, &DecodeLimits::default())
}

/// Verifies a package with exactly the given keys, decoding it within `limits`. An unsigned
/// archive is reported without inflating any entry.
pub fn verify_with_limits(bytes: &[u8], keys: &[&PublicKey], limits: &DecodeLimits) -> Result<Verification, SignatureError> {
    if crate::archive::read_comment(bytes)?.is_empty() {
        return Err(SignatureError::NotSigned);
    }
    let archive = read_archive(bytes, limits)?;
    verify_entries(&archive.entries, &archive.comment, keys)
}

/// Signs a package: rewrites the archive with the same entries in the same order (dropping any
/// previous verification file), appends `.verification.dify.json` when `category` is given, and
/// stores the signature in the ZIP comment.
pub fn sign(bytes: &[u8], key: &PrivateKey, category: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let time = chrono::Utc::now().timestamp();
    sign_at(bytes, key, category, time)
}

/// [`sign`] with an explicit signing time (seconds since the epoch).
pub fn sign_at(bytes: &[u8], key: &PrivateKey, category: Option<&str>, time: i64) -> Result<Vec<u8>, SignatureError> {
    let archive = read_archive(bytes, &DecodeLimits::for_bundle())?;
    let mut entries: Vec<ArchiveEntry> = archive.entries.into_iter().filter(|e| e.name != VERIFICATION_FILE).collect();
    if let Some(category) = category {
        let hashes = content_hashes(entries.iter().map(|e| e.data.as_slice()));
        let verification =
            VerificationFile { authorized_category: category.to_owned(), files_checksum: Some(files_checksum(&entries, &hashes)) };
        let data = serde_json::to_vec(&verification).map_err(|e| SignatureError::Signing(e.to_string()))?;
        entries.push(ArchiveEntry { name: VERIFICATION_FILE.to_owned(), data });
    }
    let hashes = content_hashes(entries.iter().map(|e| e.data.as_slice()));
    let digest = signed_digest(&hashes, time);
    let signature = key.0.sign(Pkcs1v15Sign::new::<Sha256>(), &digest).map_err(|e| SignatureError::Signing(e.to_string()))?;
    let comment = SignatureComment { signature: base64::engine::general_purpose::STANDARD.encode(signature), time };
    let comment = serde_json::to_vec(&comment).map_err(|e| SignatureError::Signing(e.to_string()))?;
    Ok(write_archive(entries.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &comment)?)
}
