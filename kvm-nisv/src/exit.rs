// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Typed parsing of KVM_EXIT_ARM_NISV from `kvm_run`.
