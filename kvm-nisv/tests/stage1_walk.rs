// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Stage-1 walker tests: every granule, start levels for every legal TxSZ,
//! block/page sizes, each fault kind with its level and DFSC, TBI, EPD,
//! permissions, memory attributes, 52-bit output addresses.

#[path = "stage1_pt/mod.rs"]
mod pt;

use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::regs::{Reg, RegError, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::stage1::*;
use pt::*;

const M: u64 = SCTLR_M;
/// IPS = 48 bits.
const IPS48: u64 = 5 << 32;
/// EPD1: no TTBR1 walks.
const EPD1: u64 = 1 << 23;
/// EPD0.
const EPD0: u64 = 1 << 7;
/// MAIR: Attr0 Normal WB, Attr1 Device-nGnRE, Attr2 Device-nGnRnE, Attr3 Normal NC.
const MAIR: u64 = 0x44_00_04_ff;

fn tg0(g: u32) -> u64 {
    match g {
        12 => 0,
        14 => 2 << 14,
        _ => 1 << 14,
    }
}

fn tg1(g: u32) -> u64 {
    match g {
        12 => 2 << 30,
        14 => 1 << 30,
        _ => 3 << 30,
    }
}

fn regs0(pt: &Pt, txsz: u64) -> Stage1Regs {
    Stage1Regs {
        sctlr: M,
        tcr: txsz | tg0(pt.g) | IPS48 | EPD1,
        ttbr0: pt.root,
        ttbr1: 0,
        mair: MAIR,
        pa_bits: 48,
        pan: false,
    }
}

fn fault(kind: FaultKind, level: i8) -> Stage1Fault {
    Stage1Fault::new(kind, level)
}

#[test]
fn mmu_off_is_flat_device_for_data_normal_for_fetch() {
    let ram = VecRam::new();
    for c in [0, SCTLR_C] {
        let r = Stage1Regs {
            sctlr: c,
            tcr: u64::MAX, // must be ignored
            ..Default::default()
        };
        let t = translate(&r, 0x1234_5678, AccessKind::Read, El::El1, &ram).unwrap();
        assert_eq!(t.ipa, 0x1234_5678);
        assert_eq!(t.mem, MemType::Device(DeviceKind::NGnRnE));
        let t = translate(&r, 0x1234_5678, AccessKind::Write, El::El0, &ram).unwrap();
        assert_eq!(t.mem, MemType::Device(DeviceKind::NGnRnE));
        let t = translate(&r, 0x1000, AccessKind::Fetch, El::El1, &ram).unwrap();
        assert!(!t.mem.is_device());
    }
    let r = Stage1Regs {
        sctlr: SCTLR_I,
        ..Default::default()
    };
    let t = translate(&r, 0x1000, AccessKind::Fetch, El::El1, &ram).unwrap();
    assert_eq!(
        t.mem,
        MemType::Normal {
            inner: 0b1010,
            outer: 0b1010
        }
    );
}

/// A register file that counts reads.
struct Counting {
    rf: RegisterFile,
    reads: Vec<Reg>,
}

impl VcpuRegs for Counting {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        self.reads.push(reg);
        self.rf.get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.rf.set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.rf.get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        self.rf.set_v(n, value)
    }
}

#[test]
fn read_only_what_is_needed() {
    let mut c = Counting {
        rf: RegisterFile::default(),
        reads: vec![],
    };
    let r = Stage1Regs::read(&mut c).unwrap();
    assert!(!r.mmu_on());
    assert_eq!(c.reads, vec![Reg::Sys(SysReg::SctlrEl1)]);

    c.rf.set_sys(SysReg::SctlrEl1, M);
    c.rf.set_sys(SysReg::TcrEl1, 7);
    c.rf.set_sys(SysReg::IdAa64mmfr0El1, 2);
    c.reads.clear();
    let mut pa = None;
    let r = Stage1Regs::read_with(&mut c, &mut pa).unwrap();
    assert_eq!((r.tcr, r.pa_bits, pa), (7, 40, Some(40)));
    assert_eq!(c.reads.len(), 6);
    c.reads.clear();
    let _ = Stage1Regs::read_with(&mut c, &mut pa).unwrap();
    assert_eq!(c.reads.len(), 5, "PARange is cached");
}

/// Start levels from the Arm ARM's tables (D8.2, "Translation table lookup
/// levels" per granule), not from a formula.
fn expected_start(g: u32, txsz: u32) -> i8 {
    match (g, txsz) {
        (12, 12..=15) => -1,
        (12, 16..=24) => 0,
        (12, 25..=33) => 1,
        (12, 34..=42) => 2,
        (12, 43..=48) => 3,
        (14, 12..=16) => 0,
        (14, 17..=27) => 1,
        (14, 28..=38) => 2,
        (14, 39..=48) => 3,
        (16, 12..=21) => 1,
        (16, 22..=34) => 2,
        (16, 35..=47) => 3,
        _ => panic!("no start level for {g} {txsz}"),
    }
}

#[test]
fn every_legal_txsz_walks_from_the_right_level() {
    for g in [12u32, 14, 16] {
        let max = if g == 16 { 47 } else { 48 };
        for txsz in 12..=max {
            let start = expected_start(g, txsz);
            let ds = txsz < 16 && g != 16;
            let mut pt = Pt::new(g, txsz, start, 0x4000_0000, 0x40_0000);
            let mut r = regs0(&pt, u64::from(txsz));
            if ds {
                r.tcr |= 1 << 59;
            }
            // An empty root: the first lookup faults at the start level.
            let f = translate(&r, 0x1000 << (g - 12), AccessKind::Read, El::El1, &pt.ram);
            assert_eq!(
                f,
                Err(fault(FaultKind::Translation, start)),
                "g {g} txsz {txsz}"
            );
            // The highest VA of the range maps through a page.
            let va = ((1u64 << (64 - txsz)) - 1) & !((1u64 << g) - 1);
            pt.map(va, 0x8000_0000, 3, AF);
            let t = translate(&r, va | 0x18, AccessKind::Read, El::El1, &pt.ram).unwrap();
            assert_eq!(t.ipa, 0x8000_0018, "g {g} txsz {txsz}");
            assert_eq!((t.level, t.size), (3, 1u64 << g));
            // One past the range faults at level 0 (VA out of range).
            let out = 1u64 << (64 - txsz);
            if 64 - txsz < 56 {
                assert_eq!(
                    translate(&r, out, AccessKind::Read, El::El1, &pt.ram),
                    Err(fault(FaultKind::Translation, 0))
                );
            }
        }
        // Out-of-range TxSZ: level 0 translation fault (documented choice).
        let pt = Pt::new(g, 16, 0, 0x4000_0000, 0x10_0000);
        for bad in [0u64, 11, 49, 63] {
            let r = regs0(&pt, bad);
            assert_eq!(
                translate(&r, 0, AccessKind::Read, El::El1, &pt.ram),
                Err(fault(FaultKind::Translation, 0)),
                "g {g} txsz {bad}"
            );
        }
    }
}

#[test]
fn granule_4k_hand_built_four_levels() {
    // T0SZ = 16, 4K: VA[47:39] L0, [38:30] L1, [29:21] L2, [20:12] L3.
    let mut ram = VecRam::new();
    assert!(ram.add_region(0x10_0000, 0x10000));
    assert!(ram.add_region(0x8000_0000, 0x1000));
    let va: u64 = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12) | 0x123;
    let w = |a: u64, d: u64| ram.write(a, &d.to_le_bytes()).unwrap();
    w(0x10_0000 + 8, 0x10_1003);
    w(0x10_1000 + 2 * 8, 0x10_2003);
    w(0x10_2000 + 3 * 8, 0x10_3003);
    w(0x10_3000 + 4 * 8, 0x8000_0000 | AF | 3);
    let r = Stage1Regs {
        sctlr: M,
        tcr: 16 | IPS48 | EPD1,
        ttbr0: 0x10_0000,
        mair: MAIR,
        pa_bits: 48,
        ..Default::default()
    };
    let t = translate(&r, va, AccessKind::Read, El::El1, &ram).unwrap();
    assert_eq!(t.ipa, 0x8000_0123);
    assert_eq!(
        t.mem,
        MemType::Normal {
            inner: 0xf,
            outer: 0xf
        }
    );
    // The level 3 table is not RAM once we point L2 elsewhere.
    w(0x10_2000 + 3 * 8, 0x7000_0003);
    assert_eq!(
        translate(&r, va, AccessKind::Read, El::El1, &ram),
        Err(fault(FaultKind::Translation, 3))
    );
    // Invalid L2 entry.
    w(0x10_2000 + 3 * 8, 0x10_3002);
    let f = translate(&r, va, AccessKind::Read, El::El1, &ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::Translation, 2), 0x06));
    // Reserved level 3 encoding (0b01).
    w(0x10_2000 + 3 * 8, 0x10_3003);
    w(0x10_3000 + 4 * 8, 0x8000_0000 | AF | 1);
    let f = translate(&r, va, AccessKind::Read, El::El1, &ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::Translation, 3), 0x07));
    // TTBR's CnP bit and low bits are ignored.
    let mut r2 = r;
    r2.ttbr0 |= 1 | (0xabcd << 48);
    w(0x10_3000 + 4 * 8, 0x8000_0000 | AF | 3);
    assert_eq!(
        translate(&r2, va, AccessKind::Read, El::El1, &ram)
            .unwrap()
            .ipa,
        0x8000_0123
    );
}

#[test]
fn blocks_per_granule() {
    // (granule, txsz, start, block level, block size, allowed without DS/LPA)
    let cases: [(u32, u32, i8, i8, u64, bool); 8] = [
        (12, 16, 0, 1, 1 << 30, true),
        (12, 16, 0, 2, 1 << 21, true),
        (12, 16, 0, 0, 1 << 39, false),
        (14, 16, 0, 2, 1 << 25, true),
        (14, 16, 0, 1, 1 << 36, false),
        (16, 22, 2, 2, 1 << 29, true),
        (16, 12, 1, 1, 1 << 42, false),
        (16, 12, 1, 2, 1 << 29, true),
    ];
    for (g, txsz, start, level, size, ok) in cases {
        let mut pt = Pt::new(g, txsz, start, 0x4000_0000, 0x40_0000);
        let va = size * 3 + 0x1238;
        let va = va & ((1u64 << (64 - txsz)) - 1);
        pt.map(va, size * 5, level, AF | attr(1));
        let r = regs0(&pt, u64::from(txsz));
        let got = translate(&r, va, AccessKind::Write, El::El1, &pt.ram);
        if ok {
            let t = got.unwrap();
            assert_eq!(t.ipa, size * 5 + (va & (size - 1)), "{g} {level}");
            assert_eq!((t.level, t.size), (level, size));
            assert_eq!(t.mem, MemType::Device(DeviceKind::NGnRE));
        } else {
            assert_eq!(
                got,
                Err(fault(FaultKind::Translation, level)),
                "{g} {level}"
            );
        }
    }
}

#[test]
fn lpa2_4k_52bit_and_level0_block() {
    // DS = 1, T0SZ = 12: start level -1, OA[51:50] in descriptor bits [9:8].
    let mut pt = Pt::new(12, 12, -1, 0x4000_0000, 0x40_0000);
    let va: u64 = 0x000f_0000_0000_5000;
    let t = pt.table_for(va, 3, 0);
    let s = pt.slot(t, 3, va);
    // OA 0x000c_0000_8000_0000: bits 51:50 = 0b11 -> desc[9:8].
    pt.wr(s, 0x8000_0000 | (3 << 8) | AF | 3);
    let mut r = regs0(&pt, 12);
    r.tcr = (r.tcr & !(7 << 32)) | (6 << 32) | (1 << 59);
    r.pa_bits = 52;
    let tr = translate(&r, va | 0x10, AccessKind::Read, El::El1, &pt.ram).unwrap();
    assert_eq!(tr.ipa, 0x000c_0000_8000_0010);
    // With a 48-bit PARange the same output is an address size fault at L3.
    let mut r48 = r;
    r48.pa_bits = 48;
    assert_eq!(
        translate(&r48, va, AccessKind::Read, El::El1, &pt.ram),
        Err(fault(FaultKind::AddressSize, 3))
    );
    // A block at level -1 is never legal.
    let pt2 = Pt::new(12, 12, -1, 0x4000_0000, 0x10_0000);
    let s = pt2.slot(pt2.root, -1, va);
    pt2.wr(s, AF | 1);
    let mut r2 = r;
    r2.ttbr0 = pt2.root;
    let f = translate(&r2, va, AccessKind::Read, El::El1, &pt2.ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::Translation, -1), 0x2b));
    // Level 0 block with DS = 1 (4K): 512 GiB.
    let mut pt3 = Pt::new(12, 16, 0, 0x4000_0000, 0x10_0000);
    pt3.map(1 << 39, 1 << 40, 0, AF);
    let mut r3 = regs0(&pt3, 16);
    r3.tcr |= 1 << 59;
    let t3 = translate(
        &r3,
        (1 << 39) + 0x1234_5678,
        AccessKind::Read,
        El::El1,
        &pt3.ram,
    )
    .unwrap();
    assert_eq!((t3.ipa, t3.level), ((1 << 40) + 0x1234_5678, 0));
}

#[test]
fn lpa_64k_52bit_ttbr_and_descriptor_high_bits() {
    // Tables at 0x000a_0000_4000_0000: TTBR[5:2] holds BADDR[51:48].
    let base: u64 = 0x000a_0000_4000_0000;
    let mut pt = Pt::new(16, 12, 1, base, 0x40_0000);
    let va: u64 = 0x000f_1234_5678_0000;
    // Build by hand: table descriptors need OA[51:48] in bits [15:12].
    let l2 = pt.alloc();
    let l3 = pt.alloc();
    let s1 = pt.slot(pt.root, 1, va);
    pt.wr(
        s1,
        (l2 & 0x0000_ffff_ffff_0000) | (((l2 >> 48) & 0xf) << 12) | 3,
    );
    let s2 = pt.slot(l2, 2, va);
    pt.wr(
        s2,
        (l3 & 0x0000_ffff_ffff_0000) | (((l3 >> 48) & 0xf) << 12) | 3,
    );
    let s3 = pt.slot(l3, 3, va);
    pt.wr(s3, 0x0000_0000_9000_0000 | (0x7 << 12) | AF | 3);
    let root = pt.root;
    let r = Stage1Regs {
        sctlr: M,
        tcr: 12 | tg0(16) | (6 << 32) | EPD1,
        ttbr0: (root & 0x0000_ffff_ffff_ffc0) | (((root >> 48) & 0xf) << 2),
        mair: MAIR,
        pa_bits: 52,
        ..Default::default()
    };
    let t = translate(&r, va | 0xabc, AccessKind::Read, El::El1, &pt.ram).unwrap();
    assert_eq!(t.ipa, 0x0007_0000_9000_0abc);
    // IPS = 48: the table base (bits 51:48 from TTBR[5:2] no longer apply,
    // so the root is read at a non-RAM address) faults.
    let mut r48 = r;
    r48.tcr = (r48.tcr & !(7 << 32)) | IPS48;
    assert!(translate(&r48, va, AccessKind::Read, El::El1, &pt.ram).is_err());
}

#[test]
fn ttbr1_tbi_epd_e0pd() {
    let mut pt = Pt::new(12, 16, 0, 0x4000_0000, 0x10_0000);
    let va: u64 = 0xffff_8000_0010_2000;
    pt.map(va, 0x8000_0000, 3, AF);
    let base = Stage1Regs {
        sctlr: M,
        tcr: 16 << 16 | tg1(12) | IPS48 | EPD0,
        ttbr1: pt.root,
        mair: MAIR,
        pa_bits: 48,
        ..Default::default()
    };
    let ok = |r: &Stage1Regs, va: u64, a| translate(r, va, a, El::El1, &pt.ram);
    assert_eq!(
        ok(&base, va | 8, AccessKind::Read).unwrap().ipa,
        0x8000_0008
    );
    // TTBR0 half is disabled by EPD0.
    assert_eq!(
        ok(&base, 0x2000, AccessKind::Read),
        Err(fault(FaultKind::Translation, 0))
    );
    // A tagged upper address: faults without TBI1, maps with it.
    let tagged = (va & 0x00ff_ffff_ffff_ffff) | (0x5a << 56) | (1 << 55);
    assert_eq!(
        ok(&base, tagged, AccessKind::Read),
        Err(fault(FaultKind::Translation, 0))
    );
    let mut tbi = base;
    tbi.tcr |= 1 << 38;
    assert_eq!(ok(&tbi, tagged, AccessKind::Read).unwrap().ipa, 0x8000_0000);
    // TBID1 stops TBI for instruction fetches only.
    let mut tbid = tbi;
    tbid.tcr |= 1 << 52;
    assert!(ok(&tbid, tagged, AccessKind::Read).is_ok());
    assert_eq!(
        ok(&tbid, tagged, AccessKind::Fetch),
        Err(fault(FaultKind::Translation, 0))
    );
    // EPD1.
    let mut epd = base;
    epd.tcr |= EPD1;
    assert_eq!(
        ok(&epd, va, AccessKind::Read),
        Err(fault(FaultKind::Translation, 0))
    );
    // E0PD1 faults EL0 accesses only.
    let mut e0pd = base;
    e0pd.tcr |= 1 << 56;
    assert!(ok(&e0pd, va, AccessKind::Read).is_ok());
    assert_eq!(
        translate(&e0pd, va, AccessKind::Read, El::El0, &pt.ram),
        Err(fault(FaultKind::Translation, 0))
    );
}

#[test]
fn tbi0_for_data() {
    let mut pt = Pt::new(14, 17, 1, 0x4000_0000, 0x10_0000);
    pt.map(0x4000, 0x9000_0000, 3, AF);
    let mut r = regs0(&pt, 17);
    let tagged = 0xab00_0000_0000_4000u64;
    assert!(translate(&r, tagged, AccessKind::Read, El::El1, &pt.ram).is_err());
    r.tcr |= 1 << 37;
    assert_eq!(
        translate(&r, tagged, AccessKind::Read, El::El1, &pt.ram)
            .unwrap()
            .ipa,
        0x9000_0000
    );
}

#[test]
fn access_flag_and_hardware_update() {
    let mut pt = Pt::new(12, 16, 0, 0x4000_0000, 0x10_0000);
    let slot = pt.map(0x5000, 0x8000_0000, 3, 0);
    let mut r = regs0(&pt, 16);
    let f = translate(&r, 0x5000, AccessKind::Read, El::El1, &pt.ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::AccessFlag, 3), 0x0b));
    // TCR.HA: no fault; the walker asks for AF to be set.
    r.tcr |= 1 << 39;
    let t = translate(&r, 0x5000, AccessKind::Read, El::El1, &pt.ram).unwrap();
    let u = t.update.unwrap();
    assert_eq!(u.ipa, slot);
    assert_eq!(u.new, u.old | AF);
    assert_eq!(pt.rd(slot) & AF, 0, "the walker itself does not write");
    assert!(u.apply(&pt.ram));
    assert_ne!(pt.rd(slot) & AF, 0);
    assert!(!u.apply(&pt.ram), "stale update is not applied");
    // Dirty bit management: DBM + AP[2] = writable-clean.
    let slot = pt.map(0x6000, 0x8000_1000, 3, AF | AP_RO | DBM);
    let t = translate(&r, 0x6000, AccessKind::Write, El::El1, &pt.ram);
    assert_eq!(t, Err(fault(FaultKind::Permission, 3)), "HD = 0");
    r.tcr |= 1 << 40;
    let t = translate(&r, 0x6000, AccessKind::Write, El::El1, &pt.ram).unwrap();
    assert_eq!(
        t.update.unwrap().new,
        (AF | AP_RO | DBM | 0x8000_1000 | 3) & !AP_RO
    );
    assert!(t.update.unwrap().apply(&pt.ram));
    assert_eq!(pt.rd(slot) & AP_RO, 0);
    let t = translate(&r, 0x6000, AccessKind::Read, El::El1, &pt.ram).unwrap();
    assert_eq!(t.update, None);
}

#[test]
fn permissions_matrix() {
    use AccessKind::*;
    use El::*;
    // AP[2:1] -> (EL1 R, EL1 W, EL0 R, EL0 W), Arm ARM table D8-...
    let table = [
        (0u64, [true, true, false, false]),
        (AP_EL0, [true, true, true, true]),
        (AP_RO, [true, false, false, false]),
        (AP_RO | AP_EL0, [true, false, true, false]),
    ];
    for (ap, exp) in table {
        let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
        pt.map(0x3000, 0x8000_0000, 3, AF | ap);
        let r = regs0(&pt, 25);
        let got = [
            translate(&r, 0x3000, Read, El1, &pt.ram).is_ok(),
            translate(&r, 0x3000, Write, El1, &pt.ram).is_ok(),
            translate(&r, 0x3000, Read, El0, &pt.ram).is_ok(),
            translate(&r, 0x3000, Write, El0, &pt.ram).is_ok(),
        ];
        assert_eq!(got, exp, "AP {ap:#x}");
        for (i, &ok) in exp.iter().enumerate() {
            if !ok {
                let (a, e) = [(Read, El1), (Write, El1), (Read, El0), (Write, El0)][i];
                let f = translate(&r, 0x3000, a, e, &pt.ram).unwrap_err();
                assert_eq!(
                    (f.kind, f.level, f.dfsc()),
                    (FaultKind::Permission, 3, 0x0f)
                );
            }
        }
        // PAN: EL1 data accesses to EL0-accessible pages fault.
        let mut pan = r;
        pan.pan = true;
        let el0_access = ap & AP_EL0 != 0;
        assert_eq!(
            translate(&pan, 0x3000, Read, El1, &pt.ram).is_ok(),
            !el0_access
        );
        assert!(translate(&pan, 0x3000, Fetch, El1, &pt.ram).is_ok() || ap == AP_EL0);
    }
}

#[test]
fn table_attributes_and_hpd() {
    // APTable[1] (bit 62): read-only below; APTable[0] (bit 61): no EL0.
    for (bits, el1w, el0r) in [(1u64 << 62, false, true), (1 << 61, true, false)] {
        let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
        let l2 = pt.table_for(0x3000, 2, bits);
        let s = pt.slot(l2, 2, 0x3000);
        let _ = s;
        pt.map(0x3000, 0x8000_0000, 3, AF | AP_EL0);
        let r = regs0(&pt, 25);
        assert_eq!(
            translate(&r, 0x3000, AccessKind::Write, El::El1, &pt.ram).is_ok(),
            el1w
        );
        assert_eq!(
            translate(&r, 0x3000, AccessKind::Read, El::El0, &pt.ram).is_ok(),
            el0r
        );
        // HPD0 (bit 41) disables the hierarchical attributes.
        let mut hpd = r;
        hpd.tcr |= 1 << 41;
        assert!(translate(&hpd, 0x3000, AccessKind::Write, El::El1, &pt.ram).is_ok());
        assert!(translate(&hpd, 0x3000, AccessKind::Read, El::El0, &pt.ram).is_ok());
    }
}

#[test]
fn execute_permissions() {
    use AccessKind::Fetch;
    let cases: [(u64, u64, bool, bool); 6] = [
        // (leaf attrs, sctlr extra, EL1 may execute, EL0 may execute)
        (AP_RO | AP_EL0, 0, true, true),
        (AP_RO | AP_EL0 | UXN, 0, true, false),
        (AP_RO | AP_EL0 | PXN, 0, false, true),
        // EL0-writable is never EL1-executable.
        (AP_EL0, 0, false, true),
        // WXN: writable implies XN.
        (0, SCTLR_WXN, false, true),
        (AP_RO, SCTLR_WXN, true, true),
    ];
    for (attrs, sc, el1, el0) in cases {
        let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
        pt.map(0x3000, 0x8000_0000, 3, AF | attrs);
        let mut r = regs0(&pt, 25);
        r.sctlr |= sc;
        assert_eq!(
            translate(&r, 0x3000, Fetch, El::El1, &pt.ram).is_ok(),
            el1,
            "{attrs:#x}"
        );
        assert_eq!(
            translate(&r, 0x3000, Fetch, El::El0, &pt.ram).is_ok(),
            el0,
            "{attrs:#x}"
        );
    }
    // UXNTable / PXNTable.
    let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    pt.table_for(0x3000, 2, (1 << 59) | (1 << 60));
    pt.map(0x3000, 0x8000_0000, 3, AF | AP_RO | AP_EL0);
    let r = regs0(&pt, 25);
    assert!(translate(&r, 0x3000, Fetch, El::El1, &pt.ram).is_err());
    assert!(translate(&r, 0x3000, Fetch, El::El0, &pt.ram).is_err());
    assert!(translate(&r, 0x3000, AccessKind::Read, El::El0, &pt.ram).is_ok());
}

#[test]
fn memory_attributes_from_mair() {
    let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    let mair: u64 = 0x0c_08_04_00_44_bb_ff_00;
    let exp = [
        MemType::Device(DeviceKind::NGnRnE),
        MemType::Normal {
            inner: 0xf,
            outer: 0xf,
        },
        MemType::Normal {
            inner: 0xb,
            outer: 0xb,
        },
        MemType::Normal { inner: 4, outer: 4 },
        MemType::Device(DeviceKind::NGnRnE),
        MemType::Device(DeviceKind::NGnRE),
        MemType::Device(DeviceKind::NGRE),
        MemType::Device(DeviceKind::GRE),
    ];
    for i in 0..8u64 {
        pt.map(0x1000 * (i + 1), 0x8000_0000, 3, AF | attr(i));
    }
    let mut r = regs0(&pt, 25);
    r.mair = mair;
    for i in 0..8u64 {
        let t = translate(&r, 0x1000 * (i + 1), AccessKind::Read, El::El1, &pt.ram).unwrap();
        assert_eq!(t.mem, exp[i as usize], "AttrIndx {i}");
    }
}

#[test]
fn address_size_faults() {
    let mut pt = Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    pt.map(0x3000, 0x1_0000_0000, 3, AF);
    pt.map(0x4000, 0x8000_0000, 3, AF);
    let mut r = regs0(&pt, 25);
    r.tcr &= !(7 << 32); // IPS = 32 bits
    let f = translate(&r, 0x3000, AccessKind::Read, El::El1, &pt.ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::AddressSize, 3), 0x03));
    assert!(translate(&r, 0x4000, AccessKind::Read, El::El1, &pt.ram).is_ok());
    // IPS is capped by PARange.
    let mut r2 = regs0(&pt, 25);
    r2.pa_bits = 32;
    assert_eq!(
        translate(&r2, 0x3000, AccessKind::Read, El::El1, &pt.ram),
        Err(fault(FaultKind::AddressSize, 3))
    );
    // Table base beyond the OA size: level 0.
    let mut r3 = r;
    r3.ttbr0 = 0x1_0000_0000;
    let f = translate(&r3, 0x3000, AccessKind::Read, El::El1, &pt.ram).unwrap_err();
    assert_eq!((f, f.dfsc()), (fault(FaultKind::AddressSize, 0), 0x00));
    // Next-level table beyond the OA size: the level of the table descriptor.
    let l2 = pt.table_for(0x40_0000, 2, 0);
    let s = pt.slot(l2, 2, 0x40_0000);
    pt.wr(s, 0x2_0000_0000 | 3);
    assert_eq!(
        translate(&r, 0x40_0000, AccessKind::Read, El::El1, &pt.ram),
        Err(fault(FaultKind::AddressSize, 2))
    );
}

#[test]
fn big_endian_tables() {
    let mut pt = Pt::new(16, 30, 2, 0x4000_0000, 0x10_0000);
    pt.be = true;
    pt.map(0x3_0000, 0x8000_0000, 3, AF);
    let mut r = regs0(&pt, 30);
    assert!(translate(&r, 0x3_0000, AccessKind::Read, El::El1, &pt.ram).is_err());
    r.sctlr |= SCTLR_EE;
    assert_eq!(
        translate(&r, 0x3_0004, AccessKind::Read, El::El1, &pt.ram)
            .unwrap()
            .ipa,
        0x8000_0004
    );
}

#[test]
fn self_referencing_tables_terminate() {
    // Every entry of the root points at the root itself: the walk must end at
    // level 3 with a page whose OA is the root (or fault), never loop.
    for g in [12u32, 14, 16] {
        let pt = Pt::new(
            g,
            if g == 16 { 22 } else { 16 },
            if g == 16 { 2 } else { 0 },
            0x4000_0000,
            0x10_0000,
        );
        let entries = 1u64 << (g - 3);
        for i in 0..entries {
            pt.wr(pt.root + 8 * i, pt.root | AF | 3);
        }
        let txsz = if g == 16 { 22 } else { 16 };
        let r = regs0(&pt, txsz);
        for va in [0u64, 0x1234_5678, (1 << (64 - txsz)) - 1] {
            let t = translate(&r, va, AccessKind::Read, El::El1, &pt.ram).unwrap();
            assert_eq!(t.level, 3);
            assert_eq!(t.ipa, pt.root | (va & ((1 << g) - 1)));
        }
    }
}
