// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `oracle`: the CPU as the oracle for the emulator (docs/oracle.md).
//!
//! Generates `oracle.count` (default 100000) load/store instructions of every
//! class from `oracle.seed` (bootargs; a fixed default otherwise), runs each once
//! on RAM and once on the test device holding the same bytes, and compares the
//! complete outcome. Phases:
//!
//! 1. `alias` (80%): MMU on (4 KiB granule), Normal memory; the device region is
//!    a RAM page, the window's first page, a RAM page, so accesses straddle
//!    RAM->device and device->RAM.
//! 2. `straddle` (10%): the window identity-mapped Normal, its last page followed
//!    by RAM at 0x8000_0000 (the physical straddle).
//! 3. `big-endian` (10%, if ID_AA64MMFR0_EL1.BigEnd): SCTLR_EL1.EE = 1 with the
//!    MMU off for the two runs (big-endian stage-1 walks would need big-endian
//!    tables), so aligned accesses only. Without BigEnd, phase 1 runs instead.
//!
//! Exit status 0 iff there were no mismatches and at least `count` instructions
//! were compared.

#![no_std]
#![no_main]

use guest_bins::classes::{self, ALIAS_VA};
use guest_rt::engine::{self, Engine, Kind, Layout, Verdict};
use guest_rt::insn::{self, Class};
use guest_rt::mmu::{self, Attr, Granule};
use guest_rt::rng::Rng;
use guest_rt::{dtb, println, run, sysreg, testdev};

const DEFAULT_SEED: u64 = 0x6b76_6d2d_6e69_7376; // "kvm-nisv"
/// VA of the RAM-run region of the tail phase (two RAM pages, then nothing).
const RAM_ALIAS_VA: u64 = 0x11_0000_0000;
/// VA of the device-run region of the tail phase (a RAM page, the window's
/// first page, then nothing).
const TAIL_VA: u64 = 0x12_0000_0000;

fn pick_class(rng: &mut Rng, e: &Engine, mask: u32) -> Option<Class> {
    if !insn::ALL
        .iter()
        .any(|&c| mask & (1 << c.index()) != 0 && e.supports(c))
    {
        return None;
    }
    loop {
        let c = insn::ALL[rng.below(insn::ALL.len() as u64) as usize];
        if mask & (1 << c.index()) != 0 && e.supports(c) {
            return Some(c);
        }
    }
}

struct Totals {
    ran: u64,
    mism: u64,
    skipped: u64,
    kinds: [u64; 3],
}

#[allow(clippy::too_many_arguments)]
fn phase(
    name: &str,
    e: &mut Engine,
    rng: &mut Rng,
    target: u64,
    mask: u32,
    tot: &mut Totals,
    grand: u64,
    t0: u64,
    hz: u64,
) {
    println!(
        "oracle: phase {} ({}): {} instructions",
        name, e.layout.name, target
    );
    let mut ran = 0u64;
    let mut attempts = 0u64;
    let mut last_progress = 0u64;
    while ran < target && attempts < target.saturating_mul(2).saturating_add(1000) {
        attempts += 1;
        let Some(c) = pick_class(rng, e, mask) else {
            println!("oracle: no selected class runs in this phase");
            break;
        };
        match e.run_class(rng, c) {
            Verdict::Match => ran += 1,
            Verdict::Mismatch => {
                ran += 1;
                tot.mism += 1;
            }
            Verdict::Skipped => tot.skipped += 1,
        }
        if ran > 0 && ran.is_multiple_of(10_000) && ran != last_progress {
            last_progress = ran;
            let secs = (sysreg::counter() - t0) / hz.max(1);
            println!(
                "oracle: progress {}/{} ({} in this phase), {} mismatches, {} s",
                tot.ran + ran,
                grand,
                ran,
                tot.mism,
                secs
            );
        }
    }
    tot.ran += ran;
    for (t, k) in tot.kinds.iter_mut().zip(e.stats.kinds.iter()) {
        *t += u64::from(*k);
    }
    e.print_stats();
}

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    let args = guest_rt::bootargs();
    let seed = dtb::arg_u64(args, "oracle.seed").unwrap_or(DEFAULT_SEED);
    let count = dtb::arg_u64(args, "oracle.count").unwrap_or(100_000);
    let feat = classes::features();
    let be = sysreg::has_bigend();
    let mask = match dtb::arg_str(args, "oracle.only") {
        None => u32::MAX,
        Some(list) => match insn::class_mask(list) {
            Some(m) => m,
            None => {
                println!("oracle: FAIL: unknown class in oracle.only={}", list);
                return 2;
            }
        },
    };
    println!(
        "oracle: seed {} count {} (bootargs \"{}\")",
        seed, count, args
    );
    println!(
        "oracle: LSE {} LSE2 {} DC ZVA block {:?} BigEnd {}",
        feat.lse, feat.lse2, feat.zva, be
    );
    if !sysreg::has_gran4() {
        println!("oracle: FAIL: no 4 KiB granule");
        return 2;
    }
    let pg = Granule::K4.page();
    // The tail phase: a RAM page, then the window's first page, then nothing
    // mapped (device side, at TAIL_VA); two RAM pages, then nothing (RAM side,
    // at RAM_ALIAS_VA: the same RAM as the identity map).
    let tables = mmu::standard(Granule::K4, Attr::Normal).and_then(|mut t| {
        classes::map_alias(&mut t)?;
        t.map(TAIL_VA, engine::devside_pa().0, pg, Attr::Normal)?;
        t.map(TAIL_VA + pg, testdev::WINDOW, pg, Attr::Normal)?;
        t.map(RAM_ALIAS_VA, engine::ramside_pa(), 2 * pg, Attr::Normal)?;
        Ok(t)
    });
    match tables {
        Ok(t) => t.enable(),
        Err(e) => {
            println!("oracle: FAIL: page tables: {:?}", e);
            return 2;
        }
    }
    let canon = run::canonical_sctlr();
    let hz = sysreg::counter_freq();
    let t0 = sysreg::counter();
    let nisv0 = testdev::nisv_count();
    let mut rng = Rng::new(seed);
    let mut tot = Totals {
        ran: 0,
        mism: 0,
        skipped: 0,
        kinds: [0; 3],
    };
    let n_straddle = count / 10;
    let n_tail = count / 10;
    let n_be = if be { count / 10 } else { 0 };
    let n_alias = count - n_straddle - n_tail - n_be;

    let mut e = Engine::new(classes::alias_layout(pg, "alias"), feat, seed);
    phase(
        "1/4", &mut e, &mut rng, n_alias, mask, &mut tot, count, t0, hz,
    );
    let _ = ALIAS_VA;

    let mut e = Engine::new(
        Layout::identity(pg, canon, false, "straddle"),
        feat,
        seed ^ 1,
    );
    phase(
        "2/4", &mut e, &mut rng, n_straddle, mask, &mut tot, count, t0, hz,
    );

    let mut tail = classes::alias_layout(pg, "tail");
    tail.ram_va = RAM_ALIAS_VA;
    tail.dev_va = TAIL_VA;
    tail.post = 0;
    tail.tail_unmapped = true;
    let mut e = Engine::new(tail, feat, seed ^ 3);
    phase(
        "3/4", &mut e, &mut rng, n_tail, mask, &mut tot, count, t0, hz,
    );

    if n_be > 0 {
        let sctlr = (canon & !run::SCTLR_M) | run::SCTLR_EE;
        let mut e = Engine::new(
            Layout::identity(pg, sctlr, true, "big-endian"),
            feat,
            seed ^ 2,
        );
        if feat.zva.is_some() && !e.supports(Class::DcZva) {
            println!(
                "oracle: phase 4/4: dc-zva not generated: Device memory (MMU off), where QEMU TCG takes no Alignment fault (docs/oracle.md)"
            );
        }
        phase("4/4", &mut e, &mut rng, n_be, mask, &mut tot, count, t0, hz);
    } else {
        println!("oracle: phase 4/4 (big-endian): not run, ID_AA64MMFR0_EL1.BigEnd = 0");
    }

    let ticks = sysreg::counter() - t0;
    let ms = ticks.saturating_mul(1000) / hz.max(1);
    let nisv = testdev::nisv_count().wrapping_sub(nisv0);
    println!(
        "oracle: {} ms, {} us per instruction (two runs), {} NISV exits emulated by the VMM, {} skipped",
        ms,
        ms.saturating_mul(1000) / tot.ran.max(1),
        nisv,
        tot.skipped
    );
    if tot.mism > 0 {
        for k in Kind::ALL {
            println!(
                "oracle: mismatches of kind {}: {}",
                k.name(),
                tot.kinds[k as usize]
            );
        }
    }
    if mask != u32::MAX {
        println!("oracle: restricted by oracle.only: not a full run");
    }
    println!(
        "oracle: {} instructions, {} mismatches, seed {}",
        tot.ran, tot.mism, seed
    );
    if tot.mism == 0 && tot.ran >= count && mask == u32::MAX {
        println!("oracle: PASS");
        0
    } else {
        println!("oracle: FAIL");
        1
    }
}
