// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `classes-mmu-on-4k`: every decoder class against the test device and the vGIC
//! distributor (see guest_bins::classes).

#![no_std]
#![no_main]

#[allow(unused_imports)]
use guest_rt::mmu::Granule;

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    guest_bins::classes::main(guest_bins::classes::Mode::MmuOn(Granule::K4))
}
