// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! kvm-nisv-vmm (placeholder until the VMM issue lands).

fn main() {
    eprintln!("kvm-nisv-vmm: not implemented yet");
    std::process::exit(2);
}
