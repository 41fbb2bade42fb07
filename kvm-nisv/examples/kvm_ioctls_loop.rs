// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A small, complete VMM loop on kvm-ioctls and vm-memory that handles
//! `KVM_EXIT_ARM_NISV` with kvm-nisv's [`Emulator`](kvm_nisv::emulate::Emulator).
//!
//! The guest (hand-assembled below, one comment per instruction) runs at EL1
//! with the MMU off and:
//!
//! 1. stores four values to a device with `str x20, [x21], #8` in a loop: a
//!    store with writeback has no instruction syndrome, so every iteration is a
//!    NISV exit that the emulator completes (device write, writeback, PC + 4);
//! 2. loads the first two back with `ldp x23, x24, [x25]` (a pair: NISV
//!    again);
//! 3. loads the third with a plain `ldr x26, [x25, #16]`, an ordinary
//!    `KVM_EXIT_MMIO` served by the same bus;
//! 4. stores the pair to RAM (no exit), then stores with writeback to an
//!    address where nothing is: the emulator says `NoDevice`, and the VMM
//!    delivers the synchronous external abort the CPU would take for it
//!    (`Emulator::take_fault`), which the guest takes at its vector;
//! 5. the handler saves ESR_EL1 and FAR_EL1 and powers off with PSCI
//!    `SYSTEM_OFF` (an `HVC` KVM handles; it writes the PSCI return values to
//!    x0-x3, so the program keeps its results in x9 and up), which ends the
//!    loop.
//!
//! The VMM then checks what the guest and the device saw. Run it on an arm64
//! host with `/dev/kvm` (or in the emulated arm64 host, where
//! `tests/kvm_ioctls_loop.rs` runs it): `cargo run --example kvm_ioctls_loop`.

/// The VMM (arm64 only).
#[cfg(all(target_arch = "aarch64", feature = "kvm-ioctls", feature = "vm-memory"))]
pub mod vmm {
    use std::error::Error;

    use kvm_bindings::{
        KVM_ARM_VCPU_PSCI_0_2, KVM_SYSTEM_EVENT_SHUTDOWN, kvm_userspace_memory_region,
        kvm_vcpu_init,
    };
    use kvm_ioctls::{Kvm, VcpuExit};
    use kvm_nisv::emulate::{Emulator, Outcome};
    use kvm_nisv::esr::{Dfsc, Esr, ExceptionClass};
    use kvm_nisv::exception::EntryFeatures;
    use kvm_nisv::exit::{KVM_EXIT_ARM_NISV, NisvExit, RunError};
    use kvm_nisv::kvm_ioctls::VmFdNisvExt;
    use kvm_nisv::mem::{GuestRam, MmioBus, VecBus};
    use kvm_nisv::regs::{Reg, SysReg, VcpuRegs};
    use kvm_nisv::vm_memory::GuestMemoryRam;
    use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

    /// Guest RAM (one memslot).
    pub const RAM: u64 = 0x8000_0000;
    const RAM_SIZE: usize = 0x1_0000;
    /// The device: a 64-byte window on the userspace bus, no memslot.
    pub const DEVICE: u64 = 0x1000_0000;
    /// Nothing here: no memslot, no device.
    pub const HOLE: u64 = 0x2000_0000;
    /// Where the guest stores the pair it loaded (RAM).
    const PAIR: u64 = RAM + 0x1000;
    /// VBAR_EL1; "current EL with SP_ELx, synchronous" is at + 0x200.
    const VBAR: u64 = RAM + 0x800;
    /// The first value stored.
    pub const FIRST: u64 = 0x1000;
    /// Iterations of the store loop.
    pub const STORES: u64 = 4;

    /// (offset in RAM, instruction word). Encodings from llvm-mc 14.
    const CODE: &[(u64, u32)] = &[
        (0x00, 0xd280_0096),  // mov  x22, #4           (STORES)
        (0x04, 0xf800_86b4),  // str  x20, [x21], #8    NISV: store with writeback
        (0x08, 0x9100_0694),  // add  x20, x20, #1
        (0x0c, 0xf100_06d6),  // subs x22, x22, #1
        (0x10, 0x54ff_ffa1),  // b.ne 0x04
        (0x14, 0xa940_6337),  // ldp  x23, x24, [x25]   NISV: load pair
        (0x18, 0xf940_0b3a),  // ldr  x26, [x25, #16]   KVM_EXIT_MMIO (valid syndrome)
        (0x1c, 0xa900_6377),  // stp  x23, x24, [x27]   RAM, no exit
        (0x20, 0xf800_8794),  // str  x20, [x28], #8    NISV to nothing: abort delivered
        (0x24, 0x1400_0000),  // b    .                 (never reached)
        (0xa00, 0xd538_5209), // mrs  x9, esr_el1       the abort handler
        (0xa04, 0xd538_600a), // mrs  x10, far_el1
        (0xa08, 0x5280_0100), // mov  w0, #0x8
        (0xa0c, 0x72b0_8000), // movk w0, #0x8400, lsl #16   PSCI SYSTEM_OFF
        (0xa10, 0xd400_0002), // hvc  #0                (KVM writes x0-x3)
        (0xa14, 0x1400_0000), // b    .
    ];

    /// What the loop saw.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Summary {
        /// NISV exits the emulator completed.
        pub emulated: u32,
        /// NISV exits answered with the abort the CPU would take
        /// (`Outcome::GuestFault`, `Outcome::NoDevice`).
        pub faults: u32,
        /// NISV exits answered with KVM's external abort (`Unsupported`).
        pub injected: u32,
        /// Ordinary MMIO exits.
        pub mmio: u32,
    }

    fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
        if ok { Ok(()) } else { Err(what.into()) }
    }

    /// Build the VM, run the guest to its power-off, check the results.
    pub fn run() -> Result<Summary, Box<dyn Error>> {
        let kvm = Kvm::new()?;
        // 40 bits of IPA are plenty (and the VM's teardown is quick).
        let vm = kvm.create_vm_with_ipa_size(40)?;
        vm.enable_nisv_to_user()?; // NISV exits instead of ENOSYS (Linux 5.5+)
        let injector = vm.ext_dabt_injector()?;

        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM), RAM_SIZE)])?;
        let ram = GuestMemoryRam::new(mem);
        for &(off, word) in CODE {
            ram.write(RAM + off, &word.to_le_bytes())?;
        }
        let host = ram.memory().get_host_address(GuestAddress(RAM))?;
        let slot = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: RAM,
            memory_size: RAM_SIZE as u64,
            userspace_addr: host as u64,
        };
        // SAFETY: `host` is the start of `ram`'s mapping of exactly
        // RAM_SIZE bytes, which lives until the end of this function, after
        // the VM and its vCPU are dropped (locals drop in reverse order).
        unsafe { vm.set_user_memory_region(slot)? };
        let mut bus = VecBus::new();
        check(bus.add_window(DEVICE, vec![0; 64]), "device window")?;

        let mut vcpu = vm.create_vcpu(0)?;
        let mut kvi = kvm_vcpu_init::default();
        vm.get_preferred_target(&mut kvi)?;
        kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
        vcpu.vcpu_init(&kvi)?;
        for (reg, value) in [
            (Reg::Pc, RAM),
            (Reg::Pstate, 0x3c5), // EL1h, DAIF masked
            (Reg::X(20), FIRST),
            (Reg::X(21), DEVICE),
            (Reg::X(25), DEVICE),
            (Reg::X(27), PAIR),
            (Reg::X(28), HOLE + 0x40),
            (Reg::Sys(SysReg::VbarEl1), VBAR),
        ] {
            vcpu.set(reg, value)?;
        }

        let mut emulator = Emulator::new(); // one per vCPU
        let mut seen = Summary::default();
        loop {
            match vcpu.run() {
                Ok(VcpuExit::Unsupported(KVM_EXIT_ARM_NISV)) => {
                    let exit = NisvExit::from_vcpu(&mut vcpu).ok_or("exit 28 without payload")?;
                    match emulator.emulate(&mut vcpu, &ram, &mut bus, Some(exit.fault_ipa))? {
                        Outcome::Emulated { insn } => {
                            println!("emulated {insn} ({exit})");
                            seen.emulated += 1;
                        }
                        Outcome::GuestFault(fault) | Outcome::NoDevice { fault, .. } => {
                            // The synchronous data abort the CPU itself would
                            // take (here: an external abort for the store to
                            // nothing, FAR = its exact address), delivered to
                            // the guest's EL1 vector.
                            println!("delivering {fault:?}");
                            emulator.take_fault(&mut vcpu, &fault, EntryFeatures::new())?;
                            seen.faults += 1;
                        }
                        other => {
                            // Unsupported: KVM's external abort.
                            println!("{other:?}: injecting an external data abort");
                            injector.inject(&vcpu)?;
                            emulator.clear_monitor(); // the guest takes an exception
                            seen.injected += 1;
                        }
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    bus.read(addr, data)?;
                    seen.mmio += 1;
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    bus.write(addr, data)?;
                    seen.mmio += 1;
                }
                Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _)) => break,
                Ok(other) => return Err(format!("unexpected exit {other:?}").into()),
                Err(e) if e.errno() == libc::EINTR => {}
                Err(e) => return Err(RunError::from_errno(e).into()),
            }
        }

        // What the device, the registers and RAM hold now.
        let values: Vec<u64> = (FIRST..FIRST + STORES).collect();
        let window = bus.window(DEVICE).ok_or("device window")?;
        for (i, v) in values.iter().enumerate() {
            check(
                window[i * 8..i * 8 + 8] == v.to_le_bytes(),
                "device holds the stored values",
            )?;
        }
        check(
            vcpu.get(Reg::X(21))? == DEVICE + 8 * STORES,
            "x21 written back",
        )?;
        check(vcpu.get(Reg::X(23))? == values[0], "ldp: x23")?;
        check(vcpu.get(Reg::X(24))? == values[1], "ldp: x24")?;
        check(
            vcpu.get(Reg::X(26))? == values[2],
            "ldr through KVM_EXIT_MMIO: x26",
        )?;
        let mut pair = [0u8; 16];
        ram.read(PAIR, &mut pair)?;
        check(pair[..8] == values[0].to_le_bytes(), "stp to RAM")?;
        check(pair[8..] == values[1].to_le_bytes(), "stp to RAM")?;
        // The abort: taken at EL1 from the faulting store, which did not
        // write back; ESR_EL1 says synchronous external abort, FAR_EL1 the
        // address.
        let esr = Esr(vcpu.get(Reg::X(9))?);
        check(esr.ec() == ExceptionClass::DataAbortSameEl, "ESR_EL1.EC")?;
        let iss = esr.data_abort().ok_or("a data abort")?;
        check(iss.dfsc() == Dfsc::SyncExternal, "ESR_EL1.DFSC")?;
        check(vcpu.get(Reg::X(10))? == HOLE + 0x40, "FAR_EL1")?;
        check(vcpu.get(Reg::X(28))? == HOLE + 0x40, "no writeback")?;
        check(vcpu.get(Reg::Sys(SysReg::ElrEl1))? == RAM + 0x20, "ELR_EL1")?;
        println!("guest saw ESR_EL1 = {:#x}; results checked", esr.0);
        Ok(seen)
    }
}

fn main() {
    #[cfg(all(target_arch = "aarch64", feature = "kvm-ioctls", feature = "vm-memory"))]
    match vmm::run() {
        Ok(seen) => println!("{seen:?}"),
        Err(e) => {
            eprintln!("kvm_ioctls_loop: {e}");
            std::process::exit(1);
        }
    }
    #[cfg(not(all(target_arch = "aarch64", feature = "kvm-ioctls", feature = "vm-memory")))]
    println!("kvm_ioctls_loop needs an arm64 host with /dev/kvm and the default features");
}
