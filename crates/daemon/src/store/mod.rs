//! Durable state: the SQL database (SQLite, PostgreSQL or MySQL through one `sqlx::Any` pool) and the
//! blob storage holding package bytes, assets and bundles.
//!
//! Owns the schema (`migrations/<dialect>/`), every SQL statement and the transactions that keep
//! installs atomic. It must not contain business rules beyond row-level invariants (reference counts
//! move in the same transaction as the rows they count) and knows nothing about HTTP.

pub mod blob;
mod db;
pub mod endpoints;
pub mod gcs;
pub mod kv;
mod legacy;
pub mod object;
pub mod overview;
pub mod records;
mod runtime_type;

pub use blob::{BlobError, BlobStore, LocalBlobStore};
pub use db::InstallationWriteListener;
pub use db::{Db, PoolLimits, StoreError};
pub use endpoints::{EndpointRecord, EndpointUpdate, ENDPOINT_EXPIRED_AT};
pub use kv::PluginKv;
pub use object::{open_blob_store, StorageSetupError, STORAGE_TYPES};
pub use records::*;
pub use runtime_type::RuntimeType;

/// The current time as stored in the database: RFC 3339, UTC, always nine fractional digits, so that
/// text order equals time order.
pub fn now_timestamp() -> String {
    timestamp_of(chrono::Utc::now())
}

/// Formats a time the way [`now_timestamp`] does.
pub fn timestamp_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Renders a stored timestamp as Go's RFC3339Nano does (trailing fractional zeros trimmed).
pub fn render_timestamp(stored: &str) -> String {
    match stored.strip_suffix('Z').and_then(|s| s.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => stored.to_string(),
    }
}

/// A new row id: a UUID v7 (time ordered), as upstream generates them.
pub fn new_row_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_trims_zeros() {
        assert_eq!(render_timestamp("2025-01-02T03:04:05.123400000Z"), "2025-01-02T03:04:05.1234Z");
        assert_eq!(render_timestamp("2025-01-02T03:04:05.000000000Z"), "2025-01-02T03:04:05Z");
    }

    #[test]
    fn stored_timestamps_sort_as_time() {
        let a = timestamp_of(chrono::DateTime::from_timestamp(1, 5).unwrap());
        let b = timestamp_of(chrono::DateTime::from_timestamp(1, 50).unwrap());
        assert!(a < b);
    }
}
