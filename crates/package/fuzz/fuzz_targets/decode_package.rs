//! Feeds arbitrary bytes to the package decoder and the signature verifier: they must return
//! errors, never panic, and stay within the memory limits.
#![no_main]

use dify_package::{signature, DecodeLimits, Package};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_uncompressed_size: 8 * 1024 * 1024, ..DecodeLimits::default() };
    if let Ok(package) = Package::from_bytes(data.to_vec(), &limits) {
        let _ = package.unique_identifier();
        let _ = package.readmes();
        let _ = package.declaration().to_json_value();
        let _ = dify_package::validate::strict(&package);
    }
    let _ = signature::verify(data, &[]);
});
