// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`crate::regs::VcpuRegs`] over KVM_GET_ONE_REG / KVM_SET_ONE_REG.
