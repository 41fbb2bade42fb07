// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Running code from a chosen register state, and the synchronous-exception
//! handler.
//!
//! [`run`] enters a [`RunState`] at EL1t (so the code under test uses SP_EL0 as
//! its stack pointer and the handler keeps SP_EL1) through `rt_run`; the code
//! ends with `svc #SVC_DONE`, or faults. Either way the vector saves the whole
//! state into a [`Frame`] and the handler hands it back as the run's [`Outcome`].
//!
//! Outside [`run`], a synchronous exception is either expected ([`expect_fault`]:
//! recorded and skipped, so a guest can check an injected abort) or reported in
//! full and the guest exits with status 98.

use crate::{Global, println, psci};
use core::sync::atomic::{AtomicBool, Ordering};

/// The immediate of the `svc` that ends a test snippet.
pub const SVC_DONE: u32 = 0x77;
/// `svc #SVC_DONE`.
pub const SVC_WORD: u32 = 0xd400_0001 | (SVC_DONE << 5);
/// ESR_EL1 of `svc #SVC_DONE` taken from AArch64 (EC 0x15, IL 1).
pub const ESR_SVC_DONE: u64 = (0x15 << 26) | (1 << 25) | SVC_DONE as u64;

/// The state the vectors save (layout shared with the assembly in [`crate::boot`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    /// SP_EL0 (the stack pointer of the code under test).
    pub sp_el0: u64,
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1 (NZCV in bits 31:28).
    pub spsr: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// q0..q31.
    pub v: [u128; 32],
}

impl Frame {
    /// An all-zero frame.
    pub const fn zero() -> Self {
        Self {
            x: [0; 31],
            sp_el0: 0,
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            v: [0; 32],
        }
    }

    /// The exception class, ESR_EL1.EC.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// True when the run ended with the `svc` that closes a snippet.
    pub fn done(&self) -> bool {
        self.esr == ESR_SVC_DONE
    }
}

/// A register state for [`run`] (layout shared with `rt_run`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RunState {
    /// x0..x30 as `rt_run` loads them (byte-swapped when the state runs with
    /// big-endian data: see [`RunState::store_x`]).
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// Where to start (ELR_EL1).
    pub elr: u64,
    /// SPSR_EL1: EL1t, DAIF masked, NZCV from the caller.
    pub spsr: u64,
    /// SCTLR_EL1 while the code runs.
    pub sctlr: u64,
    /// Padding (keeps `v` 16-byte aligned).
    pub pad: u64,
    /// q0..q31.
    pub v: [u128; 32],
}

/// SPSR `M[3:0]` for EL1t, plus D, A, I, F masked.
pub const SPSR_EL1T_MASKED: u64 = 0b0100 | (0xf << 6);

/// SCTLR_EL1.EE: big-endian data at EL1 (and big-endian stage-1 table walks).
pub const SCTLR_EE: u64 = 1 << 25;
/// SCTLR_EL1.M: stage-1 MMU enable.
pub const SCTLR_M: u64 = 1;
/// SCTLR_EL1.nAA (FEAT_LSE2): no Alignment fault for an unaligned
/// load-acquire/store-release that crosses a 16-byte boundary. The runtime
/// clears it at boot ([`crate::boot`]).
pub const SCTLR_NAA: u64 = 1 << 6;

impl RunState {
    /// An all-zero state.
    pub const fn zero() -> Self {
        Self {
            x: [0; 31],
            sp: 0,
            elr: 0,
            spsr: 0,
            sctlr: 0,
            pad: 0,
            v: [0; 32],
        }
    }

    /// Stores general register values, byte-swapping them when `sctlr` selects
    /// big-endian data: `rt_run` loads x0-x30 after it has switched SCTLR_EL1.
    pub fn store_x(&mut self, x: &[u64; 31]) {
        let be = self.sctlr & SCTLR_EE != 0;
        for (d, s) in self.x.iter_mut().zip(x.iter()) {
            *d = if be { s.swap_bytes() } else { *s };
        }
    }
}

static RUN_ACTIVE: AtomicBool = AtomicBool::new(false);
static RESULT: Global<Frame> = Global::new(Frame::zero());
static STATE: Global<RunState> = Global::new(RunState::zero());
static JMP: Global<crate::boot::JmpBuf> = Global::new(crate::boot::JmpBuf([0; 22]));

/// The outcome of a [`run`]: the state when the first exception was taken.
pub type Outcome = Frame;

/// Runs `state` until its first exception and returns the state at that point.
pub fn run(state: &RunState) -> Outcome {
    let st = STATE.get();
    // SAFETY: STATE is only used here and by rt_run, which this function calls;
    // no reference to it outlives this statement.
    unsafe { st.write(*state) };
    if state.sctlr & (SCTLR_M | SCTLR_EE) != canonical_sctlr() & (SCTLR_M | SCTLR_EE) {
        // The run sees memory with other attributes or endianness: make the
        // state reach the point of coherency.
        crate::sysreg::clean_inval(st as u64, core::mem::size_of::<RunState>() as u64);
    }
    RUN_ACTIVE.store(true, Ordering::SeqCst);
    // SAFETY: rt_run only returns through rt_resume, which restores every
    // callee-saved register and SP from JMP; the code it enters was prepared by
    // the caller and ends in an exception, which the vectors catch.
    unsafe { crate::boot::rt_run(st, JMP.get()) };
    RUN_ACTIVE.store(false, Ordering::SeqCst);
    // SAFETY: the handler wrote RESULT before resuming here; no other reference.
    unsafe { RESULT.get().read() }
}

/// The canonical SCTLR_EL1 (TPIDRRO_EL0), which the vectors restore.
pub fn canonical_sctlr() -> u64 {
    crate::read_sysreg!("tpidrro_el0")
}

/// Sets SCTLR_EL1 and its canonical copy.
pub fn set_sctlr(v: u64) {
    // SAFETY: the callers only change the MMU/cache enables with valid page
    // tables in place (see crate::mmu); TPIDRRO_EL0 is this runtime's own.
    unsafe {
        core::arch::asm!("msr tpidrro_el0, {0}", "msr sctlr_el1, {0}", "isb", in(reg) v,
            options(nostack));
    }
}

/// A synchronous exception recorded by [`expect_fault`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Fault {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1 (the faulting instruction).
    pub elr: u64,
}

static EXPECT: AtomicBool = AtomicBool::new(false);
static FAULT: Global<Option<Fault>> = Global::new(None);

/// Runs `f` with synchronous exceptions from EL1 recorded and skipped (ELR += 4)
/// instead of reported; returns the first one, if any.
pub fn expect_fault(f: impl FnOnce()) -> Option<Fault> {
    // SAFETY: single-threaded; the handler only writes FAULT while EXPECT is set.
    unsafe { FAULT.get().write(None) };
    EXPECT.store(true, Ordering::SeqCst);
    f();
    EXPECT.store(false, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { FAULT.get().read() }
}

/// Called by the vectors with the saved frame and the vector number (0-15).
/// Returns 0 to resume the frame, 1 to resume the caller of `rt_run`.
#[unsafe(no_mangle)]
extern "C" fn rt_exception(frame: &mut Frame, kind: u64) -> u64 {
    if RUN_ACTIVE.load(Ordering::SeqCst) {
        // SAFETY: RESULT is read by `run` only after this handler resumed it.
        unsafe { RESULT.get().write(*frame) };
        return 1;
    }
    let sync_current = kind == 4;
    if sync_current && EXPECT.load(Ordering::SeqCst) {
        // SAFETY: single-threaded; `expect_fault` reads it after `f` returns.
        let slot = unsafe { &mut *FAULT.get() };
        if slot.is_none() {
            *slot = Some(Fault {
                esr: frame.esr,
                far: frame.far,
                elr: frame.elr,
            });
        }
        frame.elr = frame.elr.wrapping_add(4);
        return 0;
    }
    println!(
        "UNEXPECTED EXCEPTION: vector {} ESR {:#x} (EC {:#x}) FAR {:#x} ELR {:#x} SPSR {:#x}",
        kind,
        frame.esr,
        frame.ec(),
        frame.far,
        frame.elr,
        frame.spsr
    );
    for i in (0..31).step_by(2) {
        if i + 1 < 31 {
            println!(
                "  x{:<2} {:#018x}  x{:<2} {:#018x}",
                i,
                frame.x[i],
                i + 1,
                frame.x[i + 1]
            );
        } else {
            println!("  x{:<2} {:#018x}", i, frame.x[i]);
        }
    }
    psci::exit(98)
}
