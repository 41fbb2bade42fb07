// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The one-vCPU test VM of the real-KVM integration tests (`kvm_nisv.rs`,
//! `abi_probe.rs`): anonymous RAM at `RAM_BASE` holding the given code,
//! registered as memslot 0, and a vCPU at EL1h with PC = `RAM_BASE`.

#![allow(dead_code)]

use kvm_bindings::{kvm_userspace_memory_region, kvm_vcpu_init};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_nisv::kvm_ioctls::VmFdNisvExt;
use kvm_nisv::regs::{Reg, VcpuRegs};

/// Guest RAM: base IPA and size.
pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: usize = 2 << 20;
/// PSTATE: EL1h (M = 0b0101) with D, A, I, F masked.
pub const PSTATE_EL1H_DAIF: u64 = 0x3c5;

/// A VM, its vCPU and its RAM mapping (unmapped on drop; KVM copes with a
/// memslot's backing going away, through its MMU notifiers).
pub struct TestVm {
    pub vcpu: VcpuFd,
    pub vm: VmFd,
    pub kvm: Kvm,
    ram: *mut u8,
}

impl TestVm {
    /// A VM with an `ipa_bits` IPA space and RAM holding `code`
    /// (`(offset, word)` pairs); `enable_nisv` enables
    /// KVM_CAP_ARM_NISV_TO_USER before the vCPU is created.
    pub fn create(code: &[(u64, u32)], enable_nisv: bool, ipa_bits: u32) -> TestVm {
        let kvm = Kvm::new().expect("open /dev/kvm");
        let vm = kvm
            .create_vm_with_ipa_size(ipa_bits)
            .expect("KVM_CREATE_VM");
        if enable_nisv {
            vm.enable_nisv_to_user()
                .expect("enable KVM_CAP_ARM_NISV_TO_USER");
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing; no existing memory is affected.
        let ram = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RAM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(ram, libc::MAP_FAILED);
        let ram = ram.cast::<u8>();
        for &(off, word) in code {
            assert!(off as usize + 4 <= RAM_SIZE);
            // SAFETY: off + 4 <= RAM_SIZE (checked above), inside the mapping.
            unsafe {
                ram.add(off as usize)
                    .cast::<u32>()
                    .write_unaligned(word.to_le())
            };
        }
        let region = kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: RAM_BASE,
            memory_size: RAM_SIZE as u64,
            userspace_addr: ram as u64,
            flags: 0,
        };
        // SAFETY: the region is the mapping above, which stays mapped until
        // `TestVm` is dropped; the guest no longer runs then.
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        let mut kvi = kvm_vcpu_init::default();
        vm.get_preferred_target(&mut kvi)
            .expect("KVM_ARM_PREFERRED_TARGET");
        vcpu.vcpu_init(&kvi).expect("KVM_ARM_VCPU_INIT");
        vcpu.set(Reg::Pc, RAM_BASE).unwrap();
        vcpu.set(Reg::Pstate, PSTATE_EL1H_DAIF).unwrap();
        TestVm { vcpu, vm, kvm, ram }
    }

    /// The little-endian u64 at RAM offset `off`.
    pub fn ram_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= RAM_SIZE);
        // SAFETY: off + 8 <= RAM_SIZE (checked above), inside the mapping.
        u64::from_le(unsafe { self.ram.add(off).cast::<u64>().read_unaligned() })
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        // SAFETY: `ram` is the mapping made in `new`, RAM_SIZE bytes, not
        // used after this point.
        unsafe { libc::munmap(self.ram.cast(), RAM_SIZE) };
    }
}
