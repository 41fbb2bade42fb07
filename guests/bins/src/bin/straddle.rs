// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `straddle`: device accesses that cross into the next virtual page, for
//! every combination of issue 11:
//!
//! {ISV=1 single register (`ldr/str x0, [x1]`), NISV post-index
//! (`ldr/str x0, [x1], #8`), GPR pair (`ldp/stp x0, x2, [x1]`), SIMD pair
//! (`ldp/stp q0, q1, [x1]`)} x {next page unmapped, read-only, EL1-only from
//! EL0, mapped to RAM, mapped to a hole (an IPA with nothing behind it),
//! mapped to another device page} x {load, store}.
//!
//! The first page (VA page A) maps a page of the test device's data window;
//! the access starts 4 bytes (8 for the SIMD pair) before its end, so its first
//! element crosses into page B. Each case runs twice from the same register
//! state: once with page A mapped to a RAM page holding the same bytes (and,
//! for "another device", page B mapped to a RAM copy of that device page), where
//! the CPU itself does (or faults) the access: the reference; once on the
//! device. Compared: ESR_EL1, FAR_EL1 (by the distance between the two page-A
//! VAs), ELR_EL1, x0-x30, q0-q31, the bytes of both pages around the boundary,
//! and the window page that follows page A in IPA space (which the access does
//! not map, so it must never change). Independently of the reference, each
//! case is checked against the architecture: a fault iff page B is unmapped,
//! read-only for a store, EL1-only from EL0, or a hole; EC 0x24 from EL0 and
//! 0x25 from EL1; DFSC 0x07 (level-3 translation), 0x0F (level-3 permission)
//! or 0x10 (synchronous external abort); WnR for stores; FAR = the start of
//! page B (the first byte of the faulting piece); ELR = the instruction; and on
//! a fault nothing written. ESR is compared in its defined low 32 bits with
//! `ubfx`-style field extraction, so the guest does not depend on how a
//! hypervisor fills RES0 bits.
//!
//! The "hole" case has no reference (the access reaches the VMM on every
//! run), so only the architectural checks apply to it.

#![no_std]
#![no_main]

use guest_rt::mmu::{self, Attr, Granule, Perm};
use guest_rt::rng::Rng;
use guest_rt::run::{self, RunState, SPSR_EL1T_MASKED, SVC_WORD};
use guest_rt::{Global, println, sysreg, testdev};

const PAGE: u64 = 0x1000;
/// Offset of page A in the test device's data window, and of the window page
/// that follows it in IPA space (never mapped by the access).
const DEV_A: u64 = 0x4000;
const DEV_NEXT: u64 = DEV_A + PAGE;
/// "Another device": a window page that is not the IPA-next one.
const DEV_B: u64 = 0x9000;
/// An IPA with neither RAM nor a device (docs/guest-interface.md).
const HOLE: u64 = 0x0F00_0000;
/// VA of the first case pair; each case uses two pages at `VA_BASE + i * 0x10000`.
const VA_BASE: u64 = 0x20_0000_0000;
/// VA of the EL0 alias of the code page (read-only, executable at EL0).
const CODE_EL0_VA: u64 = 0x21_0000_0000;
/// SPSR for EL0t with D, A, I, F masked.
const SPSR_EL0T_MASKED: u64 = 0xf << 6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Isv,
    Post,
    Pair,
    SimdPair,
}

impl Form {
    const ALL: [Form; 4] = [Form::Isv, Form::Post, Form::Pair, Form::SimdPair];

    fn name(self) -> &'static str {
        match self {
            Form::Isv => "isv1-single",
            Form::Post => "nisv-post-index",
            Form::Pair => "ldp-stp",
            Form::SimdPair => "simd-pair",
        }
    }

    /// The instruction word (base x1).
    fn word(self, store: bool) -> u32 {
        match (self, store) {
            (Form::Isv, false) => 0xf940_0020,      // ldr x0, [x1]
            (Form::Isv, true) => 0xf900_0020,       // str x0, [x1]
            (Form::Post, false) => 0xf840_8420,     // ldr x0, [x1], #8
            (Form::Post, true) => 0xf800_8420,      // str x0, [x1], #8
            (Form::Pair, false) => 0xa940_0820,     // ldp x0, x2, [x1]
            (Form::Pair, true) => 0xa900_0820,      // stp x0, x2, [x1]
            (Form::SimdPair, false) => 0xad40_0420, // ldp q0, q1, [x1]
            (Form::SimdPair, true) => 0xad00_0420,  // stp q0, q1, [x1]
        }
    }

    /// How far before the end of page A the access starts (the first element
    /// crosses into page B).
    fn back(self) -> u64 {
        match self {
            Form::SimdPair => 8,
            _ => 4,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Unmapped,
    ReadOnly,
    El1Only,
    Ram,
    Hole,
    Device,
}

impl Next {
    const ALL: [Next; 6] = [
        Next::Unmapped,
        Next::ReadOnly,
        Next::El1Only,
        Next::Ram,
        Next::Hole,
        Next::Device,
    ];

    fn name(self) -> &'static str {
        match self {
            Next::Unmapped => "next-unmapped",
            Next::ReadOnly => "next-read-only",
            Next::El1Only => "next-el1-only-from-el0",
            Next::Ram => "next-ram",
            Next::Hole => "next-hole",
            Next::Device => "next-other-device",
        }
    }

    /// The architectural fault: (DFSC) or None.
    fn fault(self, store: bool) -> Option<u64> {
        match self {
            Next::Unmapped => Some(0x07),
            Next::ReadOnly if store => Some(0x0f),
            Next::El1Only => Some(0x0f),
            Next::Hole => Some(0x10),
            _ => None,
        }
    }

    fn el0(self) -> bool {
        self == Next::El1Only
    }
}

#[repr(C, align(4096))]
struct Pages([[u8; 4096]; 8]);

/// RAM pages: 0 code, 1 reference page A, 2 page B (RAM / read-only /
/// EL1-only / RAM copy of the other device page), 3-4 images.
static PAGES: Global<Pages> = Global::new(Pages([[0; 4096]; 8]));
const P_CODE: usize = 0;
const P_REF_A: usize = 1;
const P_B: usize = 2;
const P_IMG_A: usize = 3;
const P_IMG_B: usize = 4;
const P_IMG_NEXT: usize = 5;
const P_SCRATCH: usize = 6;

fn page(i: usize) -> u64 {
    // SAFETY: only the address is taken.
    unsafe { (*PAGES.get()).0.as_ptr().add(i) as u64 }
}

fn bytes(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: callers pass addresses inside PAGES (identity-mapped RAM).
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// VA of page A for case slot `slot` and run `dev` (1) or reference (0).
fn va_a(slot: u64, dev: bool) -> u64 {
    VA_BASE + slot * 0x1_0000 + if dev { 0x8000 } else { 0 }
}

fn map_case(t: &mut mmu::Tables, slot: u64, next: Next) -> Result<(), mmu::MapError> {
    let win = testdev::WINDOW;
    for dev in [false, true] {
        let a = va_a(slot, dev);
        let a_pa = if dev { win + DEV_A } else { page(P_REF_A) };
        t.map_perm(a, a_pa, PAGE, Attr::Normal, Perm::All)?;
        let b = a + PAGE;
        match next {
            Next::Unmapped => {}
            Next::ReadOnly => t.map_perm(b, page(P_B), PAGE, Attr::Normal, Perm::ReadOnly)?,
            Next::El1Only => t.map_perm(b, page(P_B), PAGE, Attr::Normal, Perm::El1)?,
            Next::Ram => t.map_perm(b, page(P_B), PAGE, Attr::Normal, Perm::All)?,
            Next::Hole => t.map_perm(b, HOLE, PAGE, Attr::Normal, Perm::All)?,
            Next::Device => {
                let pa = if dev { win + DEV_B } else { page(P_B) };
                t.map_perm(b, pa, PAGE, Attr::Normal, Perm::All)?
            }
        }
    }
    Ok(())
}

/// What one run leaves behind.
struct After {
    f: run::Outcome,
    /// The last 16 bytes of page A and the first 32 of page B's target.
    a_tail: [u8; 16],
    b_head: [u8; 32],
    /// The first 32 bytes of the window page after page A.
    next_head: [u8; 32],
}

fn fill_images(rng: &mut Rng) {
    for p in [P_IMG_A, P_IMG_B, P_IMG_NEXT] {
        for b in bytes(page(p), PAGE as usize).iter_mut() {
            *b = rng.next_u64() as u8;
        }
    }
}

/// Put the images in place: page A (RAM and device), page B's target, and the
/// window page after page A.
fn reset(next: Next) -> bool {
    let (ia, ib) = (page(P_IMG_A), page(P_IMG_B));
    bytes(page(P_REF_A), PAGE as usize).copy_from_slice(bytes(ia, PAGE as usize));
    bytes(page(P_B), PAGE as usize).copy_from_slice(bytes(ib, PAGE as usize));
    sysreg::clean_inval(page(P_REF_A), 2 * PAGE);
    let mut ok =
        testdev::to_device(ia, DEV_A, PAGE) && testdev::to_device(page(P_IMG_NEXT), DEV_NEXT, PAGE);
    if next == Next::Device {
        ok &= testdev::to_device(ib, DEV_B, PAGE);
    }
    ok
}

fn capture(next: Next, dev: bool, f: run::Outcome) -> After {
    let mut a_tail = [0u8; 16];
    let mut b_head = [0u8; 32];
    let mut next_head = [0u8; 32];
    let s = page(P_SCRATCH);
    if dev {
        testdev::from_device(s, DEV_A + PAGE - 16, 16);
        a_tail.copy_from_slice(bytes(s, 16));
    } else {
        a_tail.copy_from_slice(bytes(page(P_REF_A) + PAGE - 16, 16));
    }
    if dev && next == Next::Device {
        testdev::from_device(s, DEV_B, 32);
        b_head.copy_from_slice(bytes(s, 32));
    } else {
        b_head.copy_from_slice(bytes(page(P_B), 32));
    }
    testdev::from_device(s, DEV_NEXT, 32);
    next_head.copy_from_slice(bytes(s, 32));
    After {
        f,
        a_tail,
        b_head,
        next_head,
    }
}

fn start_state(rng: &mut Rng, el0: bool, code: u64) -> RunState {
    let mut st = RunState::zero();
    let mut x = [0u64; 31];
    for v in x.iter_mut() {
        *v = rng.reg_value();
    }
    st.sctlr = run::canonical_sctlr();
    st.store_x(&x);
    for v in st.v.iter_mut() {
        *v = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    }
    st.sp = page(P_SCRATCH) + PAGE;
    st.elr = code;
    st.spsr = if el0 {
        SPSR_EL0T_MASKED
    } else {
        SPSR_EL1T_MASKED
    };
    st
}

/// Low 32 bits of ESR_EL1: EC, IL, ISS (bits 63:32 are RES0/ISS2 here).
fn esr32(esr: u64) -> u64 {
    esr & 0xffff_ffff
}

struct Case {
    form: Form,
    next: Next,
    store: bool,
    slot: u64,
}

impl Case {
    fn label(&self) -> (&'static str, &'static str, &'static str) {
        (
            self.form.name(),
            self.next.name(),
            if self.store { "store" } else { "load" },
        )
    }
}

/// Run one case; returns whether it passed (printing why not).
fn run_case(c: &Case, rng: &mut Rng) -> bool {
    let (fname, nname, dir) = c.label();
    let el0 = c.next.el0();
    let code_pa = page(P_CODE);
    let code = if el0 { CODE_EL0_VA } else { code_pa };
    bytes(code_pa, 8)[..4].copy_from_slice(&c.form.word(c.store).to_le_bytes());
    bytes(code_pa, 8)[4..].copy_from_slice(&SVC_WORD.to_le_bytes());
    sysreg::sync_icache(code_pa, 8);

    fill_images(rng);
    let st = start_state(rng, el0, code);
    let back = c.form.back();
    let base_ref = va_a(c.slot, false) + PAGE - back;
    let base_dev = va_a(c.slot, true) + PAGE - back;
    let delta = base_dev - base_ref;

    let fail = |what: &str, a: u64, b: u64| {
        println!(
            "straddle: FAIL {} {} {}: {} ({:#x} vs {:#x})",
            fname, nname, dir, what, a, b
        );
    };
    let mut ok = true;

    // Reference run (not for the hole: nothing but the VMM can answer it).
    let reference = if c.next == Next::Hole {
        None
    } else {
        if !reset(c.next) {
            fail("test device copy failed", 0, 0);
            return false;
        }
        let mut s = st;
        let mut x = st.x;
        x[1] = base_ref;
        s.store_x(&x);
        let f = run::run(&s);
        Some(capture(c.next, false, f))
    };

    // Device run.
    if !reset(c.next) {
        fail("test device copy failed", 0, 0);
        return false;
    }
    let mut s = st;
    let mut x = s.x;
    x[1] = base_dev;
    s.store_x(&x);
    let f = run::run(&s);
    let d = capture(c.next, true, f);

    // The architecture.
    let b_va = va_a(c.slot, true) + PAGE;
    let ec = (d.f.esr >> 26) & 0x3f;
    let il = (d.f.esr >> 25) & 1;
    let wnr = (d.f.esr >> 6) & 1;
    let dfsc = d.f.esr & 0x3f;
    let img_a_tail = &bytes(page(P_IMG_A) + PAGE - 16, 16)[..];
    let img_b_head = &bytes(page(P_IMG_B), 32)[..];
    let img_next = &bytes(page(P_IMG_NEXT), 32)[..];
    match c.next.fault(c.store) {
        Some(want_dfsc) => {
            let want_ec = if el0 { 0x24 } else { 0x25 };
            if d.f.done() {
                fail("no exception, expected a data abort", d.f.esr, want_dfsc);
                ok = false;
            } else {
                if ec != want_ec || il != 1 {
                    fail("EC/IL", d.f.esr, want_ec);
                    ok = false;
                }
                if dfsc != want_dfsc {
                    fail("DFSC", dfsc, want_dfsc);
                    ok = false;
                }
                if wnr != u64::from(c.store) {
                    fail("WnR", wnr, u64::from(c.store));
                    ok = false;
                }
                if (d.f.esr >> 10) & 1 != 0 {
                    fail("FnV set: FAR not valid", d.f.esr, 0);
                    ok = false;
                }
                if d.f.far != b_va {
                    fail("FAR is not the faulting piece's VA", d.f.far, b_va);
                    ok = false;
                }
                if d.f.elr != code {
                    fail("ELR", d.f.elr, code);
                    ok = false;
                }
                if d.f.x[1] != base_dev {
                    fail(
                        "base register changed by a faulting access",
                        d.f.x[1],
                        base_dev,
                    );
                    ok = false;
                }
            }
            if d.a_tail != img_a_tail || d.b_head != img_b_head {
                fail("memory or device written by a faulting access", 0, 0);
                ok = false;
            }
        }
        None => {
            if !d.f.done() {
                fail("unexpected exception (ESR, FAR)", d.f.esr, d.f.far);
                ok = false;
            }
        }
    }
    if d.next_head != img_next {
        fail("the IPA-next window page was written", 0, 0);
        ok = false;
    }

    // The CPU's own result.
    if let Some(r) = reference {
        if esr32(r.f.esr) != esr32(d.f.esr) {
            fail("ESR differs from the CPU's", d.f.esr, r.f.esr);
            ok = false;
        }
        let far_ok = if r.f.done() {
            true
        } else {
            d.f.far == r.f.far.wrapping_add(delta)
        };
        if !far_ok {
            fail("FAR differs from the CPU's (+delta)", d.f.far, r.f.far);
            ok = false;
        }
        if r.f.elr != d.f.elr {
            fail("ELR differs from the CPU's", d.f.elr, r.f.elr);
            ok = false;
        }
        for i in 0..31 {
            let (rv, dv) = (r.f.x[i], d.f.x[i]);
            let same = if i == 1 {
                dv == rv.wrapping_add(delta)
            } else {
                dv == rv
            };
            if !same {
                println!(
                    "straddle: FAIL {} {} {}: x{} = {:#x}, the CPU gave {:#x}",
                    fname, nname, dir, i, dv, rv
                );
                ok = false;
            }
        }
        for i in 0..32 {
            if r.f.v[i] != d.f.v[i] {
                println!(
                    "straddle: FAIL {} {} {}: q{} = {:#x}, the CPU gave {:#x}",
                    fname, nname, dir, i, d.f.v[i], r.f.v[i]
                );
                ok = false;
            }
        }
        // Memory is compared only when the CPU's access completed: for a
        // store that faults, the Arm ARM leaves the locations the instruction
        // would have written UNKNOWN when it is made of more than one
        // single-copy atomic access (QEMU, for instance, writes the first
        // 8 bytes of a Q element that crosses into a faulting page), and the
        // emulator's choice, nothing written, is checked above.
        if r.f.done() && (r.a_tail != d.a_tail || r.b_head != d.b_head) {
            println!(
                "straddle: FAIL {} {} {}: memory differs from the CPU's: A tail {:02x?} vs {:02x?}, B head {:02x?} vs {:02x?}",
                fname, nname, dir, d.a_tail, r.a_tail, d.b_head, r.b_head
            );
            ok = false;
        }
    }
    println!(
        "straddle: {} {} {} {}: ESR {:#x} FAR {:#x} ELR {:#x}{}",
        if ok { "PASS" } else { "FAIL" },
        fname,
        nname,
        dir,
        esr32(d.f.esr),
        d.f.far,
        d.f.elr,
        if d.f.done() { " (completed)" } else { "" }
    );
    ok
}

fn setup_tables() -> Result<(), mmu::MapError> {
    let mut t = mmu::standard(Granule::K4, Attr::Normal)?;
    for (slot, next) in Next::ALL.iter().enumerate() {
        map_case(&mut t, slot as u64, *next)?;
    }
    t.map_perm(
        CODE_EL0_VA,
        page(P_CODE),
        PAGE,
        Attr::Normal,
        Perm::ReadOnly,
    )?;
    t.enable();
    Ok(())
}

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    println!("straddle: page-crossing device accesses (issue 11)");
    if !sysreg::has_gran4() {
        println!("straddle: FAIL: no 4 KiB granule");
        return 1;
    }
    if let Err(e) = setup_tables() {
        println!("straddle: FAIL: page tables: {:?}", e);
        return 1;
    }
    let mut rng = Rng::new(0x7374_7261_6464_6c65);
    let (mut pass, mut failed) = (0u32, 0u32);
    for form in Form::ALL {
        for (slot, next) in Next::ALL.iter().enumerate() {
            for store in [false, true] {
                let c = Case {
                    form,
                    next: *next,
                    store,
                    slot: slot as u64,
                };
                if run_case(&c, &mut rng) {
                    pass += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    println!("straddle: {} passed, {} failed", pass, failed);
    u8::from(failed != 0)
}
