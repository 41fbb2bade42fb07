// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `abort`: touches 0x0F00_0000, where there is neither RAM nor a device, with
//! `str x0, [x1], #8` (post-index: no valid syndrome, so a KVM_EXIT_ARM_NISV).
//!
//! Under `--on-nisv emulate` (and `inject`) the VMM injects a synchronous
//! external abort; the exception handler checks ESR_EL1.EC = 0x25 (data abort,
//! same EL), DFSC = 0x10 (synchronous external abort, not on a table walk),
//! FnV = 0 and FAR_EL1 = 0x0F00_0000, and the guest exits with 0. Under
//! `--on-nisv stop` the VMM ends the VM itself and this guest never reports.

#![no_std]
#![no_main]

use guest_rt::{println, run};

/// The address with no device behind it.
const HOLE: u64 = 0x0F00_0000;

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    println!("abort: str x0, [x1], #8 with x1 = {:#x}", HOLE);
    let mut x1 = HOLE;
    let fault = run::expect_fault(|| {
        // SAFETY: the store targets an address with nothing behind it; the VMM
        // injects an abort, which the handler records and skips.
        unsafe {
            core::arch::asm!("str x0, [x1], #8", in("x0") 0x1122_3344_5566_7788u64, inout("x1") x1,
                options(nostack));
        }
    });
    let Some(f) = fault else {
        println!(
            "abort: FAIL: the store completed without an exception (x1 = {:#x})",
            x1
        );
        return 1;
    };
    let ec = (f.esr >> 26) & 0x3f;
    let dfsc = f.esr & 0x3f;
    let fnv = (f.esr >> 10) & 1;
    let wnr = (f.esr >> 6) & 1;
    println!(
        "abort: exception ESR {:#x} (EC {:#x} DFSC {:#x} WnR {} FnV {}) FAR {:#x} ELR {:#x}",
        f.esr, ec, dfsc, wnr, fnv, f.far, f.elr
    );
    let mut ok = true;
    if ec != 0x25 {
        println!(
            "abort: FAIL: EC {:#x}, expected 0x25 (data abort from the current EL)",
            ec
        );
        ok = false;
    }
    if dfsc != 0x10 {
        println!(
            "abort: FAIL: DFSC {:#x}, expected 0x10 (synchronous external abort)",
            dfsc
        );
        ok = false;
    }
    if fnv == 0 && f.far != HOLE {
        println!("abort: FAIL: FAR {:#x}, expected {:#x}", f.far, HOLE);
        ok = false;
    }
    if fnv != 0 {
        println!("abort: FAIL: FAR not valid (FnV set)");
        ok = false;
    }
    // The faulting store must not have written back its base register.
    if x1 != HOLE {
        println!(
            "abort: FAIL: x1 = {:#x} after the aborted store, expected {:#x}",
            x1, HOLE
        );
        ok = false;
    }
    if ok {
        println!("abort: PASS: synchronous external abort at {:#x}", HOLE);
        0
    } else {
        1
    }
}
