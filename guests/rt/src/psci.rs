// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PSCI calls through `hvc #0`.

/// PSCI 0.2 SYSTEM_OFF function id.
pub const SYSTEM_OFF: u64 = 0x8400_0008;

/// Ends the VM through PSCI SYSTEM_OFF with `status` in x4 (and x1), which
/// kvm-nisv-vmm turns into its exit status (docs/guest-interface.md: KVM's
/// in-kernel PSCI code overwrites x0..x3 before the exit reaches userspace).
pub fn exit(status: u8) -> ! {
    loop {
        // SAFETY: the hypervisor call does not return on success; it touches no
        // memory of this program.
        unsafe {
            core::arch::asm!("hvc #0", in("x0") SYSTEM_OFF, in("x1") u64::from(status),
                in("x4") u64::from(status),
                options(nomem, nostack));
        }
    }
}
