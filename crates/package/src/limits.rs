//! Limits applied while decoding untrusted archives.

/// Upstream default for `MAX_PLUGIN_PACKAGE_SIZE` and `plugin package --max-size`: 50 MiB.
pub const DEFAULT_MAX_UNCOMPRESSED_SIZE: u64 = 50 * 1024 * 1024;

/// Bounds on what a decoder will inflate. The defaults suit a single plugin package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Sum of the uncompressed sizes of all entries, in bytes (declared and actual).
    pub max_uncompressed_size: u64,
    /// Largest uncompressed/compressed ratio allowed for an entry bigger than
    /// `ratio_check_threshold`.
    pub max_compression_ratio: u64,
    /// Entries at most this big (uncompressed) are exempt from the ratio check: small, highly
    /// repetitive files are normal and harmless.
    pub ratio_check_threshold: u64,
    /// Number of central-directory records.
    pub max_entries: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_uncompressed_size: DEFAULT_MAX_UNCOMPRESSED_SIZE,
            max_compression_ratio: 200,
            ratio_check_threshold: 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

impl DecodeLimits {
    /// Default limits with a different total uncompressed size.
    pub fn with_max_uncompressed_size(max_uncompressed_size: u64) -> Self {
        Self { max_uncompressed_size, ..Self::default() }
    }

    /// Limits for a bundle: embedded packages are not limited individually upstream, so allow
    /// twelve packages' worth (`MAX_BUNDLE_PACKAGE_SIZE` default).
    pub fn for_bundle() -> Self {
        Self { max_uncompressed_size: 12 * DEFAULT_MAX_UNCOMPRESSED_SIZE, ..Self::default() }
    }
}
