// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runtime shared by the kvm-nisv bare-metal test guests.
//!
//! The machine is the one `kvm-nisv-vmm` builds (docs/guest-interface.md): a flat
//! image at IPA 0x8000_0000 entered at EL1h with the MMU off and x0 = DTB, a
//! ns16550a UART at 0x0900_0000, the test device's data window at 0x7FF0_0000 and
//! its control registers at 0x0A00_0000, PSCI through `hvc #0`.
//!
//! What it provides: the entry code and exception vectors ([`boot`]), console
//! output ([`uart`], [`println!`]), PSCI exit ([`psci`]), the test device
//! ([`testdev`]), stage-1 page tables ([`mmu`]), the device tree's bootargs
//! ([`dtb`]), a "run one instruction from a given register state and capture the
//! state afterwards" primitive ([`run`]), a load/store instruction generator
//! ([`insn`]), the run-twice differential engine built on them ([`engine`]) and
//! the Device-memory alignment checks ([`devalign`]).

#![no_std]
#![deny(missing_docs)]

pub mod boot;
pub mod devalign;
pub mod dtb;
pub mod engine;
pub mod insn;
pub mod mmu;
pub mod psci;
pub mod rng;
pub mod run;
pub mod sysreg;
pub mod testdev;
pub mod uart;

use core::cell::UnsafeCell;

/// A global the single-threaded guest shares between its Rust code and its
/// exception handler. Only one vCPU ever runs guest code, and the handler runs
/// with interrupts masked, so accesses never overlap; every access goes through
/// a raw pointer.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: the guests run on one vCPU with interrupts masked; there is no
// concurrent access (see the type's documentation).
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// A global holding `v`.
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }

    /// A raw pointer to the value.
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    psci::exit(101)
}

static DTB: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

unsafe extern "Rust" {
    /// The guest program, defined by each binary; its return value is the PSCI
    /// exit status.
    safe fn guest_main() -> u8;
}

/// The device tree address the guest was entered with (x0).
pub fn dtb_addr() -> u64 {
    DTB.load(core::sync::atomic::Ordering::Relaxed)
}

/// The kernel command line (`/chosen/bootargs`), or "" when there is none.
pub fn bootargs() -> &'static str {
    // SAFETY: the VMM passes the address of a device tree it placed in RAM
    // (docs/guest-interface.md); `from_addr` checks the magic and size first.
    unsafe { dtb::Fdt::from_addr(dtb_addr()) }
        .and_then(|f| f.bootargs())
        .unwrap_or("")
}

/// Called by `_start` with the boot x0.
#[unsafe(no_mangle)]
extern "C" fn rt_start(dtb: u64) -> ! {
    DTB.store(dtb, core::sync::atomic::Ordering::Relaxed);
    let status = guest_main();
    psci::exit(status)
}
