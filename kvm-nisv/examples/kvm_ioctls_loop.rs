// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A kvm-ioctls run loop that adopts NISV handling in a few lines.
//!
//! The guest runs `str x0, [x1], #8` against an address with no memslot: a
//! store with writeback, which has no valid instruction syndrome. kvm-ioctls
//! reports the resulting exit as `VcpuExit::Unsupported(28)`; the lines
//! marked `NISV` turn it into a typed [`NisvExit`], complete the access
//! (here by hand: a real VMM calls `kvm_nisv::emulate`) and continue. Any
//! other address could instead get an external abort injected with
//! [`kvm_nisv::inject::ExtDabtInjector`].
//!
//! Run it on an arm64 host with `/dev/kvm` (or inside `scripts/arm64-host`):
//! `cargo run --example kvm_ioctls_loop`. On other architectures it only
//! explains that.

#[cfg(all(target_arch = "aarch64", feature = "kvm-ioctls"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use kvm_bindings::{kvm_userspace_memory_region, kvm_vcpu_init};
    use kvm_ioctls::{Kvm, VcpuExit};
    use kvm_nisv::exit::{KVM_EXIT_ARM_NISV, NisvExit, RunError};
    use kvm_nisv::regs::{Reg, VcpuRegs};

    const RAM: u64 = 0x8000_0000;
    const DEVICE: u64 = 0x1000_0000;
    let code: [u32; 3] = [
        0xf800_8420, // str x0, [x1], #8   (NISV: post-index writeback)
        0xf900_0020, // str x0, [x1]       (ordinary MMIO exit)
        0x1400_0000, // b .
    ];

    let kvm = Kvm::new()?;
    let vm = kvm.create_vm()?;
    kvm_nisv::cap::enable_nisv_to_user(&vm)?; // NISV: opt in (Linux 5.5+)

    let mut mem = vec![0u8; 0x10000];
    for (i, w) in code.iter().enumerate() {
        mem[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: RAM,
        memory_size: mem.len() as u64,
        userspace_addr: mem.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `mem` outlives the VM (both live until the end of main) and is
    // not moved or resized while the guest can access it.
    unsafe { vm.set_user_memory_region(region)? };

    let mut vcpu = vm.create_vcpu(0)?;
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)?;
    vcpu.vcpu_init(&kvi)?;
    vcpu.set(Reg::Pc, RAM)?;
    vcpu.set(Reg::Pstate, 0x3c5)?; // EL1h, DAIF masked
    vcpu.set(Reg::X(0), 42)?;
    vcpu.set(Reg::X(1), DEVICE)?;

    loop {
        match vcpu.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                println!("MMIO write of {data:?} at {addr:#x}; done");
                return Ok(());
            }
            // NISV: the exit kvm-ioctls does not know.
            Ok(VcpuExit::Unsupported(KVM_EXIT_ARM_NISV)) => {
                let exit = NisvExit::from_vcpu(&mut vcpu).ok_or("exit 28 without payload")?;
                println!("{exit}");
                // Emulate `str x0, [x1], #8` by hand: the device write, the
                // writeback, PC + 4.
                let x0 = vcpu.get(Reg::X(0))?;
                println!("device write of {x0:#x} at {:#x}", exit.fault_ipa);
                let x1 = vcpu.get(Reg::X(1))?;
                vcpu.set(Reg::X(1), x1.wrapping_add(8))?;
                let pc = vcpu.get(Reg::Pc)?;
                vcpu.set(Reg::Pc, pc.wrapping_add(4))?;
            }
            Ok(other) => return Err(format!("unexpected exit {other:?}").into()),
            Err(e) if e.errno() == libc::EINTR => {}
            // NISV: ENOSYS without the capability becomes an explanation.
            Err(e) => return Err(RunError::from_errno(e).into()),
        }
    }
}

#[cfg(not(all(target_arch = "aarch64", feature = "kvm-ioctls")))]
fn main() {
    println!("kvm_ioctls_loop needs an arm64 host with /dev/kvm and the kvm-ioctls feature");
}
