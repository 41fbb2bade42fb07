// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Emulator unit cases: the documented splitting rules, register-read
//! minimality, the fault_ipa cross-check, unsupported states, ESR values,
//! hardware AF updates, counters.

#![allow(clippy::field_reassign_with_default)]

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use common::Recording;
use kvm_nisv::decode::{
    Base, Class, Element, Elements, Form, Insn, Offset, Op, RegSlot, VecWrite, Writeback,
};
use kvm_nisv::emulate::{EmulateError, Emulator, FetchFailure, Outcome, UnsupportedReason};
use kvm_nisv::mem::{BusAccess, VecBus};
use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::regs::{Reg, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::stage1::{El, FaultKind, SCTLR_M};

const CODE: u64 = 0x1000;

/// RAM with code at 0x1000 holding `word`, MMU off, EL1h.
fn flat(word: u32) -> (VecRam, Recording) {
    let mut ram = VecRam::new();
    assert!(ram.add_region(0, 0x4000));
    ram.write(CODE, &word.to_le_bytes()).unwrap();
    let mut r = Recording::default();
    r.rf.pc = CODE;
    r.rf.pstate = 0x3c5;
    (ram, r)
}

fn insn(op: Op, class: Class, base: Base, elements: &[Element]) -> Insn {
    let mut els = Elements::new();
    for e in elements {
        assert!(els.push(*e));
    }
    Insn {
        word: 0,
        class,
        op,
        base,
        offset: Offset::Imm(0),
        writeback: Writeback::None,
        elements: els,
        vec_write: VecWrite::None,
        align: 0,
        acquire: false,
        release: false,
        unprivileged: false,
        form: Form::Plain,
    }
}

#[test]
fn str_post_index_to_device_minimal_reads() {
    // str x0, [x1], #8 (the case from docs/shared/arm64-host.md).
    let (ram, mut r) = flat(0xf800_8420);
    r.rf.x[0] = 0x1122_3344_5566_7788;
    r.rf.x[1] = 0x1000_0000;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x1000_0000, vec![0; 16]));
    let mut emu = Emulator::new();
    let out = emu
        .emulate(&mut r, &ram, &mut bus, Some(0x1000_0000))
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(bus.log(), vec![BusAccess::write(0x1000_0000, 8)]);
    assert_eq!(
        bus.window(0x1000_0000).unwrap()[..8],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(r.rf.x[1], 0x1000_0008);
    assert_eq!(r.rf.pc, CODE + 4);
    // MMU off: PSTATE, PC, SCTLR, then X1 and X0; no TCR/TTBR/MAIR, no V.
    assert_eq!(
        r.reads,
        vec![
            Reg::Pstate,
            Reg::Pc,
            Reg::Sys(SysReg::SctlrEl1),
            Reg::X(1),
            Reg::X(0)
        ]
    );
    assert!(r.v_reads.is_empty());
    assert_eq!(r.writes, vec![Reg::X(1), Reg::Pc]);
    assert_eq!(emu.counters().emulated.get(&Class::GprSingle), Some(&1));
}

#[test]
fn fault_ipa_must_match_an_accessed_page() {
    let (ram, mut r) = flat(0xf800_8420); // str x0, [x1], #8
    r.rf.x[1] = 0x1000_0000;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x1000_0000, vec![0; 16]));
    let before = r.rf.clone();
    let mut emu = Emulator::new();
    let e = emu
        .emulate(&mut r, &ram, &mut bus, Some(0x2000_0000))
        .unwrap_err();
    assert!(matches!(
        e,
        EmulateError::FaultIpaMismatch {
            fault_ipa: 0x2000_0000
        }
    ));
    assert_eq!(r.rf, before);
    assert!(bus.log().is_empty());
    assert_eq!(emu.counters().errors, 1);
    // Same page, another offset: accepted.
    let out = emu
        .emulate(&mut r, &ram, &mut bus, Some(0x1000_0ff8))
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }));
}

/// MMU on with a Normal-memory device page at VA 0x10_1000 (IPA 0x900_0000)
/// and a RAM page at VA 0x10_0000 (IPA 0x800_0000).
fn mmu_env(word: u32) -> (VecRam, Recording, VecBus) {
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(0x10_0000, 0x800_0000, 3, pt::AF);
    p.map(0x10_1000, 0x900_0000, 3, pt::AF);
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    assert!(ram.add_region(0x800_0000, 0x1000));
    ram.write(CODE, &word.to_le_bytes()).unwrap();
    let mut r = Recording::default();
    r.rf.pc = CODE;
    r.rf.pstate = 0x3c5;
    r.rf.set_sys(SysReg::SctlrEl1, SCTLR_M);
    r.rf.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    r.rf.set_sys(SysReg::Ttbr0El1, p.root);
    r.rf.set_sys(SysReg::MairEl1, 0xff);
    r.rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x900_0000, (0..0x1000).map(|i| i as u8).collect()));
    (ram, r, bus)
}

#[test]
fn q_element_to_device_is_two_8_byte_accesses() {
    // ldr q3, [x1]
    let (ram, mut r, mut bus) = mmu_env(0x3dc0_0023);
    r.rf.x[1] = 0x10_1010;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, Some(0x900_0010))
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(
        bus.log(),
        vec![
            BusAccess::read(0x900_0010, 8),
            BusAccess::read(0x900_0018, 8)
        ]
    );
    let want = u128::from_le_bytes(core::array::from_fn(|i| 0x10 + i as u8));
    assert_eq!(r.rf.v[3], want);
    assert!(
        r.v_reads.is_empty(),
        "a whole-register load does not read V3"
    );
    // MMU on: SCTLR, TCR, MMFR0 (first emulation) and TTBR0 (code and data
    // are in the lower half) once each; no TTBR1, and no MAIR (the element is
    // aligned, so its memory type changes nothing).
    let sys: Vec<_> = r
        .reads
        .iter()
        .filter(|x| matches!(x, Reg::Sys(_)))
        .copied()
        .collect();
    assert_eq!(
        sys,
        vec![
            Reg::Sys(SysReg::SctlrEl1),
            Reg::Sys(SysReg::TcrEl1),
            Reg::Sys(SysReg::IdAa64mmfr0El1),
            Reg::Sys(SysReg::Ttbr0El1),
        ]
    );
}

#[test]
fn element_straddling_ram_and_device_is_split_at_the_page() {
    // ldur x2, [x1, #-3] with x1 = 0x10_1000: bytes 0x10_0ffd..0x10_1004:
    // 3 bytes of RAM, then 5 device bytes as 4 + 1.
    let word = 0xf85f_d022;
    let (ram, mut r, mut bus) = mmu_env(word);
    r.rf.x[1] = 0x10_1000;
    ram.write(0x800_0ffd, &[0xaa, 0xbb, 0xcc]).unwrap();
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, Some(0x900_0000))
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(
        bus.log(),
        vec![
            BusAccess::read(0x900_0000, 4),
            BusAccess::read(0x900_0004, 1)
        ]
    );
    assert_eq!(
        r.rf.x[2],
        u64::from_le_bytes([0xaa, 0xbb, 0xcc, 0, 1, 2, 3, 4])
    );
    // And the other way round: a store starting on the device page at an odd
    // address: 1 + 2 + 4 bytes then RAM... (stur x2, [x1, #-7] at the device end).
}

#[test]
fn odd_device_piece_splits_naturally() {
    // stur x2, [x1] with x1 = 0x10_1ffb: 5 device bytes at 0x900_0ffb (1+4),
    // then 3 bytes at VA 0x10_2000, which is unmapped: translation fault, nothing
    // written.
    let word = 0xf800_0022;
    let (ram, mut r, mut bus) = mmu_env(word);
    r.rf.x[1] = 0x10_1ffb;
    r.rf.x[2] = 0x0807_0605_0403_0201;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    match out {
        Outcome::GuestFault(f) => {
            assert_eq!(f.va, 0x10_2000);
            assert_eq!(f.fault.kind, FaultKind::Translation);
            assert_eq!(f.fault.level, 3);
            assert!(f.write);
            assert_eq!(f.iss(), 0x47);
            assert_eq!(f.esr(), (0x25 << 26) | (1 << 25) | 0x47);
            assert_eq!(f.from_el, El::El1);
        }
        o => panic!("{o:?}"),
    }
    assert!(bus.log().is_empty());
    // stur w2, [x1] with x1 = 0x10_1ffd crosses into RAM? No: map it.
    let (ram, mut r, mut bus) = mmu_env(0xb800_0022);
    r.rf.x[1] = 0x10_0ffd; // 3 RAM bytes then 1 device byte
    r.rf.x[2] = 0x0403_0201;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(bus.log(), vec![BusAccess::write(0x900_0000, 1)]);
    let mut b = [0u8; 3];
    ram.read(0x800_0ffd, &mut b).unwrap();
    assert_eq!(b, [1, 2, 3]);
    assert_eq!(bus.window(0x900_0000).unwrap()[0], 4);
    // Device first, then... a 3-byte device piece at an odd address: 1 + 2.
    let (ram, mut r, mut bus) = mmu_env(0xb800_0022);
    r.rf.x[1] = 0x10_1001;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }));
    assert_eq!(
        bus.log(),
        vec![
            BusAccess::write(0x900_0001, 1),
            BusAccess::write(0x900_0002, 2),
            BusAccess::write(0x900_0004, 1)
        ]
    );
}

#[test]
fn dc_zva_zeroes_a_block_across_ram_and_device_when_normal() {
    // Map one 64-byte-block-sized... blocks never cross pages, so mix RAM and
    // device within one page by making the device claim half of a RAM-less page.
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(0x10_0000, 0xa00_0000, 3, pt::AF);
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    assert!(ram.add_region(0xa00_0000, 0x20));
    ram.write(0xa00_0000, &[0xff; 0x20]).unwrap();
    ram.write(CODE, &0xd50b_7423u32.to_le_bytes()).unwrap(); // dc zva, x3
    let mut bus = VecBus::new();
    assert!(bus.add_window(0xa00_0020, vec![0xee; 0x20]));
    let mut r = RegisterFile::default();
    r.pc = CODE;
    r.pstate = 0x3c5;
    r.x[3] = 0x10_0017;
    r.set_sys(SysReg::SctlrEl1, SCTLR_M);
    r.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    r.set_sys(SysReg::Ttbr0El1, p.root);
    r.set_sys(SysReg::MairEl1, 0xff);
    r.set_sys(SysReg::DczidEl0, 4); // 64 bytes
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    // The block 0x10_0000..0x10_0040 is one translation whose first half is
    // RAM and second half a device: both are zeroed, the device with 8-byte
    // writes.
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    let mut b = [1u8; 0x20];
    ram.read(0xa00_0000, &mut b).unwrap();
    assert_eq!(b, [0; 0x20]);
    assert_eq!(bus.window(0xa00_0020).unwrap(), &[0; 0x20]);
    assert_eq!(
        bus.log(),
        (0..4)
            .map(|i| BusAccess::write(0xa00_0020 + 8 * i, 8))
            .collect::<Vec<_>>()
    );
    // With an override DCZID of 128 bytes, the block reaches beyond both.
    r.pc = CODE;
    bus.clear_log();
    let out = Emulator::new()
        .with_dczid(5)
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    match out {
        Outcome::NoDevice { va, ipa, .. } => assert_eq!((va, ipa), (0x10_0040, 0xa00_0040)),
        o => panic!("{o:?}"),
    }
    assert!(bus.log().is_empty());
    bus.window_mut(0xa00_0020).unwrap().fill(0xee);
    // DZP set: unsupported, nothing written.
    r.x[3] = 0x10_0020;
    r.pc = CODE;
    let out = Emulator::new()
        .with_dczid(0x13)
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(
        out,
        Outcome::Unsupported {
            word: Some(0xd50b_7423),
            pc: CODE,
            reason: UnsupportedReason::DcZvaProhibited { dczid: 0x13 },
        }
    );
    assert_eq!(bus.window(0xa00_0020).unwrap(), &[0xee; 0x20]);
    // EL0 with SCTLR_EL1.DZE = 0: unsupported.
    r.pstate = 0x3c0;
    let out = Emulator::new()
        .with_dczid(3)
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(
        out,
        Outcome::Unsupported {
            reason: UnsupportedReason::DcZvaProhibited { dczid: 3 },
            ..
        }
    ));
}

#[test]
fn dc_zva_with_mmu_off_is_an_alignment_fault() {
    let (ram, mut r) = flat(0xd50b_7423);
    r.rf.x[3] = 0x2345;
    r.rf.set_sys(SysReg::DczidEl0, 4);
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut VecBus::new(), None)
        .unwrap();
    match out {
        Outcome::GuestFault(f) => {
            assert_eq!(
                (f.va, f.fault.kind, f.dfsc()),
                (0x2345, FaultKind::Alignment, 0x21)
            );
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn unsupported_states_and_words() {
    let mut bus = VecBus::new();
    // AArch32.
    let (ram, mut r) = flat(0xf800_8420);
    r.rf.pstate = 0x10;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(
        out,
        Outcome::Unsupported {
            word: None,
            pc: CODE,
            reason: UnsupportedReason::AArch32
        }
    );
    // EL2h.
    r.rf.pstate = 0x9;
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(
        out,
        Outcome::Unsupported {
            word: None,
            pc: CODE,
            reason: UnsupportedReason::NotEl0OrEl1 { el: 2 }
        }
    );
    // Not a load/store: add x0, x0, #1.
    let (ram, mut r) = flat(0x9100_0400);
    let mut emu = Emulator::new();
    let out = emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(
        out,
        Outcome::Unsupported {
            word: Some(0x9100_0400),
            pc: CODE,
            reason: UnsupportedReason::NotDecoded
        }
    );
    assert_eq!(emu.counters().unsupported, 1);
    // An inconsistent hand-made description (lane out of range).
    let (ram, mut r) = flat(0);
    let i = insn(
        Op::Load,
        Class::SimdSingle,
        Base::X(1),
        &[Element {
            offset: 0,
            size: 8,
            reg: RegSlot::Vec { n: 0, lane: 2 },
        }],
    );
    let out = Emulator::new()
        .emulate_insn(&mut r, &ram, &mut bus, &i, None)
        .unwrap();
    assert!(matches!(
        out,
        Outcome::Unsupported {
            reason: UnsupportedReason::Inconsistent,
            ..
        }
    ));
}

#[test]
fn fetch_failures_are_errors() {
    let mut bus = VecBus::new();
    let (ram, mut r) = flat(0xf800_8420);
    r.rf.pc = 0x1002;
    let e = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap_err();
    assert!(matches!(
        e,
        EmulateError::Fetch {
            reason: FetchFailure::Misaligned,
            ..
        }
    ));
    r.rf.pc = 0x10_0000;
    let e = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap_err();
    assert!(matches!(
        e,
        EmulateError::Fetch {
            reason: FetchFailure::NotRam { ipa: 0x10_0000 },
            ..
        }
    ));
    // MMU on, PC unmapped: the walker's fault.
    let (ram, mut r, mut bus) = mmu_env(0xf800_8420);
    r.rf.pc = 0x5000;
    let e = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap_err();
    assert!(matches!(
        e,
        EmulateError::Fetch {
            reason: FetchFailure::Fault(_),
            ..
        }
    ));
}

#[test]
fn ldtr_at_el1_is_checked_as_el0_and_pan_applies_to_ldr() {
    // A page EL1 may access but EL0 may not: LDTR faults, LDR works.
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(0x10_0000, 0x900_0000, 3, pt::AF);
    p.map(0x10_1000, 0x900_1000, 3, pt::AF | pt::AP_EL0);
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x900_0000, vec![7; 0x2000]));
    let setup = |word: u32, x1: u64, pstate: u64| {
        ram.write(CODE, &word.to_le_bytes()).unwrap();
        let mut r = RegisterFile::default();
        r.pc = CODE;
        r.pstate = pstate;
        r.x[1] = x1;
        r.set_sys(SysReg::SctlrEl1, SCTLR_M);
        r.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
        r.set_sys(SysReg::Ttbr0El1, p.root);
        r.set_sys(SysReg::MairEl1, 0x00);
        r
    };
    // ldtr x2, [x1]
    let mut r = setup(0xf840_0822, 0x10_0000, 0x3c5);
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    match out {
        Outcome::GuestFault(f) => {
            assert_eq!((f.fault.kind, f.write), (FaultKind::Permission, false))
        }
        o => panic!("{o:?}"),
    }
    // With PSTATE.UAO, LDTR behaves like LDR.
    let mut r = setup(0xf840_0822, 0x10_0000, 0x3c5 | (1 << 23));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }));
    assert_eq!(r.x[2], 0x0707_0707_0707_0707);
    // ldr x2, [x1] on the EL0-accessible page with PAN: permission fault.
    let mut r = setup(0xf940_0022, 0x10_1000, 0x3c5 | (1 << 22));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::Permission));
    // ... and without PAN it works; LDTR too (PAN does not apply to it).
    let mut r = setup(0xf840_0822, 0x10_1000, 0x3c5 | (1 << 22));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }));
}

#[test]
fn hardware_access_flag_is_set_when_the_access_is_made() {
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    let slot = p.map(0x10_0000, 0x900_0000, 3, 0);
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    ram.write(CODE, &0xf800_8420u32.to_le_bytes()).unwrap(); // str x0, [x1], #8
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x900_0000, vec![0; 0x1000]));
    let mut r = RegisterFile::default();
    r.pc = CODE;
    r.pstate = 0x3c5;
    r.x[1] = 0x10_0000;
    r.set_sys(SysReg::SctlrEl1, SCTLR_M);
    r.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    r.set_sys(SysReg::Ttbr0El1, p.root);
    let out = Emulator::new()
        .emulate(&mut r.clone(), &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::AccessFlag));
    let read = |ram: &VecRam| {
        let mut b = [0u8; 8];
        ram.read(slot, &mut b).unwrap();
        u64::from_le_bytes(b)
    };
    assert_eq!(read(&ram) & pt::AF, 0);
    r.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23) | (1 << 39));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }));
    assert_ne!(read(&ram) & pt::AF, 0);
}

#[test]
fn btype_and_ss_are_cleared_and_sp_selection() {
    // str x0, [sp, #-16]! at EL1t uses SP_EL0.
    let (ram, mut r) = flat(0xf81f_0fe0);
    r.rf.pstate = 0x3c4 | (2 << 10) | (1 << 21);
    r.rf.sp_el0 = 0x1_0010;
    r.rf.sp_el1 = 0x7777;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x1_0000, vec![0; 0x20]));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!((r.rf.sp_el0, r.rf.sp_el1), (0x1_0000, 0x7777));
    assert_eq!(r.rf.pstate, 0x3c4);
    assert_eq!(bus.log(), vec![BusAccess::write(0x1_0000, 8)]);
}

#[test]
fn exclusive_monitor_sequence() {
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x2_0000, vec![0; 0x100]));
    let mut emu = Emulator::new();
    let run = |emu: &mut Emulator, bus: &mut VecBus, word: u32, x1: u64| {
        let (ram, mut r) = flat(word);
        r.rf.x[1] = x1;
        r.rf.x[0] = 0xdead_beef;
        r.rf.x[3] = 0x5555;
        let out = emu.emulate(&mut r, &ram, bus, None).unwrap();
        assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
        r.rf
    };
    // stxr w3, x0, [x1] without a load-exclusive: fails, status 1.
    let r = run(&mut emu, &mut bus, 0xc803_7c20, 0x2_0000);
    assert_eq!(r.x[3], 1);
    assert_eq!(bus.log().len(), 0);
    // ldxr x2, [x1]; stxr w3, x0, [x1]: succeeds once.
    run(&mut emu, &mut bus, 0xc85f_7c22, 0x2_0000);
    let r = run(&mut emu, &mut bus, 0xc803_7c20, 0x2_0000);
    assert_eq!(r.x[3], 0);
    assert_eq!(
        bus.window(0x2_0000).unwrap()[..4],
        0xdead_beefu32.to_le_bytes()
    );
    let r = run(&mut emu, &mut bus, 0xc803_7c20, 0x2_0000);
    assert_eq!(r.x[3], 1);
    // Another address or size does not match; clear_monitor disarms.
    run(&mut emu, &mut bus, 0xc85f_7c22, 0x2_0000);
    let r = run(&mut emu, &mut bus, 0xc803_7c20, 0x2_0008);
    assert_eq!(r.x[3], 1);
    run(&mut emu, &mut bus, 0xc85f_7c22, 0x2_0000);
    let r = run(&mut emu, &mut bus, 0x8803_7c20, 0x2_0000); // stxr w3, w0
    assert_eq!(r.x[3], 1);
    run(&mut emu, &mut bus, 0xc85f_7c22, 0x2_0000);
    emu.clear_monitor();
    let r = run(&mut emu, &mut bus, 0xc803_7c20, 0x2_0000);
    assert_eq!(r.x[3], 1);
    assert_eq!(emu.counters().emulated.get(&Class::Exclusive), Some(&10));
}

#[test]
fn no_device_leaves_state_unchanged() {
    // ldp x2, x3, [x1] with the first element on a device, the second nowhere.
    let (ram, mut r) = flat(0xa940_0c22);
    r.rf.x[1] = 0x3_0ff8;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x3_0000, vec![1; 0x1000]));
    let before = r.rf.clone();
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, Some(0x3_1000))
        .unwrap();
    match out {
        Outcome::NoDevice { va, ipa, .. } => assert_eq!((va, ipa), (0x3_1000, 0x3_1000)),
        o => panic!("{o:?}"),
    }
    assert_eq!(r.rf, before);
    assert!(bus.log().is_empty());
}

#[test]
fn counters_display() {
    let mut emu = Emulator::new();
    let (ram, mut r) = flat(0x9100_0400);
    emu.emulate(&mut r, &ram, &mut VecBus::new(), None).unwrap();
    let text = emu.counters().to_string();
    assert!(text.contains("unsupported: 1"), "{text}");
    let mut r2 = r.rf.clone();
    r2.x[1] = 0x1000_0000;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x1000_0000, vec![0; 8]));
    let (ram, _) = flat(0xf800_8420);
    emu.emulate(&mut r2, &ram, &mut bus, None).unwrap();
    assert!(emu.counters().to_string().contains("GprSingle: 1"));
    let _ = r2.get(Reg::Pc);
}

/// `AArch64.UnalignedAccessFaults` (DDI 0487K.a) for the instructions with an
/// alignment requirement of their own, on Normal memory (the device page
/// mapped Normal at VA 0x10_1000, bytes 0, 1, 2, ...).
#[test]
fn lse2_alignment_rules() {
    const LDAR: u32 = 0xc8df_fc22; // ldar x2, [x1]
    const LDAXR: u32 = 0xc85f_fc22; // ldaxr x2, [x1]
    const LDADD: u32 = 0xb820_0022; // ldadd w0, w2, [x1]
    const LDXP: u32 = 0xc87f_0c22; // ldxp x2, x3, [x1]
    // (word, address, ID_AA64MMFR2_EL1.AT, SCTLR_EL1.nAA, faults?)
    let cases: &[(u32, u64, u64, bool, bool)] = &[
        // Without FEAT_LSE2 every unaligned one faults, nAA or not.
        (LDAR, 0x10_1004, 0, false, true),
        (LDAR, 0x10_1004, 0, true, true),
        (LDAXR, 0x10_1004, 0, false, true),
        (LDADD, 0x10_1002, 0, false, true),
        // FEAT_LSE2, acquire/release: within an aligned 16-byte quantity never
        // faults; crossing one faults only with nAA = 0.
        (LDAR, 0x10_1004, 1, false, false),
        (LDAR, 0x10_100c, 1, false, true),
        (LDAR, 0x10_100c, 1, true, false),
        // FEAT_LSE2, exclusives and atomics: within 16 bytes never faults;
        // crossing always does, nAA or not.
        (LDAXR, 0x10_1004, 1, false, false),
        (LDAXR, 0x10_100c, 1, true, true),
        (LDADD, 0x10_1002, 1, false, false),
        (LDADD, 0x10_100e, 1, true, true),
        // A 16-byte LDXP can only be in one quantity when aligned.
        (LDXP, 0x10_1008, 1, true, true),
    ];
    for &(word, va, at, naa, faults) in cases {
        let (ram, mut r, mut bus) = mmu_env(word);
        r.rf.x[1] = va;
        r.rf.set_sys(SysReg::IdAa64mmfr2El1, at << 32);
        let sctlr = r.rf.sys(SysReg::SctlrEl1);
        r.rf.set_sys(SysReg::SctlrEl1, sctlr | (u64::from(naa) << 6));
        let out = Emulator::new()
            .emulate(&mut r, &ram, &mut bus, None)
            .unwrap();
        let what = format!("{word:#010x} at {va:#x}, AT {at}, nAA {naa}: {out:?}");
        if faults {
            assert!(
                matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::Alignment && f.va == va),
                "{what}"
            );
        } else {
            assert!(matches!(out, Outcome::Emulated { .. }), "{what}");
            let off = (va - 0x10_1000) as u8;
            let want = match word {
                LDADD => u64::from_le_bytes([off, off + 1, off + 2, off + 3, 0, 0, 0, 0]),
                _ => u64::from_le_bytes(core::array::from_fn(|i| off + i as u8)),
            };
            assert_eq!(r.rf.x[2], want, "{what}");
        }
        // ID_AA64MMFR2_EL1 is read only for a misaligned access, and once.
        let n = r
            .reads
            .iter()
            .filter(|&&g| g == Reg::Sys(SysReg::IdAa64mmfr2El1))
            .count();
        assert_eq!(n, 1, "{what}");
    }
    // The override: no register read.
    let (ram, mut r, mut bus) = mmu_env(LDAR);
    r.rf.x[1] = 0x10_1004;
    let out = Emulator::new()
        .with_lse2(true)
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert!(!r.reads.contains(&Reg::Sys(SysReg::IdAa64mmfr2El1)));
    // An aligned access never asks.
    let (ram, mut r, mut bus) = mmu_env(LDAR);
    r.rf.x[1] = 0x10_1008;
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(!r.reads.contains(&Reg::Sys(SysReg::IdAa64mmfr2El1)));
}

/// With FEAT_LSE2, an unaligned exclusive or acquire/release access that the
/// instruction's own rule allows is still an alignment fault on Device memory
/// (the whole access is unaligned: pseudocode `IsAligned(address, size)`).
#[test]
fn lse2_does_not_relax_device_memory() {
    // ldxp w2, w3, [x1] (8 bytes) at 4 mod 8, inside one 16-byte quantity,
    // with the MMU off (Device-nGnRnE): each 4-byte element is aligned, the
    // access is not.
    let (ram, mut r) = flat(0x887f_0c22);
    r.rf.x[1] = 0x1000_0004;
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x1000_0000, vec![0; 16]));
    let out = Emulator::new()
        .with_lse2(true)
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(
        matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::Alignment),
        "{out:?}"
    );
    assert!(bus.log().is_empty());
}

#[test]
fn constrained_unpredictable_overlaps_take_a_permitted_outcome() {
    // Device memory at 0x1000_0000 holding two known doublewords.
    let dev = || {
        let mut bus = VecBus::new();
        let mut b = 0x1111_1111_1111_1111u64.to_le_bytes().to_vec();
        b.extend_from_slice(&0x2222_2222_2222_2222u64.to_le_bytes());
        assert!(bus.add_window(0x1000_0000, b));
        bus
    };
    // ldr x1, [x1], #8 (WBOVERLAPLD): Constraint_UNKNOWN, the UNKNOWN value
    // being the writeback address (written after the load).
    let (ram, mut r) = flat(0xf840_8421);
    r.rf.x[1] = 0x1000_0000;
    let mut bus = dev();
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!((r.rf.x[1], r.rf.pc), (0x1000_0008, CODE + 4));
    // ldp x2, x2, [x1] (LDPOVERLAP): Constraint_UNKNOWN, the second element.
    let (ram, mut r) = flat(0xa940_0822);
    r.rf.x[1] = 0x1000_0000;
    let mut bus = dev();
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(r.rf.x[2], 0x2222_2222_2222_2222);
    assert_eq!(bus.log().len(), 2, "both elements read");
    // ldp x2, x1, [x1], #16 (WBOVERLAPLD): x1 = writeback address, x2 loaded.
    let (ram, mut r) = flat(0xa8c1_0422);
    r.rf.x[1] = 0x1000_0000;
    let mut bus = dev();
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!((r.rf.x[1], r.rf.x[2]), (0x1000_0010, 0x1111_1111_1111_1111));
    // stxr w1, w0, [x1] (BASEOVERLAP) after ldxr x3, [x1]... the monitor does
    // not match a 4-byte store to an 8-byte load: status 1, nothing stored,
    // and the address came from x1 before the status write (Constraint_NONE).
    let (ram, mut r) = flat(0x8801_7c20);
    r.rf.x[1] = 0x1000_0000;
    r.rf.x[0] = 0xabcd;
    let mut bus = dev();
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(r.rf.x[1], 1, "status");
    assert_eq!(bus.window(0x1000_0000).unwrap()[..4], [0x11; 4]);
    // stxr w0, w0, [x1] (DATAOVERLAP) right after its ldxr w0, [x1]: the
    // pair is fused; the stored value is w0 as loaded (Constraint_NONE), the
    // status overwrites it afterwards.
    let (ram, mut r) = flat(0x885f_7c20); // ldxr w0, [x1]
    ram.write(CODE + 4, &0x8800_7c20u32.to_le_bytes()).unwrap();
    r.rf.x[1] = 0x1000_0000;
    let mut bus = dev();
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!((r.rf.x[0], r.rf.pc), (0, CODE + 8), "status 0 in w0");
    assert_eq!(bus.window(0x1000_0000).unwrap()[..4], [0x11; 4]);
}

#[test]
fn stores_to_read_only_ram_go_to_the_bus_or_nowhere() {
    // RAM at 0 (code), read-only RAM at 0x8000 (like a KVM_MEM_READONLY slot).
    let mk = |word: u32| {
        let mut ram = VecRam::new();
        assert!(ram.add_region(0, 0x4000));
        assert!(ram.add_read_only_region(0x8000, 0x1000));
        ram.write(CODE, &word.to_le_bytes()).unwrap();
        ram.write(0x8000, &0x0102_0304_0506_0708u64.to_le_bytes())
            .unwrap();
        let mut r = Recording::default();
        r.rf.pc = CODE;
        r.rf.pstate = 0x3c5;
        r.rf.x[0] = 0xaaaa_bbbb_cccc_dddd;
        r.rf.x[1] = 0x8000;
        (ram, r)
    };
    // A load reads the RAM.
    let (ram, mut r) = mk(0xf940_0022); // ldr x2, [x1]
    let mut bus = VecBus::new();
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(r.rf.x[2], 0x0102_0304_0506_0708);
    // A store with no device claiming the range: NoDevice, nothing written.
    let (ram, mut r) = mk(0xf900_0020); // str x0, [x1]
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::NoDevice {
                va: 0x8000,
                ipa: 0x8000,
                ..
            }
        ),
        "{out:?}"
    );
    let mut b = [0u8; 8];
    ram.read(0x8000, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x0102_0304_0506_0708);
    // A device claiming it (a ROM's write handler) gets the store.
    let (ram, mut r) = mk(0xf900_0020);
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x8000, vec![0; 16]));
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(bus.log(), [BusAccess::write(0x8000, 8)]);
    ram.read(0x8000, &mut b).unwrap();
    assert_eq!(
        u64::from_le_bytes(b),
        0x0102_0304_0506_0708,
        "RAM untouched"
    );
}

/// The planner on its own (`emulate::plan`): pure, every piece with its VA,
/// IPA and target, the first problem, and nothing accessed.
#[test]
fn the_planner_alone() {
    use kvm_nisv::emulate::plan::{self, AccessSpec, Problem, Target};
    use kvm_nisv::stage1::Stage1Regs;
    // ldr x2, [x1] with the MMU off: every data access is Device-nGnRnE.
    let insn = kvm_nisv::decode::decode(0xf940_0022).unwrap();
    let mut ram = VecRam::new();
    assert!(ram.add_region(0x1000, 0x1000));
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x2000, vec![0; 0x10]));
    let s1 = Stage1Regs::default();
    // 0x1ff8: all RAM.
    let p = plan::plan(&s1, &insn, &AccessSpec::new(0x1ff8, El::El1), &ram, &bus).unwrap();
    assert_eq!(p.problem(), None);
    assert_eq!(p.elements().len(), 1);
    let pc = p.elements()[0].pieces[0];
    assert_eq!(
        (pc.va, pc.ipa, pc.len, pc.target),
        (0x1ff8, 0x1ff8, 8, Target::Ram)
    );
    assert!(p.touches_page(0x1abc) && !p.touches_page(0x2000));
    // 0x2008: the device.
    let p = plan::plan(&s1, &insn, &AccessSpec::new(0x2008, El::El1), &ram, &bus).unwrap();
    assert_eq!(p.elements()[0].pieces[0].target, Target::Device);
    // 0x1ffc: unaligned on Device memory (MMU off): an alignment fault at the
    // first piece; both pages still translated for the fault IPA check.
    let p = plan::plan(&s1, &insn, &AccessSpec::new(0x1ffc, El::El1), &ram, &bus).unwrap();
    assert!(
        matches!(p.problem(), Some(Problem::Fault(f)) if f.fault.kind == FaultKind::Alignment && f.va == 0x1ffc),
        "{:?}",
        p.problem()
    );
    assert!(p.touches_page(0x2000) && p.touches_page(0x1000));
    // 0x2010: nothing there.
    let p = plan::plan(&s1, &insn, &AccessSpec::new(0x2010, El::El1), &ram, &bus).unwrap();
    assert_eq!(
        p.problem(),
        Some(Problem::NoDevice {
            va: 0x2010,
            ipa: 0x2010
        })
    );
    assert!(bus.log().is_empty(), "the planner accesses nothing");
}
