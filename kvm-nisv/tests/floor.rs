// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The per-exit register floor (docs/performance.md, "The per-exit floor").
//!
//! For each load/store class, the registers the architecture forces an
//! emulation to read and write are listed here by hand, from the rules below,
//! and compared with what the emulator actually does through a counting
//! `VcpuRegs` (each call is a `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` ioctl on
//! KVM). The test fails if an emulation reads or writes anything beyond its
//! floor or reads a register twice.
//!
//! The floor (steady state: ID_AA64MMFR0_EL1 and DCZID_EL0 are read once per
//! emulator and cached):
//!
//! * always read PSTATE (EL, stack pointer selection, PAN, AArch32, BTYPE/SS),
//!   PC, SCTLR_EL1 (MMU enable, alignment checking, endianness);
//! * with the MMU on, TCR_EL1, and the TTBR of each half of the address space
//!   the fetch and the data touch (bit 55 of the VA), nothing else;
//! * MAIR_EL1 only when the memory type changes the outcome: an unaligned
//!   element (an alignment fault on Device memory), DC ZVA (always a fault on
//!   Device memory), more than one element (gathered into wider bus accesses
//!   on Normal and Device-GRE memory, not on the other Device types), or one
//!   element wider than 8 bytes on a bus that takes wider accesses; one aligned
//!   element behaves the same on every type (`emulate::plan::needs_mem_type`);
//! * the base register (or SP), the index and post-index registers; the data
//!   registers of stores (each V register once); Rs (and Rt for CAS) of
//!   atomics; the old value of a V register a single-structure load merges
//!   into;
//! * write the loaded registers, the base on writeback, the old values of
//!   atomics/CAS, and PC (PSTATE only when BTYPE or SS was set: not here).
//!
//! `cargo test -p kvm-nisv --test floor -- --nocapture` prints the table
//! that docs/performance.md shows (`scripts/bench host` copies it).

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::GuestRam;
use kvm_nisv::mem::VecBus;
use kvm_nisv::regcache::{CountingRegs, RegCache, RegCall};
use kvm_nisv::regs::{Reg, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::stage1::SCTLR_M;

const DEV: u64 = 0x1000_0000;
/// Upper-half (TTBR1) addresses of the code and the device.
const KCODE: u64 = 0xffff_ff80_0000_1000;
const KDEV: u64 = 0xffff_ff80_0020_0000;
/// Lower-half (TTBR0) address of the device.
const UDEV: u64 = 0x20_0000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mmu {
    /// MMU off, EL1h.
    Off,
    /// EL1h, code and device in the upper half (TTBR1): a kernel driver.
    Kernel,
    /// EL0, code and device in the lower half (TTBR0): a user-space driver.
    User,
    /// EL1h, code in the upper half, the device through a lower-half address.
    Mixed,
}

impl Mmu {
    fn name(self) -> &'static str {
        match self {
            Mmu::Off => "off",
            Mmu::Kernel => "on, TTBR1",
            Mmu::User => "on, EL0, TTBR0",
            Mmu::Mixed => "on, code TTBR1, data TTBR0",
        }
    }

    /// The stage-1 registers of the floor.
    fn floor(self, mair: bool) -> Vec<RegCall> {
        let g = |s| RegCall::Get(Reg::Sys(s));
        let mut v = vec![g(SysReg::SctlrEl1)];
        match self {
            Mmu::Off => return v,
            Mmu::Kernel => v.extend([g(SysReg::TcrEl1), g(SysReg::Ttbr1El1)]),
            Mmu::User => v.extend([g(SysReg::TcrEl1), g(SysReg::Ttbr0El1)]),
            Mmu::Mixed => v.extend([g(SysReg::TcrEl1), g(SysReg::Ttbr1El1), g(SysReg::Ttbr0El1)]),
        }
        if mair {
            v.push(g(SysReg::MairEl1));
        }
        v
    }
}

struct Case {
    name: &'static str,
    class: &'static str,
    word: u32,
    /// Offset of the address from the device base.
    off: u64,
    /// The memory type matters (MAIR is part of the floor).
    mair: bool,
    /// Registers beyond PSTATE, PC and the stage-1 ones.
    reads: &'static [RegCall],
    writes: &'static [RegCall],
}

use RegCall::{Get, GetV, Set, SetV};

const CASES: &[Case] = &[
    Case {
        name: "str x0, [x1], #8",
        class: "GprSingle",
        word: 0xf800_8420,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1)), Get(Reg::X(0))],
        writes: &[Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ldrb w3, [x1], #1",
        class: "GprSingle",
        word: 0x3840_1423,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1))],
        writes: &[Set(Reg::X(3)), Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ldr x0, [x1], #1 (unaligned)",
        class: "GprSingle",
        word: 0xf840_1420,
        off: 1,
        mair: true,
        reads: &[Get(Reg::X(1))],
        writes: &[Set(Reg::X(0)), Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ldp x2, x3, [x1]",
        class: "GprPair",
        word: 0xa940_0c22,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1))],
        writes: &[Set(Reg::X(2)), Set(Reg::X(3)), Set(Reg::Pc)],
    },
    Case {
        name: "stp x2, x3, [x1], #16",
        class: "GprPair",
        word: 0xa881_0c22,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1)), Get(Reg::X(2)), Get(Reg::X(3))],
        writes: &[Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ldr q3, [x1]",
        class: "FpSingle",
        word: 0x3dc0_0023,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1))],
        writes: &[SetV(3), Set(Reg::Pc)],
    },
    Case {
        name: "stp q0, q1, [x1], #32",
        class: "FpPair",
        word: 0xac81_0420,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1)), GetV(0), GetV(1)],
        writes: &[Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ld1 {v0.16b-v3.16b}, [x1]",
        class: "SimdMultiple",
        word: 0x4c40_2020,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1))],
        writes: &[SetV(0), SetV(1), SetV(2), SetV(3), Set(Reg::Pc)],
    },
    Case {
        name: "st1 {v0.16b-v3.16b}, [x1], #64",
        class: "SimdMultiple",
        word: 0x4c9f_2020,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1)), GetV(0), GetV(1), GetV(2), GetV(3)],
        writes: &[Set(Reg::X(1)), Set(Reg::Pc)],
    },
    Case {
        name: "ld1 {v0.b}[3], [x1]",
        class: "SimdSingle",
        word: 0x0d40_0c20,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1)), GetV(0)],
        writes: &[SetV(0), Set(Reg::Pc)],
    },
    Case {
        name: "ldadd x2, x3, [x1]",
        class: "Atomic",
        word: 0xf822_0023,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1)), Get(Reg::X(2))],
        writes: &[Set(Reg::X(3)), Set(Reg::Pc)],
    },
    Case {
        name: "cas x2, x3, [x1]",
        class: "CompareAndSwap",
        word: 0xc8a2_7c23,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1)), Get(Reg::X(3)), Get(Reg::X(2))],
        writes: &[Set(Reg::X(2)), Set(Reg::Pc)],
    },
    Case {
        name: "ldxr x2, [x1]",
        class: "Exclusive",
        word: 0xc85f_7c22,
        off: 0,
        mair: false,
        reads: &[Get(Reg::X(1))],
        writes: &[Set(Reg::X(2)), Set(Reg::Pc)],
    },
    Case {
        name: "dc zva, x1",
        class: "DcZva",
        word: 0xd50b_7421,
        off: 0,
        mair: true,
        reads: &[Get(Reg::X(1))],
        writes: &[Set(Reg::Pc)],
    },
];

/// The machine for `mmu`: RAM with code (and tables), the device at `DEV`
/// mapped Normal non-cacheable (so unaligned accesses and DC ZVA complete).
fn machine(mmu: Mmu, word: u32, addr_off: u64) -> (kvm_nisv::mem::VecRam, RegisterFile, VecBus) {
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    // Code at VA 0x1000 of either half (the tables index the same slots:
    // bits [38:12] are equal), device at 0x20_0000 of either half.
    p.map(0x1000, 0x1000, 3, pt::AF | pt::AP_RO | pt::AP_EL0);
    p.map(UDEV, DEV, 3, pt::AF | pt::AP_EL0 | pt::attr(2));
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x4000));
    ram.write(0x1000, &word.to_le_bytes()).unwrap();
    // The next word is not a store-exclusive (LDXR is not fused).
    ram.write(0x1004, &0xd503_201fu32.to_le_bytes()).unwrap();
    let mut rf = RegisterFile::default();
    let (pc, base, pstate) = match mmu {
        Mmu::Off => (0x1000, DEV, 0x3c5),
        Mmu::Kernel => (KCODE, KDEV, 0x3c5),
        Mmu::User => (0x1000, UDEV, 0x0),
        Mmu::Mixed => (KCODE, UDEV, 0x3c5),
    };
    rf.pc = pc;
    rf.pstate = pstate;
    rf.x[1] = base + addr_off;
    rf.x[2] = 0x55;
    rf.x[3] = 0x66;
    rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    rf.set_sys(SysReg::DczidEl0, 4);
    if mmu != Mmu::Off {
        rf.set_sys(SysReg::SctlrEl1, SCTLR_M | (1 << 14)); // M, DZE
        // T0SZ = T1SZ = 25, TG1 = 4K, IPS = 48 bits.
        rf.set_sys(SysReg::TcrEl1, 25 | (25 << 16) | (0b10 << 30) | (5 << 32));
        rf.set_sys(SysReg::Ttbr0El1, p.root);
        rf.set_sys(SysReg::Ttbr1El1, p.root);
        // Attr0 Normal WB, Attr1 Device-nGnRnE, Attr2 Normal non-cacheable.
        rf.set_sys(SysReg::MairEl1, 0x44_00_ff);
    }
    let mut bus = VecBus::new();
    // Non-zero contents, so that every load changes its register (the
    // cache drops writes of the value a register already holds).
    assert!(bus.add_window(DEV, (0..0x2000u32).map(|i| (i * 7 + 1) as u8).collect()));
    (ram, rf, bus)
}

/// Emulate once to warm the emulator's ID register caches, then measure a
/// second emulation from the same state with `wrap` around the counter.
fn measure(case: &Case, mmu: Mmu, cached: bool) -> Option<(CountingRegs<RegisterFile>, Outcome)> {
    let (ram, rf, mut bus) = machine(mmu, case.word, case.off);
    // As KVM reports it: the IPA of the access (DC ZVA: of its block).
    let fault_ipa = Some(DEV + case.off);
    let mut emu = Emulator::new();
    let mut warm = rf.clone();
    emu.emulate(&mut warm, &ram, &mut bus, fault_ipa).unwrap();
    let mut counting = CountingRegs::new(rf);
    let out = if cached {
        let mut c = RegCache::new(&mut counting);
        // As kvm-nisv-vmm does: the policy reads PC before the emulator does.
        c.get(Reg::Pc).unwrap();
        let out = emu.emulate(&mut c, &ram, &mut bus, fault_ipa).unwrap();
        c.flush().unwrap();
        out
    } else {
        counting.get(Reg::Pc).unwrap();
        emu.emulate(&mut counting, &ram, &mut bus, fault_ipa)
            .unwrap()
    };
    matches!(out, Outcome::Emulated { .. }).then_some((counting, out))
}

fn sorted(mut v: Vec<RegCall>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|c| format!("{c:?}")).collect();
    s.sort();
    s
}

fn short(c: &RegCall) -> String {
    let r = |r: &Reg| match r {
        Reg::X(n) => format!("X{n}"),
        Reg::Sys(s) => format!("{s:?}").replace("El1", "").to_uppercase(),
        other => format!("{other:?}").to_uppercase(),
    };
    match c {
        Get(x) | Set(x) => r(x),
        GetV(n) | SetV(n) => format!("V{n}"),
    }
}

#[test]
fn every_class_meets_its_register_floor() {
    let mut table = vec![
        "| instruction | class | MMU | floor: reads | floor: writes | floor | emulator alone (+1 PC read by the VMM) | with `RegCache` |".to_string(),
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: |".to_string(),
    ];
    let mut checked = 0;
    for case in CASES {
        for mmu in [Mmu::Off, Mmu::Kernel, Mmu::User, Mmu::Mixed] {
            // DC ZVA and unaligned accesses fault on Device memory (MMU off).
            if mmu == Mmu::Off && case.mair {
                continue;
            }
            let mut reads = vec![Get(Reg::Pstate), Get(Reg::Pc)];
            reads.extend(mmu.floor(case.mair));
            reads.extend_from_slice(case.reads);
            let writes: Vec<RegCall> = case.writes.to_vec();
            let floor = reads.len() + writes.len();

            let (counted, _) = measure(case, mmu, true)
                .unwrap_or_else(|| panic!("{} ({mmu:?}) was not emulated", case.name));
            let calls: Vec<RegCall> = counted.log.iter().collect();
            assert_eq!(
                counted.read_twice(),
                None,
                "{} ({mmu:?}): {calls:?}",
                case.name
            );
            let got_reads: Vec<RegCall> = calls
                .iter()
                .copied()
                .filter(|c| matches!(c, Get(_) | GetV(_)))
                .collect();
            let got_writes: Vec<RegCall> = calls
                .iter()
                .copied()
                .filter(|c| matches!(c, Set(_) | SetV(_)))
                .collect();
            assert_eq!(
                sorted(got_reads.clone()),
                sorted(reads.clone()),
                "{} ({mmu:?}) reads",
                case.name
            );
            assert_eq!(
                sorted(got_writes.clone()),
                sorted(writes.clone()),
                "{} ({mmu:?}) writes",
                case.name
            );
            // PC is written last.
            assert_eq!(got_writes.last(), Some(&Set(Reg::Pc)), "{}", case.name);
            assert_eq!(counted.traffic().total() as usize, floor);

            let (alone, _) = measure(case, mmu, false).unwrap();
            table.push(format!(
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                case.name,
                case.class,
                mmu.name(),
                reads.iter().map(short).collect::<Vec<_>>().join(" "),
                writes.iter().map(short).collect::<Vec<_>>().join(" "),
                floor,
                alone.traffic().total(),
                counted.traffic().total(),
            ));
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} cases");
    println!("floor table ({checked} cases):");
    for l in &table {
        println!("{l}");
    }
}
