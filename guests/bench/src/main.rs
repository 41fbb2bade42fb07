// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `bench`: what device accesses cost in exits, measured in one run with the
//! virtual counter (CNTVCT_EL0, behind an ISB), as ratios to a plain MMIO
//! exit measured in the same run.
//!
//! Baselines, one access per execution, against the test device's window:
//!
//! * `mmio-str`: `str x, [x]` (ISV = 1: `KVM_EXIT_MMIO`), the unit for stores;
//! * `mmio-ldr`: `ldr x, [x]` (ISV = 1), the unit for loads;
//! * `lone-str-post`: `str x, [x], #8; nop` (ISV = 0: `KVM_EXIT_ARM_NISV`
//!   and kvm-nisv's emulation; the NOP stops run-ahead at once).
//!
//! Loops of 1, 4, 16, 64 and 256 iterations (the cost is per access):
//!
//! * `mmio-loop`: `str w, [x]; add x, x, #4` (one `KVM_EXIT_MMIO` per access);
//! * `str-post`: `str w, [x], #4` (a device buffer written by a driver);
//! * `ldrb-post`: `ldrb w, [x], #1` (EDID-style byte reads);
//! * `memcpy-q`: `ldp q0, q1, [ram], #32; stp q0, q1, [dev], #32` (a
//!   framebuffer memcpy, 32 bytes per iteration: 128 iterations are 4 KiB;
//!   the access is the STP);
//! * `ld1-st1`: `ld1 {v0.16b-v3.16b}, [dev], #64; st1 {...}, [ram], #64` (the
//!   access is the LD1).
//!
//! Every loop ends in a NOP, where run-ahead stops. All of it runs twice: with
//! the MMU off (Device-nGnRnE) and with the window mapped Normal
//! non-cacheable. The VMM decides about run-ahead (`--nisv-run-ahead`); the
//! runner (kvm-nisv/benches/guest.rs) runs the guest once with it off and once
//! on, and says which with `bench.runahead=`.
//!
//! The kinds are interleaved: `rounds=` rounds (default 16), each timing every
//! kind in turn with about 64 accesses (`64 / L` executions of a loop of `L`).
//! A kind's figure is the median over rounds of its time per access. Next to
//! each ratio the guest prints the NISV exits per access (from the test
//! device's counter), which does not depend on the machine.
//!
//! Checks (exit 1 if one fails): every copy's data is right (the device's
//! contents read back against RAM), the ISV = 1 forms took no NISV exit, and
//! with run-ahead off every NISV access took exactly one.

#![no_std]
#![no_main]

use guest_rt::mmu::{self, Attr, Granule};
use guest_rt::{Global, dtb, println, run, sysreg, testdev};

/// Rounds when the command line does not say.
const DEFAULT_ROUNDS: usize = 16;
/// At most this many rounds.
const MAX_ROUNDS: usize = 64;
/// Accesses per kind and round.
const PER_ROUND: u64 = 64;
/// Access lengths.
const LENGTHS: [u64; 5] = [1, 4, 16, 64, 256];

/// RAM source/destination of the copies (16 KiB: 256 iterations of 64 bytes).
#[repr(C, align(4096))]
struct Buf([u8; 16384]);
static SRC: Global<Buf> = Global::new(Buf([0; 16384]));
static DST: Global<Buf> = Global::new(Buf([0; 16384]));
static CHECK: Global<Buf> = Global::new(Buf([0; 16384]));

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    MmioStr,
    MmioLdr,
    LoneStrPost,
    MmioLoop,
    StrPost,
    LdrbPost,
    MemcpyQ,
    Ld1St1,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::MmioStr => "mmio-str",
            Access::MmioLdr => "mmio-ldr",
            Access::LoneStrPost => "lone-str-post",
            Access::MmioLoop => "mmio-loop",
            Access::StrPost => "str-post",
            Access::LdrbPost => "ldrb-post",
            Access::MemcpyQ => "memcpy-q",
            Access::Ld1St1 => "ld1-st1",
        }
    }

    /// A load from the device (its unit is `mmio-ldr`).
    fn load(self) -> bool {
        matches!(self, Access::MmioLdr | Access::LdrbPost | Access::Ld1St1)
    }

    /// Each device access is a NISV exit without run-ahead.
    fn nisv(self) -> bool {
        !matches!(self, Access::MmioStr | Access::MmioLdr | Access::MmioLoop)
    }

    /// Run once with `n` iterations from device address `dev`.
    #[inline(never)]
    fn once(self, n: u64, dev: u64) {
        let src = SRC.get() as u64;
        let dst = DST.get() as u64;
        let v = 0x1122_3344_5566_7788u64;
        // SAFETY: in every arm the accesses go to the test device's data
        // window (`dev`, at most 16 KiB from its start) and to this program's
        // SRC and DST buffers (16 KiB each, at most 256 * 64 bytes are
        // touched); every register the code changes is a declared output or
        // clobber.
        unsafe {
            match self {
                Access::MmioStr => core::arch::asm!("str {v}, [{a}]", v = in(reg) v,
                    a = in(reg) dev, options(nostack)),
                Access::MmioLdr => core::arch::asm!("ldr {x}, [{a}]", x = out(reg) _,
                    a = in(reg) dev, options(nostack)),
                Access::LoneStrPost => core::arch::asm!("str {v}, [{a}], #8", "nop",
                    v = in(reg) v, a = inout(reg) dev => _, options(nostack)),
                Access::MmioLoop => core::arch::asm!(
                    "2: str {v:w}, [{a}]", "add {a}, {a}, #4", "subs {n}, {n}, #1", "b.ne 2b", "nop",
                    v = in(reg) v, a = inout(reg) dev => _, n = inout(reg) n => _, options(nostack)),
                Access::StrPost => core::arch::asm!(
                    "2: str {v:w}, [{a}], #4", "subs {n}, {n}, #1", "b.ne 2b", "nop",
                    v = in(reg) v, a = inout(reg) dev => _, n = inout(reg) n => _, options(nostack)),
                Access::LdrbPost => core::arch::asm!(
                    "2: ldrb {x:w}, [{a}], #1", "subs {n}, {n}, #1", "b.ne 2b", "nop",
                    x = out(reg) _, a = inout(reg) dev => _, n = inout(reg) n => _, options(nostack)),
                Access::MemcpyQ => core::arch::asm!(
                    "2: ldp q0, q1, [{s}], #32", "stp q0, q1, [{a}], #32", "subs {n}, {n}, #1",
                    "b.ne 2b", "nop",
                    s = inout(reg) src => _, a = inout(reg) dev => _, n = inout(reg) n => _,
                    out("v0") _, out("v1") _, options(nostack)),
                Access::Ld1St1 => core::arch::asm!(
                    "2: ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{a}], #64",
                    "st1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{d}], #64", "subs {n}, {n}, #1",
                    "b.ne 2b", "nop",
                    a = inout(reg) dev => _, d = inout(reg) dst => _, n = inout(reg) n => _,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _, options(nostack)),
            }
        }
    }
}

/// One measured kind: a loop and its length.
#[derive(Clone, Copy)]
struct Kind {
    l: Access,
    n: u64,
}

const NKINDS: usize = 3 + 5 * LENGTHS.len();

fn kinds() -> [Kind; NKINDS] {
    let mut k = [Kind {
        l: Access::MmioStr,
        n: 1,
    }; NKINDS];
    k[1].l = Access::MmioLdr;
    k[2].l = Access::LoneStrPost;
    let loops = [
        Access::MmioLoop,
        Access::StrPost,
        Access::LdrbPost,
        Access::MemcpyQ,
        Access::Ld1St1,
    ];
    let mut i = 3;
    for l in loops {
        for n in LENGTHS {
            k[i] = Kind { l, n };
            i += 1;
        }
    }
    k
}

/// Per kind and round: counter ticks per access, times 1000.
static TICKS: Global<[[u64; MAX_ROUNDS]; NKINDS]> = Global::new([[0; MAX_ROUNDS]; NKINDS]);

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// `a / b` with two decimals, as text parts.
fn ratio(a: u64, b: u64) -> (u64, u64) {
    if b == 0 {
        return (0, 0);
    }
    let r = (u128::from(a) * 100 + u128::from(b) / 2) / u128::from(b);
    ((r / 100) as u64, (r % 100) as u64)
}

/// Fill SRC with a pattern and the window with another.
fn prepare(seed: u8) -> bool {
    // SAFETY: single-threaded; SRC is only used here and by the loops.
    let s = unsafe { &mut (*SRC.get()).0 };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(seed);
    }
    // SAFETY: as above, for CHECK.
    let c = unsafe { &mut (*CHECK.get()).0 };
    for (i, b) in c.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(seed);
    }
    testdev::to_device(CHECK.get() as u64, 0, 16384)
}

/// Run each loop once more and check the data it moved.
fn check(mmu_off: bool) -> bool {
    let flush = |a: *mut Buf| {
        if mmu_off {
            sysreg::clean_inval(a as u64, 16384);
        }
    };
    let mut ok = prepare(0x5a);
    flush(SRC.get());
    // memcpy-q: 256 x 32 bytes of SRC to the window, read back.
    Access::MemcpyQ.once(256, testdev::WINDOW);
    ok &= testdev::from_device(CHECK.get() as u64, 0, 8192);
    flush(CHECK.get());
    // SAFETY: single-threaded reads of this program's buffers.
    let (src, chk) = unsafe { (&(*SRC.get()).0, &(*CHECK.get()).0) };
    let copy_ok = src[..8192] == chk[..8192];
    // ld1-st1: 256 x 64 bytes of the window into DST.
    ok &= prepare(0x33);
    flush(DST.get());
    Access::Ld1St1.once(256, testdev::WINDOW);
    flush(DST.get());
    // SAFETY: as above.
    let (dst, chk) = unsafe { (&(*DST.get()).0, &(*CHECK.get()).0) };
    let ld1_ok = dst[..] == chk[..];
    // str-post: 256 words.
    Access::StrPost.once(256, testdev::WINDOW);
    ok &= testdev::from_device(CHECK.get() as u64, 0, 1024);
    flush(CHECK.get());
    // SAFETY: as above.
    let chk = unsafe { &(*CHECK.get()).0 };
    let str_ok = chk[..1024]
        .chunks(4)
        .all(|w| w == 0x5566_7788u32.to_le_bytes());
    if !(ok && copy_ok && ld1_ok && str_ok) {
        println!(
            "bench: FAIL: data check (commands {} memcpy {} ld1 {} str {})",
            ok, copy_ok, ld1_ok, str_ok
        );
    }
    ok && copy_ok && ld1_ok && str_ok
}

/// Measure every kind in interleaved rounds and print the table for `mem`.
fn measure(mem: &str, rounds: usize, runahead: bool) -> bool {
    let ks = kinds();
    // SAFETY: single-threaded; only this function uses TICKS.
    let ticks = unsafe { &mut *TICKS.get() };
    let mut nisv = [0u64; NKINDS];
    let mut accesses = [0u64; NKINDS];
    // Untimed warm-up: one of each.
    for k in ks {
        k.l.once(k.n, testdev::WINDOW);
    }
    for round in 0..rounds {
        for (i, k) in ks.iter().enumerate() {
            let execs = (PER_ROUND / k.n).max(1);
            let n0 = testdev::nisv_count();
            let t0 = sysreg::counter();
            for _ in 0..execs {
                k.l.once(k.n, testdev::WINDOW);
            }
            let t = sysreg::counter().wrapping_sub(t0);
            nisv[i] += testdev::nisv_count().wrapping_sub(n0);
            accesses[i] += execs * k.n;
            if let Some(s) = ticks.get_mut(i).and_then(|r| r.get_mut(round)) {
                *s = t.saturating_mul(1000) / (execs * k.n);
            }
        }
    }
    let mut ok = true;
    let mut per = [0u64; NKINDS];
    for (i, p) in per.iter_mut().enumerate() {
        *p = ticks
            .get_mut(i)
            .and_then(|r| r.get_mut(..rounds))
            .map_or(0, median);
    }
    let (unit_st, unit_ld) = (per[0], per[1]);
    for (i, k) in ks.iter().enumerate() {
        let unit = if k.l.load() { unit_ld } else { unit_st };
        let (cw, cf) = ratio(per[i], unit);
        let (ew, ef) = ratio(nisv[i], accesses[i]);
        println!(
            "bench: {} {} L={} cost={}.{:02} exits={}.{:02} unit={} ticks-x1000={} nisv={} accesses={}",
            mem,
            k.l.name(),
            k.n,
            cw,
            cf,
            ew,
            ef,
            if k.l.load() { "mmio-ldr" } else { "mmio-str" },
            per[i],
            nisv[i],
            accesses[i]
        );
        let want_none = !k.l.nisv() && nisv[i] != 0;
        let want_one = k.l.nisv() && !runahead && nisv[i] != accesses[i];
        if want_none || want_one {
            println!(
                "bench: FAIL: {} {} L={}: {} NISV exits for {} accesses",
                mem,
                k.l.name(),
                k.n,
                nisv[i],
                accesses[i]
            );
            ok = false;
        }
    }
    ok
}

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    let args = guest_rt::bootargs();
    let rounds = dtb::arg_u64(args, "rounds")
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r > 0)
        .map_or(DEFAULT_ROUNDS, |r| r.min(MAX_ROUNDS));
    let runahead = dtb::arg_u64(args, "bench.runahead").unwrap_or(0) != 0;
    println!(
        "bench: rounds={} per-round={} runahead={} cntfrq={}",
        rounds,
        PER_ROUND,
        u8::from(runahead),
        sysreg::counter_freq()
    );
    let mut ok = prepare(1);
    // 1. MMU off: every data access is Device-nGnRnE.
    ok &= measure("device", rounds, runahead);
    ok &= check(true);
    // 2. MMU on, the window Normal non-cacheable.
    match mmu::standard(Granule::K4, Attr::NormalNc) {
        Ok(t) => t.enable(),
        Err(e) => {
            println!("bench: FAIL: page tables: {:?}", e);
            return 2;
        }
    }
    let _ = run::canonical_sctlr();
    ok &= measure("normal-nc", rounds, runahead);
    ok &= check(false);
    println!("bench: {}", if ok { "ok" } else { "FAILED" });
    if ok { 0 } else { 1 }
}
