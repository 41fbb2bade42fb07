// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `bench`: what a NISV exit plus kvm-nisv's emulation costs compared with an
//! ordinary MMIO exit, measured in one run with the virtual counter
//! (CNTVCT_EL0, behind an ISB).
//!
//! The accesses, MMU off, against the test device's data window
//! (docs/guest-interface.md):
//!
//! * `ram-str`: `str x, [x]` to RAM (no exit);
//! * `mmio-str`: `str x, [x]` to the device: ISV = 1, `KVM_EXIT_MMIO`;
//! * `mmio-ldr`: `ldr x, [x]` from the device: ISV = 1, `KVM_EXIT_MMIO`;
//! * `nisv-str-post`: `str x, [x], #8` to the device: writeback, ISV = 0,
//!   `KVM_EXIT_ARM_NISV` and kvm-nisv emulation;
//! * `nisv-ldp`: `ldp x, x, [x]` from the device (NISV);
//! * `nisv-ld1`: `ld1 {v0.16b-v3.16b}, [x]` from the device (NISV).
//!
//! The host running the emulated arm64 machine is shared and its load changes
//! by the second, so the kinds are interleaved: `rounds=` rounds (default 64),
//! each timing `iters= / rounds` executions of every kind in turn (`iters=`
//! default 1024). A kind's figure is the median of its per-round times; the
//! ratios of those medians are printed, with the ratios of the fastest rounds
//! and of the totals for comparison.
//!
//! The guest also checks, with the test device's NISV and access counters read
//! around every timed round, that the ISV = 1 forms took no NISV exit and each
//! NISV form exactly one per execution, so a ratio is never computed from the
//! wrong path. It exits 0, or 1 if a check failed.

#![no_std]
#![no_main]

use guest_rt::{Global, dtb, println, sysreg, testdev};

/// Executions per kind when the command line does not say.
const DEFAULT_ITERS: u64 = 1024;
/// Rounds when the command line does not say.
const DEFAULT_ROUNDS: usize = 64;
/// At most this many rounds.
const MAX_ROUNDS: usize = 128;

/// RAM target of `ram-str`.
static RAM: Global<[u64; 4]> = Global::new([0; 4]);

/// One kind of access.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    RamStr,
    MmioStr,
    MmioLdr,
    NisvStrPost,
    NisvLdp,
    NisvLd1,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::RamStr,
        Kind::MmioStr,
        Kind::MmioLdr,
        Kind::NisvStrPost,
        Kind::NisvLdp,
        Kind::NisvLd1,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::RamStr => "ram-str",
            Kind::MmioStr => "mmio-str",
            Kind::MmioLdr => "mmio-ldr",
            Kind::NisvStrPost => "nisv-str-post",
            Kind::NisvLdp => "nisv-ldp",
            Kind::NisvLd1 => "nisv-ld1",
        }
    }

    /// Whether each execution must be one KVM_EXIT_ARM_NISV.
    fn nisv(self) -> bool {
        matches!(self, Kind::NisvStrPost | Kind::NisvLdp | Kind::NisvLd1)
    }

    /// Execute the access once.
    #[inline(always)]
    fn once(self) {
        let dev = testdev::WINDOW;
        let v = 0x1122_3344_5566_7788u64;
        match self {
            Kind::RamStr => {
                // SAFETY: stores to the static `RAM` array (valid, aligned,
                // used only here); no other memory or register is touched.
                unsafe {
                    core::arch::asm!("str {v}, [{a}]", v = in(reg) v,
                        a = in(reg) RAM.get() as u64, options(nostack));
                }
            }
            Kind::MmioStr => {
                // SAFETY: a store to the test device's data window, which the
                // VMM emulates; no guest memory is touched.
                unsafe {
                    core::arch::asm!("str {v}, [{a}]", v = in(reg) v, a = in(reg) dev,
                        options(nostack));
                }
            }
            Kind::MmioLdr => {
                // SAFETY: a load from the data window into a declared output.
                unsafe {
                    core::arch::asm!("ldr {x}, [{a}]", x = out(reg) _, a = in(reg) dev,
                        options(nostack));
                }
            }
            Kind::NisvStrPost => {
                // SAFETY: a store to the data window; the base register's
                // writeback goes to a declared (discarded) output.
                unsafe {
                    core::arch::asm!("str {v}, [{a}], #8", v = in(reg) v,
                        a = inout(reg) dev => _, options(nostack));
                }
            }
            Kind::NisvLdp => {
                // SAFETY: a load pair from the data window into two distinct
                // declared outputs.
                unsafe {
                    core::arch::asm!("ldp {x}, {y}, [{a}]", x = out(reg) _, y = out(reg) _,
                        a = in(reg) dev, options(nostack));
                }
            }
            Kind::NisvLd1 => {
                // SAFETY: 64 bytes from the data window into V0-V3, declared
                // as clobbered outputs.
                unsafe {
                    core::arch::asm!("ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{a}]",
                        a = in(reg) dev, out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                        options(nostack));
                }
            }
        }
    }
}

/// Counter ticks and device counter deltas of one timed round.
struct Sample {
    ticks: u64,
    nisv: u64,
    accesses: u64,
}

fn measure(kind: Kind, n: u64) -> Sample {
    testdev::clear_log();
    let nisv0 = testdev::nisv_count();
    let t0 = sysreg::counter();
    for _ in 0..n {
        kind.once();
    }
    let t1 = sysreg::counter();
    let nisv1 = testdev::nisv_count();
    Sample {
        ticks: t1.wrapping_sub(t0),
        nisv: nisv1.wrapping_sub(nisv0),
        accesses: testdev::log_count(),
    }
}

/// `a / b` with two decimals, as text parts (no floating point).
fn ratio(a: u64, b: u64) -> (u64, u64) {
    if b == 0 {
        return (0, 0);
    }
    let r = (u128::from(a) * 100 + u128::from(b) / 2) / u128::from(b);
    ((r / 100) as u64, (r % 100) as u64)
}

/// The median and the minimum of `v` (sorted in place; the lower middle for
/// an even length).
fn median_min(v: &mut [u64]) -> (u64, u64) {
    v.sort_unstable();
    let mid = v.len().saturating_sub(1) / 2;
    (
        v.get(mid).copied().unwrap_or(0),
        v.first().copied().unwrap_or(0),
    )
}

/// Per kind and round: counter ticks.
static TICKS: Global<[[u64; MAX_ROUNDS]; Kind::ALL.len()]> =
    Global::new([[0; MAX_ROUNDS]; Kind::ALL.len()]);

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    let args = guest_rt::bootargs();
    let rounds = dtb::arg_u64(args, "rounds")
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r > 0)
        .map_or(DEFAULT_ROUNDS, |r| r.min(MAX_ROUNDS));
    let iters = dtb::arg_u64(args, "iters")
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ITERS);
    let per_round = (iters / rounds as u64).max(1);
    println!(
        "bench: iters={} rounds={} per-round={} cntfrq={}",
        per_round * rounds as u64,
        rounds,
        per_round,
        sysreg::counter_freq()
    );
    // One untimed execution of each first (faults in anything lazy on both
    // sides: the VMM's first NISV exit reads and caches ID registers).
    for k in Kind::ALL {
        k.once();
    }
    // SAFETY: single-threaded guest; only this function uses TICKS.
    let ticks = unsafe { &mut *TICKS.get() };
    let mut totals = [(0u64, 0u64, 0u64); Kind::ALL.len()];
    for round in 0..rounds {
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            let s = measure(k, per_round);
            if let Some(t) = ticks.get_mut(i).and_then(|row| row.get_mut(round)) {
                *t = s.ticks;
            }
            if let Some(t) = totals.get_mut(i) {
                t.0 = t.0.wrapping_add(s.ticks);
                t.1 = t.1.wrapping_add(s.nisv);
                t.2 = t.2.wrapping_add(s.accesses);
            }
        }
    }
    let mut ok = true;
    let mut medians = [0u64; Kind::ALL.len()];
    let mut mins = [0u64; Kind::ALL.len()];
    for (i, k) in Kind::ALL.into_iter().enumerate() {
        let (sum, nisv, accesses) = totals.get(i).copied().unwrap_or_default();
        let (med, min) = ticks
            .get_mut(i)
            .and_then(|row| row.get_mut(..rounds))
            .map_or((0, 0), median_min);
        if let (Some(m), Some(n)) = (medians.get_mut(i), mins.get_mut(i)) {
            *m = med;
            *n = min;
        }
        println!(
            "bench: {} median-ticks={} min-ticks={} total-ticks={} nisv={} accesses={}",
            k.name(),
            med,
            min,
            sum,
            nisv,
            accesses
        );
        let n = per_round * rounds as u64;
        let want = if k.nisv() { n } else { 0 };
        if nisv != want {
            println!(
                "bench: FAIL: {} took {} NISV exits in {} executions, expected {}",
                k.name(),
                nisv,
                n,
                want
            );
            ok = false;
        }
    }
    let pick = |v: &[u64], k: Kind| {
        Kind::ALL
            .iter()
            .position(|&x| x == k)
            .and_then(|i| v.get(i).copied())
            .unwrap_or(0)
    };
    let sums: [u64; Kind::ALL.len()] = core::array::from_fn(|i| totals.get(i).map_or(0, |t| t.0));
    for (a, b) in [
        (Kind::NisvStrPost, Kind::MmioStr),
        (Kind::NisvLdp, Kind::MmioLdr),
        (Kind::NisvLd1, Kind::MmioLdr),
        (Kind::NisvLdp, Kind::MmioStr),
        (Kind::NisvLd1, Kind::MmioStr),
        (Kind::MmioLdr, Kind::MmioStr),
        (Kind::MmioStr, Kind::RamStr),
    ] {
        let (mw, mf) = ratio(pick(&medians, a), pick(&medians, b));
        let (nw, nf) = ratio(pick(&mins, a), pick(&mins, b));
        let (tw, tf) = ratio(pick(&sums, a), pick(&sums, b));
        println!(
            "bench: ratio {}/{} = {}.{:02} (fastest {}.{:02}, totals {}.{:02})",
            a.name(),
            b.name(),
            mw,
            mf,
            nw,
            nf,
            tw,
            tf
        );
    }
    println!("bench: {}", if ok { "ok" } else { "FAILED" });
    if ok { 0 } else { 1 }
}
