// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! arm64 KVM uapi items (placeholder until the generator lands).

#![no_std]
