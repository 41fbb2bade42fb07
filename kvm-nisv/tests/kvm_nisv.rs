// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The NISV round trip on a real arm64 KVM (run by `scripts/arm64-host` inside
//! Debian's 5.10 to 7.3 kernels, 4 KiB and 16 KiB pages, or natively on an arm64
//! host).
//!
//! Each test builds a one-vCPU VM with a 40-bit IPA space, 2 MiB of RAM at IPA
//! 0x8000_0000 and no memslot at 0x1000_0000, loads a few hand-assembled
//! instructions (each word's assembly is in the comment next to it; encodings
//! checked with the disarm64 disassembler) and asserts what the kernel and the
//! guest did. Values that depend on the host (the stage-2 level of a translation
//! fault, the page size) are derived from the host, not assumed.
#![cfg(all(target_arch = "aarch64", feature = "kvm-ioctls"))]
#![allow(clippy::undocumented_unsafe_blocks)]

mod kvm_common;

use std::os::fd::{AsRawFd, BorrowedFd};

use kvm_common::{PSTATE_EL1H_DAIF, RAM_BASE, TestVm};
use kvm_ioctls::{Kvm, VcpuExit};
use kvm_nisv::cap::{self, Cap, CapError, Support};
use kvm_nisv::dczid::{self, DczidSource};
use kvm_nisv::esr::{Dfsc, Esr, ExceptionClass};
use kvm_nisv::exit::{ArmAbortExit, KVM_EXIT_ARM_NISV, NisvExit, RunError};
use kvm_nisv::inject;
use kvm_nisv::kvm_ioctls::{ExtDabtInjector, KvmNisvCaps, VmFdNisvExt};
use kvm_nisv::one_reg::RawVcpuFd;
use kvm_nisv::regs::{Reg, SysReg, VcpuRegs};

/// The fd of a kvm-ioctls object, for the raw-fd API.
fn fd<T: AsRawFd>(t: &T) -> BorrowedFd<'_> {
    // SAFETY: the descriptor belongs to `t`, which the result borrows, so it
    // stays open for the borrow's lifetime.
    unsafe { BorrowedFd::borrow_raw(t.as_raw_fd()) }
}

/// No memslot here: every access is a stage-2 translation fault that KVM
/// hands to userspace (MMIO or NISV).
const HOLE: u64 = 0x1000_0000;
/// The IPA size every test VM asks for (KVM_VM_TYPE_ARM_IPA_SIZE): what the
/// addresses above need, and KVM's default for VM type 0. Not the host maximum
/// (kvm-ioctls' `create_vm()`): a 52-bit VM never runs on the emulated 16 KiB-page
/// hosts, and since 7.x its teardown walks the whole IPA space.
const IPA_BITS: u32 = 40;

/// The host's page size (KVM's stage-2 granule).
fn host_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).expect("sysconf(_SC_PAGESIZE)")
}

/// The stage-2 level at which KVM's walk for `hole` finds no entry, when the
/// only mapped IPA near it is `mapped` (the code page the guest ran from).
///
/// KVM's stage 2 uses the host's granule; with `ipa_bits` it starts at level
/// `4 - (ipa_bits - 8) / (page_shift - 3)` (`stage2_pgtable_levels()`, up to 16
/// concatenated tables at the start level). The walk descends while `hole` and
/// `mapped` share a table entry; the first level where they differ has no
/// entry for `hole`: a translation fault at that level.
fn s2_translation_fault_level(page_size: u64, ipa_bits: u32, hole: u64, mapped: u64) -> u8 {
    let page_shift = page_size.trailing_zeros();
    let bits = page_shift - 3;
    let levels = (ipa_bits - 8) / bits;
    let start = 4 - levels;
    for level in start..=3 {
        let shift = page_shift + (3 - level) * bits;
        if hole >> shift != mapped >> shift {
            return level as u8;
        }
    }
    panic!("{hole:#x} and {mapped:#x} share a page")
}

#[test]
fn stage2_fault_levels_for_each_granule() {
    // 4 KiB: level 1 (1 GiB entries: 0x1000_0000 in entry 0, RAM in entry 2).
    assert_eq!(s2_translation_fault_level(4096, 40, HOLE, RAM_BASE), 1);
    // 16 KiB: start level 2 (32 MiB entries: 8 vs 64).
    assert_eq!(s2_translation_fault_level(16384, 40, HOLE, RAM_BASE), 2);
    // 64 KiB: start level 2 (512 MiB entries: 0 vs 4).
    assert_eq!(s2_translation_fault_level(65536, 40, HOLE, RAM_BASE), 2);
    // Same 1 GiB entry on 4 KiB: the walk goes one level further.
    assert_eq!(
        s2_translation_fault_level(4096, 40, RAM_BASE + (64 << 20), RAM_BASE),
        2
    );
}

/// `uname -r` as (major, minor).
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = rel.trim().split(['.', '-', '+', '~']);
    let major = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor)
}

// Instruction words.
const STR_X0_X1_POST8: u32 = 0xf800_8420; // str x0, [x1], #8
const STR_X0_X1: u32 = 0xf900_0020; // str x0, [x1]
const LDP_X2_X3_X1: u32 = 0xa940_0c22; // ldp x2, x3, [x1]
const B_SELF: u32 = 0x1400_0000; // b .
const MRS_X6_ESR_EL1: u32 = 0xd538_5206; // mrs x6, esr_el1
const MRS_X7_FAR_EL1: u32 = 0xd538_6007; // mrs x7, far_el1
const STP_X6_X7_X8: u32 = 0xa900_1d06; // stp x6, x7, [x8]
const STR_X6_X9: u32 = 0xf900_0126; // str x6, [x9]

/// The common test VM, with this file's constructors and run helpers.
type Guest = TestVm;

impl Guest {
    /// A VM with RAM at RAM_BASE holding `code` at offset 0, one vCPU at
    /// EL1h with PC = RAM_BASE. `enable_nisv` enables the capability first.
    fn new(code: &[(u64, u32)], enable_nisv: bool) -> Guest {
        TestVm::create(code, enable_nisv, IPA_BITS)
    }

    /// Run until the next exit that is not EINTR; returns the exit reason
    /// for Unsupported exits, or the MMIO write.
    fn run(&mut self) -> Result<Exit, kvm_ioctls::Error> {
        loop {
            return match self.vcpu.run() {
                Ok(VcpuExit::MmioWrite(addr, data)) => Ok(Exit::MmioWrite(addr, data.to_vec())),
                Ok(VcpuExit::MmioRead(addr, data)) => Ok(Exit::MmioRead(addr, data.len())),
                Ok(VcpuExit::Unsupported(r)) if r == KVM_EXIT_ARM_NISV => Ok(Exit::Nisv(
                    NisvExit::from_vcpu(&mut self.vcpu).expect("exit 28 parses"),
                )),
                Ok(other) => Ok(Exit::Other(format!("{other:?}"))),
                Err(e) if e.errno() == libc::EINTR => continue,
                Err(e) => Err(e),
            };
        }
    }
}

#[derive(Debug, PartialEq)]
enum Exit {
    Nisv(NisvExit),
    MmioWrite(u64, Vec<u8>),
    MmioRead(u64, usize),
    Other(String),
}

#[test]
fn capabilities_on_system_and_vm_fds_and_enable() {
    let kvm = Kvm::new().unwrap();
    // Every kernel from 5.10 to 7.3 answers 1 for both capabilities.
    assert_eq!(kvm.check_nisv_cap(Cap::ArmNisvToUser).unwrap(), 1);
    assert_eq!(kvm.check_nisv_cap(Cap::ArmInjectExtDabt).unwrap(), 1);
    let vm = kvm.create_vm_with_ipa_size(IPA_BITS).unwrap();
    assert_eq!(vm.check_nisv_cap(Cap::ArmNisvToUser).unwrap(), 1);
    assert_eq!(vm.check_nisv_cap(Cap::ArmInjectExtDabt).unwrap(), 1);
    assert_eq!(vm.nisv_support().unwrap(), Support::new(true, true));
    assert_eq!(vm.nisv_support().unwrap(), kvm.nisv_support().unwrap());
    kvm.require_nisv_cap(Cap::ArmNisvToUser).unwrap();
    vm.enable_nisv_to_user().unwrap();
    // Enabling again is accepted (the kernel sets a flag).
    vm.enable_nisv_to_user().unwrap();
    ExtDabtInjector::new(&vm).unwrap();
    ExtDabtInjector::new(&kvm).unwrap();
    vm.ext_dabt_injector().unwrap();

    // The raw-fd API gives the same answers.
    // SAFETY: `kvm` is /dev/kvm and `vm` a VM fd, both alive.
    unsafe {
        assert_eq!(
            cap::check_extension(&fd(&kvm), Cap::ArmNisvToUser).unwrap(),
            1
        );
        assert_eq!(
            cap::check_extension(&fd(&vm), Cap::ArmInjectExtDabt).unwrap(),
            1
        );
        assert_eq!(Support::probe(&fd(&vm)).unwrap(), Support::new(true, true));
        cap::require(&fd(&kvm), Cap::ArmInjectExtDabt).unwrap();
        cap::enable_nisv_to_user(&fd(&vm)).unwrap();
    }

    // KVM_CAP_ARM_SEA_TO_USER: absent up to 6.12, 1 on system and VM fds from 7.2
    // on (Debian's kernels in between were not checked), and enabling works.
    let sea_sys = kvm.check_nisv_cap(Cap::ArmSeaToUser).unwrap();
    let sea_vm = vm.check_nisv_cap(Cap::ArmSeaToUser).unwrap();
    let version = kernel_version();
    println!("KVM_CAP_ARM_SEA_TO_USER on Linux {version:?}: /dev/kvm {sea_sys}, VM {sea_vm}");
    assert_eq!(sea_sys, sea_vm);
    if version >= (7, 2) {
        assert_eq!(sea_vm, 1);
    } else if version <= (6, 12) {
        assert_eq!(sea_vm, 0);
    }
    match vm.enable_sea_to_user() {
        Ok(()) => assert!(sea_vm > 0),
        Err(CapError::Missing { cap }) => {
            assert_eq!(cap, Cap::ArmSeaToUser);
            assert_eq!(sea_vm, 0);
        }
        Err(e) => panic!("enabling KVM_CAP_ARM_SEA_TO_USER: {e}"),
    }
    // A vCPU fd does not answer KVM_CHECK_EXTENSION: typed ioctl error.
    let vcpu = vm.create_vcpu(0).unwrap();
    // SAFETY: not the fd kind the contract asks for, on purpose: KVM's vCPU
    // ioctl handler rejects KVM_CHECK_EXTENSION (an `_IO` request that passes
    // no memory) with an errno.
    let r = unsafe { cap::check_extension(&fd(&vcpu), Cap::ArmNisvToUser) };
    assert!(matches!(r, Err(CapError::Ioctl { .. })), "{r:?}");
}

#[test]
fn post_index_store_exits_nisv_then_continues_as_mmio() {
    let mut g = Guest::new(
        &[
            (0, STR_X0_X1_POST8), // str x0, [x1], #8
            (4, STR_X0_X1),       // str x0, [x1]
            (8, B_SELF),          // b .
        ],
        true,
    );
    let x0 = 0x1122_3344_5566_7788u64;
    // A non-zero offset within the page: the kernel ORs FAR_EL2[11:0] into
    // fault_ipa (kvm_handle_guest_abort, arch/arm64/kvm/mmu.c).
    let x1 = HOLE + 0x10;
    g.vcpu.set(Reg::X(0), x0).unwrap();
    g.vcpu.set(Reg::X(1), x1).unwrap();

    let exit = g.run().expect("KVM_RUN");
    let Exit::Nisv(n) = exit else {
        panic!("expected KVM_EXIT_ARM_NISV, got {exit:?}")
    };
    println!("kernel reported: {n} (esr_iss {:#x})", n.iss.bits());
    assert!(n.is_write());
    assert!(!n.iss.is_cache_maintenance());
    assert_eq!(n.fault_ipa, x1, "fault_ipa includes the page offset");
    assert!(matches!(n.iss.dfsc(), Dfsc::Translation { .. }), "{n}");
    // PC not advanced, registers untouched (no writeback by KVM).
    assert_eq!(g.vcpu.get(Reg::Pc).unwrap(), RAM_BASE);
    assert_eq!(g.vcpu.get(Reg::X(1)).unwrap(), x1);

    // Userspace "emulates": apply the writeback and step over the insn.
    g.vcpu.set(Reg::X(1), x1 + 8).unwrap();
    g.vcpu.set(Reg::Pc, RAM_BASE + 4).unwrap();

    // The plain store has a valid syndrome: ordinary MMIO exit at x1 + 8.
    let exit = g.run().expect("KVM_RUN");
    assert_eq!(exit, Exit::MmioWrite(x1 + 8, x0.to_le_bytes().to_vec()));
    assert_eq!(g.vcpu.get(Reg::Pc).unwrap(), RAM_BASE + 4);
}

#[test]
fn page_aligned_fault_ipa() {
    let mut g = Guest::new(&[(0, STR_X0_X1_POST8), (4, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    let exit = g.run().unwrap();
    // WnR = 1 and a translation fault at the level the host's stage 2 has no
    // entry: 0x45 (level 1) on 4 KiB hosts, 0x46 (level 2) on 16 KiB hosts.
    let page = host_page_size();
    let level = s2_translation_fault_level(page, IPA_BITS, HOLE, RAM_BASE);
    let esr_iss = 0x40 | (0x04 + u64::from(level));
    println!("host page size {page}: expecting esr_iss {esr_iss:#x} (level {level})");
    assert_eq!(exit, Exit::Nisv(NisvExit::new(esr_iss, HOLE)));
    // The same exit through the exit-kind parser, from the raw kvm_run.
    assert_eq!(
        ArmAbortExit::from_kvm_run(g.vcpu.get_kvm_run()),
        Some(ArmAbortExit::Nisv(NisvExit::new(esr_iss, HOLE)))
    );
}

#[test]
fn load_pair_exits_nisv_as_read() {
    let mut g = Guest::new(&[(0, LDP_X2_X3_X1), (4, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE + 0x100).unwrap();
    let exit = g.run().unwrap();
    let Exit::Nisv(n) = exit else {
        panic!("expected NISV, got {exit:?}")
    };
    assert!(!n.is_write());
    assert_eq!(n.fault_ipa, HOLE + 0x100);
    assert_eq!(g.vcpu.get(Reg::Pc).unwrap(), RAM_BASE);
}

#[test]
fn without_the_cap_kvm_run_fails_with_enosys_and_is_explained() {
    let mut g = Guest::new(&[(0, STR_X0_X1_POST8), (4, B_SELF)], false);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    let err = g
        .run()
        .expect_err("KVM_RUN must fail without the capability");
    assert_eq!(err.errno(), libc::ENOSYS);
    let e = RunError::from_errno(err);
    assert!(matches!(e, RunError::NisvNotEnabled));
    let msg = e.to_string();
    assert!(msg.contains("KVM_CAP_ARM_NISV_TO_USER"), "{msg}");
}

/// Inject an external abort after a NISV exit with `inject` and check what
/// the guest saw.
fn injected_external_abort_reaches_the_guest_vector(inject: impl FnOnce(&Guest)) {
    // Vector table at RAM_BASE + 0x800 (VBAR_EL1 must be 2 KiB aligned);
    // "current EL with SP_ELx, synchronous" is at VBAR + 0x200.
    let vbar = RAM_BASE + 0x800;
    let handler = 0x800 + 0x200;
    let mut g = Guest::new(
        &[
            (0, STR_X0_X1_POST8),          // str x0, [x1], #8   -> NISV, injected
            (4, B_SELF),                   // b .               (must not run)
            (handler, MRS_X6_ESR_EL1),     // mrs x6, esr_el1
            (handler + 4, MRS_X7_FAR_EL1), // mrs x7, far_el1
            (handler + 8, STP_X6_X7_X8),   // stp x6, x7, [x8]  (x8 = RAM + 0x1000)
            (handler + 12, STR_X6_X9),     // str x6, [x9]      -> MMIO exit
            (handler + 16, B_SELF),        // b .
        ],
        true,
    );
    let fault_va = HOLE + 0x28;
    g.vcpu.set(Reg::Sys(SysReg::VbarEl1), vbar).unwrap();
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::VbarEl1)).unwrap(), vbar);
    g.vcpu.set(Reg::X(1), fault_va).unwrap();
    g.vcpu.set(Reg::X(8), RAM_BASE + 0x1000).unwrap();
    g.vcpu.set(Reg::X(9), HOLE + 0x2000).unwrap();

    let exit = g.run().unwrap();
    assert!(matches!(exit, Exit::Nisv(_)), "{exit:?}");
    inject(&g);

    let exit = g.run().unwrap();
    let Exit::MmioWrite(addr, data) = exit else {
        panic!("expected the handler's MMIO store, got {exit:?}")
    };
    assert_eq!(addr, HOLE + 0x2000);
    let esr = Esr(g.ram_u64(0x1000));
    let far = g.ram_u64(0x1008);
    assert_eq!(data, esr.0.to_le_bytes().to_vec());
    println!("guest saw ESR_EL1 = {:#x}, FAR_EL1 = {far:#x}", esr.0);
    assert_eq!(
        esr.ec(),
        ExceptionClass::DataAbortSameEl,
        "ESR_EL1 {:#x}",
        esr.0
    );
    let da = esr.data_abort().unwrap();
    assert_eq!(da.dfsc(), Dfsc::SyncExternal, "ESR_EL1 {:#x}", esr.0);
    assert!(!da.far_not_valid());
    assert_eq!(far, fault_va);
    // The exception was taken at EL1 from the faulting instruction.
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::ElrEl1)).unwrap(), RAM_BASE);
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::EsrEl1)).unwrap(), esr.0);
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::FarEl1)).unwrap(), fault_va);
    assert_eq!(g.vcpu.get(Reg::Pc).unwrap(), vbar + 0x200 + 12);
    // The faulting store did not write back.
    assert_eq!(g.vcpu.get(Reg::X(1)).unwrap(), fault_va);
}

#[test]
fn injected_external_abort_through_kvm_ioctls() {
    injected_external_abort_reaches_the_guest_vector(|g| {
        let injector = g.vm.ext_dabt_injector().unwrap();
        injector.inject(&g.vcpu).unwrap();
    });
}

#[test]
fn injected_external_abort_through_a_raw_fd() {
    injected_external_abort_reaches_the_guest_vector(|g| {
        // SAFETY: `g.vm` is a VM fd and `g.vcpu` a vCPU fd, both alive.
        unsafe {
            cap::require(&fd(&g.vm), Cap::ArmInjectExtDabt).unwrap();
            inject::inject_ext_dabt(&fd(&g.vcpu)).unwrap();
        }
    });
}

#[test]
fn register_access_through_both_backends() {
    let mut g = Guest::new(&[(0, B_SELF)], false);
    let vcpu_fd = g.vcpu.as_raw_fd();
    // SAFETY: a vCPU fd, which stays open while `raw` is used.
    let mut raw = unsafe { RawVcpuFd::new(BorrowedFd::borrow_raw(vcpu_fd)) };
    for n in 0..=30u8 {
        raw.set(Reg::X(n), 0x1000 + u64::from(n)).unwrap();
    }
    for n in 0..=30u8 {
        assert_eq!(g.vcpu.get(Reg::X(n)).unwrap(), 0x1000 + u64::from(n));
    }
    raw.set(Reg::SpEl0, 0x8000_1000).unwrap();
    raw.set(Reg::SpEl1, 0x8000_2000).unwrap();
    assert_eq!(g.vcpu.get(Reg::SpEl0).unwrap(), 0x8000_1000);
    assert_eq!(g.vcpu.get(Reg::SpEl1).unwrap(), 0x8000_2000);
    assert_eq!(raw.get(Reg::Pstate).unwrap(), PSTATE_EL1H_DAIF);
    for n in 0..32u8 {
        let v = (u128::from(n) << 64) | 0xabcd_0000 | u128::from(n);
        g.vcpu.set_v(n, v).unwrap();
        assert_eq!(raw.get_v(n).unwrap(), v);
    }
    // System registers: after KVM_ARM_VCPU_INIT the MMU is off.
    let sctlr = raw.get(Reg::Sys(SysReg::SctlrEl1)).unwrap();
    assert_eq!(sctlr & 1, 0, "SCTLR_EL1.M after reset: {sctlr:#x}");
    for r in [
        SysReg::TcrEl1,
        SysReg::Ttbr0El1,
        SysReg::Ttbr1El1,
        SysReg::MairEl1,
    ] {
        raw.set(Reg::Sys(r), 0x1234_5000).unwrap();
        assert_eq!(g.vcpu.get(Reg::Sys(r)).unwrap(), 0x1234_5000, "{r:?}");
    }
    // ELR_EL1 / SPSR_EL1 are core registers in KVM's ONE_REG space.
    raw.set(Reg::Sys(SysReg::ElrEl1), 0x8000_0abc).unwrap();
    raw.set(Reg::Sys(SysReg::SpsrEl1), 0x3c5).unwrap();
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::ElrEl1)).unwrap(), 0x8000_0abc);
    assert_eq!(g.vcpu.get(Reg::Sys(SysReg::SpsrEl1)).unwrap(), 0x3c5);
    let mmfr0 = raw.get(Reg::Sys(SysReg::IdAa64mmfr0El1)).unwrap();
    println!("ID_AA64MMFR0_EL1 = {mmfr0:#x}");
    // DCZID_EL0: KVM_GET_ONE_REG answers on some kernels only; the library
    // falls back to the host CPU's value (kvm_nisv::dczid), never to a guess.
    let one_reg = raw.get(Reg::Sys(SysReg::DczidEl0));
    let d = dczid::vcpu_dczid(&mut raw).expect("DCZID_EL0 from ONE_REG or the host CPU");
    match &one_reg {
        Ok(v) => {
            println!("DCZID_EL0 via KVM_GET_ONE_REG = {v:#x}");
            assert_eq!((d.value, d.source), (*v, DczidSource::OneReg));
        }
        Err(e) => {
            println!(
                "DCZID_EL0 not readable with KVM_GET_ONE_REG ({e}); host CPU: {:#x}",
                d.value
            );
            assert_eq!(d.source, DczidSource::HostCpu);
            assert_eq!(Some(d.value), dczid::host_dczid());
        }
    }
    // `raw` borrows the fd of `g.vcpu`, which is still alive here; `&VcpuFd`
    // is a register backend too.
    let mut shared = &g.vcpu;
    assert_eq!(raw.get(Reg::Pc).unwrap(), shared.get(Reg::Pc).unwrap());
    shared.set(Reg::X(7), 0x77).unwrap();
    assert_eq!(raw.get(Reg::X(7)).unwrap(), 0x77);
}

#[test]
fn guest_reads_the_same_dczid_as_the_vmm() {
    // The guest's own MRS of DCZID_EL0 (not trapped by KVM), stored to the hole:
    // an MMIO write exit carrying the value. It must equal what kvm_nisv::dczid
    // hands the emulator.
    const MRS_X0_DCZID_EL0: u32 = 0xd53b_00e0; // mrs x0, dczid_el0
    let mut g = Guest::new(&[(0, MRS_X0_DCZID_EL0), (4, STR_X0_X1), (8, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    let exit = g.run().unwrap();
    let Exit::MmioWrite(addr, data) = exit else {
        panic!("expected the guest's store of DCZID_EL0, got {exit:?}")
    };
    assert_eq!(addr, HOLE);
    let guest = u64::from_le_bytes(data.try_into().expect("8-byte store"));
    let d = dczid::vcpu_dczid(&mut &g.vcpu).unwrap();
    println!(
        "guest DCZID_EL0 = {guest:#x}, library ({:?}) = {:#x}",
        d.source, d.value
    );
    assert_eq!(d.value, guest);
    assert!(d.block_size().is_some(), "DC ZVA prohibited: {guest:#x}");
}
