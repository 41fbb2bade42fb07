// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The ESR_EL2 ISS bits that KVM passes to userspace in `esr_iss`.
