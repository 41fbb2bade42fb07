// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runs `examples/kvm_ioctls_loop.rs` on real KVM: the example's code, built
//! into this test executable so that `scripts/arm64-host` (which ships test
//! executables, not examples) runs it on every kernel of the suite.
#![cfg(all(target_arch = "aarch64", feature = "kvm-ioctls", feature = "vm-memory"))]

#[path = "../examples/kvm_ioctls_loop.rs"]
#[allow(dead_code)] // the example's `main`
mod example;

use example::vmm::{STORES, Summary};

#[test]
fn the_example_vmm_runs_its_guest() {
    // `run` itself checks the device, the registers, RAM and the abort the
    // guest took; here: every exit was the one the guest program makes.
    let seen = example::vmm::run().expect("the example's VMM loop");
    assert_eq!(
        seen,
        Summary {
            emulated: STORES as u32 + 1, // four str with writeback, one ldp
            faults: 1,                   // the store to nothing
            injected: 0,
            mmio: 1, // the plain ldr
        }
    );
}
