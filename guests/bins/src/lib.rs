// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test logic shared by the guest binaries.

#![no_std]
#![deny(missing_docs)]

pub mod classes;
