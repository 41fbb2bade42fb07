// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

// The crate documentation is the README; its examples (doc tests) use the
// default features.
#![cfg_attr(
    all(feature = "kvm-ioctls", feature = "vm-memory"),
    doc = include_str!("../README.md")
)]
#![cfg_attr(
    not(all(feature = "kvm-ioctls", feature = "vm-memory")),
    doc = "Handle KVM/arm64 data aborts without a valid instruction syndrome \
           (`KVM_EXIT_ARM_NISV`). See the README (the crate documentation with the \
           default features)."
)]
// The library is `no_std` + `alloc`; unit tests link `std` (libtest needs it).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod a64;
pub mod cap;
pub mod dczid;
pub mod decode;
pub mod emulate;
pub mod errno;
pub mod esr;
pub mod exception;
pub mod exit;
pub mod inject;
pub mod mem;
pub mod one_reg;
pub mod regcache;
pub mod regs;
pub mod runahead;
pub mod stage1;

#[cfg(feature = "kvm-ioctls")]
pub mod kvm_ioctls;
#[cfg(feature = "vm-memory")]
pub mod vm_memory;
