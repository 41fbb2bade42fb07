// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Property tests of the stage-1 walker: random mappings (pages and blocks,
//! every granule, random TxSZ, TTBR0 and TTBR1) built with the test table
//! builder, then random VAs checked against the list of mappings (the model:
//! which mapping covers the VA). Also: arbitrary register values and table
//! contents never panic and give deterministic results.

#[path = "stage1_pt/mod.rs"]
mod pt;

use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::stage1::{AccessKind, El, FaultKind, Stage1Regs, translate};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Start level per the Arm ARM's tables (as in stage1_walk.rs).
fn start(g: u32, txsz: u32) -> i8 {
    match (g, txsz) {
        (12, 16..=24) | (14, 16) => 0,
        (12, 25..=33) | (14, 17..=27) | (16, 16..=21) => 1,
        (12, 34..=42) | (14, 28..=38) | (16, 22..=34) => 2,
        _ => 3,
    }
}

#[derive(Debug, Clone)]
struct Map {
    va: u64,
    size: u64,
    oa: u64,
    level: i8,
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let mut s = seed;
    let mut rnd = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let g = [12u32, 14, 16][(rnd() % 3) as usize];
    let upper = rnd() % 2 == 1;
    // TxSZ 16..=39 keeps table counts small enough.
    let txsz = 16 + (rnd() % 24) as u32;
    let st = start(g, txsz);
    let mut p = pt::Pt::new(g, txsz, st, 0x4000_0000, 0x40_0000);
    let inputsize = 64 - txsz;
    let mut maps: Vec<Map> = Vec::new();
    for _ in 0..(1 + rnd() % 12) {
        // Leaf level: 3, or 2 (a block; legal for every granule).
        let level: i8 = if rnd() % 4 == 0 && st <= 2 { 2 } else { 3 };
        let size = 1u64 << p.lsb(level);
        let va = (rnd() & ((1u64 << inputsize) - 1)) & !(size - 1);
        if maps.iter().any(|m| va < m.va + m.size && m.va < va + size) {
            continue;
        }
        let oa = (rnd() & 0x0000_00ff_ffff_ffff) & !(size - 1);
        p.map(va, oa, level, pt::AF);
        maps.push(Map {
            va,
            size,
            oa,
            level,
        });
    }
    let tcr_half = if upper {
        (u64::from(txsz) << 16)
            | match g {
                12 => 2 << 30,
                14 => 1 << 30,
                _ => 3 << 30,
            }
            | (1 << 7)
    } else {
        u64::from(txsz)
            | match g {
                12 => 0,
                14 => 2 << 14,
                _ => 1 << 14,
            }
            | (1 << 23)
    };
    let regs = Stage1Regs {
        sctlr: 1,
        tcr: tcr_half | (5 << 32),
        ttbr0: if upper { 0 } else { p.root },
        ttbr1: if upper { p.root } else { 0 },
        mair: 0xff,
        pa_bits: 48,
        pan: false,
    };
    let top = if upper { !((1u64 << inputsize) - 1) } else { 0 };
    for i in 0..64 {
        let va = if i % 2 == 0 && !maps.is_empty() {
            let m = &maps[(rnd() % maps.len() as u64) as usize];
            m.va + rnd() % m.size
        } else {
            rnd() & ((1u64 << inputsize) - 1)
        };
        let got = translate(&regs, top | va, AccessKind::Read, El::El1, &p.ram);
        match maps.iter().find(|m| va >= m.va && va < m.va + m.size) {
            Some(m) => {
                let t =
                    got.map_err(|f| TestCaseError::fail(format!("{f:?} for {va:#x} in {m:?}")))?;
                prop_assert_eq!(t.ipa, m.oa + (va - m.va));
                prop_assert_eq!((t.level, t.size), (m.level, m.size));
            }
            None => {
                let f = got.err();
                prop_assert_eq!(
                    f.map(|f| f.kind),
                    Some(FaultKind::Translation),
                    "va {:#x}",
                    va
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_mappings_match_the_model(seed in any::<u64>()) {
        check(seed)?;
    }

    #[test]
    fn arbitrary_tables_never_panic(
        sctlr in any::<u64>(),
        tcr in any::<u64>(),
        ttbr in any::<u64>(),
        mair in any::<u64>(),
        va in any::<u64>(),
        pa in 0u8..64,
        table in proptest::collection::vec(any::<u64>(), 512),
    ) {
        let mut ram = VecRam::new();
        prop_assert!(ram.add_region(0, 0x1000));
        let bytes: Vec<u8> = table.iter().flat_map(|d| d.to_le_bytes()).collect();
        ram.write(0, &bytes).unwrap();
        // Descriptors point back into the page half the time.
        let regs = Stage1Regs { sctlr, tcr, ttbr0: ttbr & 0xff8, ttbr1: ttbr, mair, pa_bits: pa, pan: false };
        for access in [AccessKind::Read, AccessKind::Write, AccessKind::Fetch] {
            for el in [El::El0, El::El1] {
                let a = translate(&regs, va, access, el, &ram);
                let b = translate(&regs, va, access, el, &ram);
                prop_assert_eq!(a, b);
                if let Err(f) = a {
                    prop_assert!((-1..=3).contains(&f.level));
                }
            }
        }
    }
}
