// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Handle KVM/arm64 data aborts that come without a valid instruction syndrome.
//!
//! See the crate README for an overview.

#![deny(missing_docs)]

pub mod a64;
pub mod cap;
pub mod decode;
pub mod emulate;
pub mod esr;
pub mod exit;
pub mod inject;
pub mod mem;
pub mod one_reg;
pub mod regcache;
pub mod regs;
pub mod runahead;
pub mod stage1;
