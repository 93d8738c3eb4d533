//! `dify signature generate|sign|verify`: RSA key pairs and package signatures.
//!
//! File names, flags and messages follow upstream: `generate -f NAME` writes
//! `NAME.private.pem`/`NAME.public.pem`; `sign` writes `<base>.signed<ext>` next to the input;
//! `verify` trusts only the official key unless `-p` names another one (then only that one).
//! The cryptography is `dify-package`'s; this module reads and writes files only.

use std::path::{Path, PathBuf};

use dify_package::signature::{self as sig, SignatureError, AUTHORIZED_CATEGORIES};
use dify_package::{PrivateKey, PublicKey};
use serde::Serialize;

use crate::error::{CliError, CliResult};
use crate::output::{LogLine, OutputFormat, Render, TextOutput};
use crate::progress::Spinner;

/// Key size used by upstream and by this CLI.
pub const KEY_BITS: usize = 4096;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Path prefix; `.private.pem` and `.public.pem` are appended.
    pub filename: PathBuf,
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyPairResult {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
}

impl Render for KeyPairResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("key pair generated successfully")
            .field("private_key", self.private_key.display())
            .field("public_key", self.public_key.display())])
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn generate(opts: &GenerateOptions) -> CliResult<KeyPairResult> {
    generate_with_bits(opts, KEY_BITS)
}

/// [`generate`] with an explicit key size (tests use smaller keys for speed).
pub fn generate_with_bits(opts: &GenerateOptions, bits: usize) -> CliResult<KeyPairResult> {
    let spinner = Spinner::start(opts.format, "generating RSA key pair");
    let (private_pem, public_pem) = sig::generate_keypair(bits)
        .map_err(|e| CliError::generic(format!("failed to generate key pair: {e}"), "try again; this needs a working random source"))?;
    spinner.finish();
    let private_key = with_suffix(&opts.filename, ".private.pem");
    let public_key = with_suffix(&opts.filename, ".public.pem");
    write_key(&private_key, private_pem.as_bytes())?;
    write_key(&public_key, public_pem.as_bytes())?;
    Ok(KeyPairResult { private_key, public_key })
}

fn write_key(path: &Path, pem: &[u8]) -> CliResult<()> {
    std::fs::write(path, pem).map_err(|e| CliError::io("write", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|e| CliError::io("set permissions of", path, e))?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub package_path: PathBuf,
    pub private_key_path: PathBuf,
    /// `langgenius`, `partner` or `community` (any case), or empty.
    pub authorized_category: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignResult {
    pub output_path: PathBuf,
    pub authorized_category: String,
    pub plugin_unique_identifier: Option<String>,
}

impl Render for SignResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("plugin signed successfully").field("output_path", self.output_path.display())])
    }
}

/// `dir/x.difypkg` → `dir/x.signed.difypkg`.
pub fn signed_output_path(package_path: &Path) -> PathBuf {
    let name = package_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let signed = match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}.signed{}", &name[..dot], &name[dot..]),
        _ => format!("{name}.signed"),
    };
    package_path.with_file_name(signed)
}

/// Validate a category the way upstream does (case-insensitive); returns it in lowercase.
pub fn parse_category(category: &str) -> CliResult<String> {
    let lower = category.to_ascii_lowercase();
    if lower.is_empty() || AUTHORIZED_CATEGORIES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(CliError::usage(
            format!("invalid authorized category {category:?}"),
            format!("use one of: {}", AUTHORIZED_CATEGORIES.join(", ")),
        ))
    }
}

fn read_text(path: &Path, what: &str) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::generic(format!("failed to read {what} {}: {e}", path.display()), format!("check the path of the {what}")))
}

fn signature_error(context: &str, e: SignatureError) -> CliError {
    match e {
        SignatureError::InvalidKey(_) => CliError::generic(
            format!("{context}: {e}"),
            "keys must be PKCS#1 PEM files (BEGIN RSA PRIVATE KEY / BEGIN RSA PUBLIC KEY), e.g. from `dify signature generate`",
        ),
        SignatureError::Package(p) => crate::commands::source::package_error(context, &p),
        SignatureError::NotSigned => CliError::auth(format!("{context}: {e}"), "sign the package with `dify signature sign` first"),
        SignatureError::BadSignature
        | SignatureError::FilesChanged
        | SignatureError::MalformedSignature(_)
        | SignatureError::InvalidVerificationFile(_) => CliError::auth(
            format!("{context}: {e}"),
            "pass the public key matching the signer's private key with -p, or re-sign the package",
        ),
        SignatureError::Signing(_) => CliError::generic(format!("{context}: {e}"), "check that the private key is a valid RSA key"),
    }
}

pub fn sign(opts: &SignOptions) -> CliResult<SignResult> {
    let category = parse_category(&opts.authorized_category)?;
    let key = PrivateKey::from_pem(&read_text(&opts.private_key_path, "private key")?)
        .map_err(|e| signature_error("failed to load private key", e))?;
    let bytes = std::fs::read(&opts.package_path).map_err(|e| CliError::io("read", &opts.package_path, e))?;
    let signed = sig::sign(&bytes, &key, Some(&category)).map_err(|e| signature_error("failed to sign plugin", e))?;
    let output_path = signed_output_path(&opts.package_path);
    std::fs::write(&output_path, &signed).map_err(|e| CliError::io("write", &output_path, e))?;
    let identifier = dify_package::Package::from_bytes(signed, &dify_package::DecodeLimits::default())
        .ok()
        .and_then(|p| p.unique_identifier().ok())
        .map(|id| id.to_string());
    Ok(SignResult { output_path, authorized_category: category, plugin_unique_identifier: identifier })
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub package_path: PathBuf,
    /// Only this key is trusted when given; otherwise only the official key.
    pub public_key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub verified: bool,
    pub authorized_category: String,
    pub key: String,
}

impl Render for VerifyResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("plugin verified successfully")])
    }
}

pub fn verify(opts: &VerifyOptions) -> CliResult<VerifyResult> {
    let bytes = std::fs::read(&opts.package_path).map_err(|e| CliError::io("read", &opts.package_path, e))?;
    let (verification, key) = match &opts.public_key_path {
        Some(path) => {
            let key = PublicKey::from_pem(&read_text(path, "public key")?).map_err(|e| signature_error("failed to load public key", e))?;
            let v = sig::verify_with_keys(&bytes, &[&key]).map_err(|e| signature_error("failed to verify plugin", e))?;
            (v, path.display().to_string())
        }
        None => {
            let v =
                sig::verify_with_keys(&bytes, &[sig::official_public_key()]).map_err(|e| signature_error("failed to verify plugin", e))?;
            (v, "official".to_string())
        }
    };
    Ok(VerifyResult { verified: true, authorized_category: verification.authorized_category, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_name_keeps_directory_and_extension() {
        assert_eq!(signed_output_path(Path::new("a/b/x.difypkg")), PathBuf::from("a/b/x.signed.difypkg"));
        assert_eq!(signed_output_path(Path::new("noext")), PathBuf::from("noext.signed"));
    }

    #[test]
    fn categories_are_case_insensitive() {
        assert_eq!(parse_category("Partner").unwrap(), "partner");
        assert_eq!(parse_category("").unwrap(), "");
        assert_eq!(parse_category("vendor").unwrap_err().exit_status(), 2);
    }
}
