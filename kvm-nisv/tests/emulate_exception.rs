// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Taking a synchronous exception to EL1 (`kvm_nisv::exception`), against the
//! Arm ARM's `AArch64.TakeException` and KVM's `enter_exception64`
//! (arch/arm64/kvm/hyp/exception.c): vector offsets per origin, SPSR/ELR/ESR/FAR,
//! and every PSTATE field the entry changes or keeps.

use kvm_nisv::emulate::{Emulator, GuestFault, Outcome};
use kvm_nisv::exception::{EntryFeatures, TakeError, entry, take_sync_exception};
use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::regs::{RegisterFile, SysReg};
use kvm_nisv::stage1::El;

const VBAR: u64 = 0x8000_0800;

fn regs(pstate: u64, sctlr: u64) -> RegisterFile {
    let mut r = RegisterFile::new();
    r.pc = 0x4000_1234;
    r.pstate = pstate;
    r.set_sys(SysReg::VbarEl1, VBAR);
    r.set_sys(SysReg::SctlrEl1, sctlr);
    r.set_sys(SysReg::FarEl1, 0xdead);
    r
}

const SPAN: u64 = 1 << 23;
const DSSBS: u64 = 1 << 44;

#[test]
fn vector_offset_by_origin() {
    for (pstate, off) in [
        (0b0101, 0x200),   // EL1h
        (0b0100, 0x000),   // EL1t
        (0b0000, 0x400),   // EL0t (AArch64)
        (0b1_0000, 0x600), // AArch32 User
    ] {
        let mut r = regs(pstate, SPAN);
        take_sync_exception(&mut r, 0x9600_0007, Some(0x1000), EntryFeatures::new()).unwrap();
        assert_eq!(r.pc, VBAR + off, "PSTATE {pstate:#x}");
        assert_eq!(r.pstate & 0x1f, 0b0101, "EL1h, AArch64");
        assert_eq!(r.sys(SysReg::SpsrEl1), pstate);
        assert_eq!(r.sys(SysReg::ElrEl1), 0x4000_1234);
        assert_eq!(r.sys(SysReg::EsrEl1), 0x9600_0007);
        assert_eq!(r.sys(SysReg::FarEl1), 0x1000);
    }
}

#[test]
fn not_from_el2_or_aarch32_privileged_modes() {
    for pstate in [0b1001, 0b1000, 0b1101, 0b1_0011] {
        let mut r = regs(pstate, SPAN);
        let before = r.clone();
        assert!(matches!(
            take_sync_exception(&mut r, 0, None, EntryFeatures::new()),
            Err(TakeError::NotEl0OrEl1 { .. })
        ));
        assert_eq!(r, before, "nothing written");
    }
}

#[test]
fn pstate_fields() {
    // NZCV, DIT kept; DAIF set; PAN kept with SPAN = 1; UAO, SS, IL, BTYPE,
    // SSBS (DSSBS = 0), TCO (no MTE) cleared.
    let nzcv = 0xa000_0000;
    let old = nzcv
        | (1 << 24)
        | (1 << 23)
        | (1 << 22)
        | (1 << 21)
        | (1 << 20)
        | (3 << 10)
        | (1 << 12)
        | (1 << 25);
    let (_, new) = entry(old, SPAN, EntryFeatures::new()).unwrap();
    assert_eq!(new, nzcv | (1 << 24) | (1 << 22) | (0xf << 6) | 0b0101);
    // PAN clear and SPAN = 1: stays clear. SPAN = 0: set.
    let (_, new) = entry(0b0101, SPAN, EntryFeatures::new()).unwrap();
    assert_eq!(new & (1 << 22), 0);
    let (_, new) = entry(0b0101, 0, EntryFeatures::new()).unwrap();
    assert_ne!(new & (1 << 22), 0);
    // SSBS from DSSBS; TCO with MTE.
    let (_, new) = entry(0, SPAN | DSSBS, EntryFeatures::new().with_mte(true)).unwrap();
    assert_eq!(new, (1 << 12) | (1 << 25) | (0xf << 6) | 0b0101);
    // From AArch32: DIT comes from bit 21 of the AArch32 layout.
    let (off, new) = entry((1 << 21) | 0b1_0000, SPAN, EntryFeatures::new()).unwrap();
    assert_eq!(off, 0x600);
    assert_eq!(new, (1 << 24) | (0xf << 6) | 0b0101);
}

#[test]
fn far_is_left_alone_without_an_address() {
    let mut r = regs(0b0101, SPAN);
    take_sync_exception(&mut r, 0x5600_0000, None, EntryFeatures::new()).unwrap();
    assert_eq!(r.sys(SysReg::FarEl1), 0xdead);
}

#[test]
fn emulator_takes_its_faults_and_clears_the_monitor() {
    // ldxr x0, [x1] at a page the MMU-off flat map sends to RAM, then a fault.
    let mut ram = VecRam::new();
    assert!(ram.add_region(0x8000_0000, 0x2000));
    ram.write(0x8000_0000, &0xc85f_7c20u32.to_le_bytes())
        .unwrap(); // ldxr x0, [x1]
    ram.write(0x8000_0004, &0xd503_201fu32.to_le_bytes())
        .unwrap(); // nop (no fusion)
    ram.write(0x8000_0008, &0xc800_7c22u32.to_le_bytes())
        .unwrap(); // stxr w0, x2, [x1]
    let mut r = regs(0b0101, SPAN);
    r.pc = 0x8000_0000;
    r.x[1] = 0x8000_1000;
    let mut bus = kvm_nisv_test_bus::NoBus;
    let mut emu = Emulator::new();
    let o = emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert!(matches!(o, Outcome::Emulated { .. }), "{o:?}");
    let f = GuestFault::external_abort(0x1234, true, El::El1);
    emu.take_fault(&mut r, &f, EntryFeatures::new()).unwrap();
    assert_eq!(r.pc, VBAR + 0x200);
    assert_eq!(r.sys(SysReg::EsrEl1), 0x9600_0050);
    assert_eq!(r.sys(SysReg::FarEl1), 0x1234);
    assert_eq!(r.sys(SysReg::ElrEl1), 0x8000_0004);
    // The monitor is clear: a store-exclusive to the same address now fails.
    r.pstate = 0b0101;
    r.pc = 0x8000_0008;
    r.x[2] = 7;
    let o = emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert!(matches!(o, Outcome::Emulated { .. }), "{o:?}");
    assert_eq!(r.x[0], 1, "status 1: the monitor was cleared");
}

mod kvm_nisv_test_bus {
    use kvm_nisv::mem::{BusError, MmioBus};

    /// A bus with no device.
    pub struct NoBus;

    impl MmioBus for NoBus {
        fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
            Err(BusError::NoDevice {
                ipa,
                len: data.len(),
            })
        }
        fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
            Err(BusError::NoDevice {
                ipa,
                len: data.len(),
            })
        }
        fn contains(&self, _: u64, _: usize) -> bool {
            false
        }
    }
}
