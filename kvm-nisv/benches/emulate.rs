// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Emulation overhead: the whole `Emulator::emulate` path (fetch through the
//! stage-1 walker, decode, translate every element, check, access, write
//! registers, writeback, PC) side by side with the bare MMIO bus accesses that
//! the same instruction makes, on the same trivial bus. The ratio of the two is
//! the emulator's overhead; `scripts/bench` prints it (and MMU on / MMU off)
//! from criterion's estimates, never absolute times.
//!
//! Each instruction also reports how many `VcpuRegs` calls it needs. On a KVM
//! vCPU each one is a `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` ioctl, so these counts
//! are a machine-independent cost figure. They are printed as `regcount` lines
//! for the script.

#[cfg(not(target_env = "musl"))]
include!("support/emulate_impl.rs");

/// criterion is not built for musl (see Cargo.toml).
#[cfg(target_env = "musl")]
fn main() {}
