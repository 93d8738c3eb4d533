//! Feeds arbitrary bytes to the bundle decoder: errors only, never a panic.
#![no_main]

use dify_package::bundle::Bundle;
use dify_package::DecodeLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_uncompressed_size: 8 * 1024 * 1024, ..DecodeLimits::default() };
    if let Ok(bundle) = Bundle::from_bytes(data, &limits) {
        let _ = bundle.manifest.validate();
        let _ = bundle.to_bytes();
    }
});
