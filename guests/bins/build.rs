// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Links every guest at 0x8000_0000 with `link.ld`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
}
