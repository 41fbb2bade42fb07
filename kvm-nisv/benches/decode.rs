// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Decoder throughput, side by side with the references of the differential
//! test (`tests/decode_diff.rs`): bad64 (Binary Ninja's decoder generated from
//! the Arm ARM's ASL) and capstone (LLVM's tables).
//!
//! Every benchmark of a group walks the same words, so the report
//! (`scripts/bench`, `docs/performance.md`) gives ratios measured in one run,
//! never absolute times.
//!
//! * `decode-mix`: a fixed, seeded mix of words from the load/store space plus
//!   one in 256 from the DC ZVA family (the generator of
//!   `random_load_store_words` in `tests/decode_diff.rs`), decoded by
//!   `kvm_nisv::decode::decode` and by `bad64::decode`; then decode + text
//!   (`Display`) for both, and capstone (whose only API decodes to text).
//! * `decode-class`: the words of that mix grouped by the class our decoder
//!   gives them (and `Unsupported`), each group decoded by both.

#[cfg(not(target_env = "musl"))]
include!("support/decode_impl.rs");

/// The reference decoders are not built for musl (see Cargo.toml).
#[cfg(target_env = "musl")]
fn main() {}
