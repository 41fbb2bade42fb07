// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Links the bench guest at 0x8000_0000 with the guests' shared `bins/link.ld`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rustc-link-arg-bins=-T{dir}/../bins/link.ld");
    println!("cargo:rerun-if-changed=../bins/link.ld");
}
