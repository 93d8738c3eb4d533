//! Property tests: the decoder never panics on random or mutated input, and a checksum never
//! depends on archive order.

mod support;

use dify_package::{read_archive, DecodeLimits, Package};
use proptest::prelude::*;

fn valid_package() -> Vec<u8> {
    support::build_zip(&support::raw_plugin_entries(), b"")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Package::from_bytes(bytes.clone(), &DecodeLimits::default());
        let _ = dify_package::signature::verify(&bytes, &[]);
    }

    #[test]
    fn mutated_packages_never_panic(
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_package();
        for (index, value) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if truncate {
            let keep = cut.index(bytes.len());
            bytes.truncate(keep);
        }
        let _ = Package::from_bytes(bytes.clone(), &DecodeLimits::default());
        let _ = read_archive(&bytes, &DecodeLimits { max_uncompressed_size: 4096, ..DecodeLimits::default() });
    }

    #[test]
    fn checksum_ignores_archive_order(seed in any::<u64>()) {
        let mut files = support::plugin_files();
        // A deterministic shuffle from the seed.
        let mut state = seed;
        for i in (1..files.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            files.swap(i, (state >> 33) as usize % (i + 1));
        }
        let entries: Vec<support::RawEntry> = files.iter().map(|(n, d)| support::RawEntry::file(n, d)).collect();
        let shuffled = Package::from_bytes(support::build_zip(&entries, b""), &DecodeLimits::default()).unwrap();
        let sorted = Package::from_bytes(valid_package(), &DecodeLimits::default()).unwrap();
        prop_assert_eq!(shuffled.checksum(), sorted.checksum());
    }
}
