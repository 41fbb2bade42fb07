// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fuzz the stage-1 walker: arbitrary translation registers, an arbitrary VA
//! and access, and translation tables taken from the input. The walk must not
//! panic or hang, must be deterministic, and a successful translation must be
//! well formed and consistent across the bytes of the page it maps.

#![no_main]

use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::stage1::{AccessKind, El, FaultKind, Stage1Regs, translate, translate_deferred};
use libfuzzer_sys::fuzz_target;

/// Reads fixed-size values from the input, zero once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
}

/// Tables live in [0, 64 KiB) and at a high 52-bit address.
const LOW: u64 = 0;
const HIGH: u64 = 0x000f_0000_0000_0000;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let sel = inp.u64();
    let mut regs = Stage1Regs {
        sctlr: inp.u64(),
        tcr: inp.u64(),
        ttbr0: inp.u64(),
        ttbr1: inp.u64(),
        mair: inp.u64(),
        pa_bits: [32, 36, 40, 42, 44, 48, 52][(sel % 7) as usize],
        pan: sel & 0x100 != 0,
    };
    // Bias the table bases into the RAM most of the time.
    if sel & 0x200 == 0 {
        regs.ttbr0 &= 0xfff8;
        regs.ttbr1 &= 0xfff8;
    }
    let va = inp.u64();
    let access =
        [AccessKind::Read, AccessKind::Write, AccessKind::Fetch][((sel >> 12) % 3) as usize];
    let el = if sel & 0x400 != 0 { El::El0 } else { El::El1 };
    let mut ram = VecRam::new();
    assert!(ram.add_region(LOW, 0x1_0000));
    assert!(ram.add_region(HIGH, 0x1000));
    let rest = inp.0;
    let n = rest.len().min(0x1_0000);
    ram.write(LOW, &rest[..n]).unwrap();
    if rest.len() > 0x1_0000 {
        let m = (rest.len() - 0x1_0000).min(0x1000);
        ram.write(HIGH, &rest[0x1_0000..0x1_0000 + m]).unwrap();
    }

    let r1 = translate(&regs, va, access, el, &ram);
    let r2 = translate(&regs, va, access, el, &ram);
    assert_eq!(r1, r2, "deterministic");
    let d = translate_deferred(&regs, va, access, el, &ram);
    match (&r1, &d) {
        (Ok(t), Ok((t2, None))) => assert_eq!(t, t2),
        (Err(f), Ok((_, Some(p)))) => assert_eq!(f, p),
        (Err(f), Err(g)) => assert_eq!(f, g),
        _ => panic!("translate and translate_deferred disagree: {r1:?} {d:?}"),
    }
    match r1 {
        Ok(t) => {
            assert!(t.size.is_power_of_two() && t.size >= 0x1000, "{t:?}");
            assert!((-1..=3).contains(&t.level));
            if regs.sctlr & 1 != 0 {
                assert!(t.ipa < 1 << 52, "{t:?}");
                // Another byte of the same page/block maps to the same frame.
                let other = (va & !(t.size - 1)) | (va.wrapping_mul(31) & (t.size - 1));
                if let Ok(t2) = translate(&regs, other, access, el, &ram) {
                    assert_eq!(t2.ipa & !(t.size - 1), t.ipa & !(t.size - 1));
                    assert_eq!(t2.ipa & (t.size - 1), other & (t.size - 1));
                }
            } else {
                assert_eq!(t.ipa, va);
            }
        }
        Err(f) => {
            assert!((-1..=3).contains(&f.level));
            assert_ne!(f.kind, FaultKind::Alignment);
            let dfsc = f.dfsc();
            assert!(dfsc < 0x40);
        }
    }
});
