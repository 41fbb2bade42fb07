// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! kvm-nisv-vmm: a thin arm64 VMM built on rust-vmm crates that turns
//! `KVM_EXIT_ARM_NISV` data aborts into emulated MMIO with kvm-nisv.
//!
//! The machine (memory map, devices, boot and exit conventions) is described in
//! `docs/guest-interface.md`; the design in `docs/vmm.md`. Modules are named
//! after what they model. Everything that needs `/dev/kvm` is compiled on
//! aarch64 only; the rest (device tree, bus, devices, loader, exit handling,
//! NISV policy) builds and is tested on any Linux host.

#![deny(missing_docs)]

pub mod adapter;
pub mod bus;
pub mod cli;
pub mod control;
pub mod exit_stats;
pub mod fdt;
pub mod footprint;
pub mod framebuffer;
pub mod gic;
pub mod layout;
pub mod loader;
pub mod memory;
pub mod mmio_fixup;
pub mod nisv;
pub mod report;
pub mod rmw_lock;
#[cfg(target_arch = "aarch64")]
pub mod run_loop;
pub mod screenshot;
pub mod testdev;
pub mod uart;
pub mod vcpu;
#[cfg(target_arch = "aarch64")]
pub mod vm;
