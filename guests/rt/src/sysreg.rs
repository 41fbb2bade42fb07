// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! System register access and cache maintenance.

/// Reads a system register by name.
#[macro_export]
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1-accessible system register has no side effects.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack));
        }
        v
    }};
}

/// ID_AA64ISAR0_EL1.Atomic (bits 23:20) >= 2: FEAT_LSE.
pub fn has_lse() -> bool {
    (read_sysreg!("id_aa64isar0_el1") >> 20) & 0xf >= 2
}

/// ID_AA64MMFR2_EL1.AT (bits 35:32) != 0: FEAT_LSE2 (unaligned exclusives,
/// atomics and load-acquire/store-release within 16 bytes; SCTLR_EL1.nAA).
pub fn has_lse2() -> bool {
    (read_sysreg!("id_aa64mmfr2_el1") >> 32) & 0xf != 0
}

/// ID_AA64MMFR2_EL1.FWB (bits 43:40) != 0: FEAT_S2FWB, which KVM uses for the
/// stage-2 mappings of guest RAM when the CPU has it (MemAttr 0b110).
pub fn has_s2fwb() -> bool {
    (read_sysreg!("id_aa64mmfr2_el1") >> 40) & 0xf != 0
}

/// ID_AA64MMFR0_EL1.BigEnd (bits 11:8) == 1: mixed-endian support at EL1.
pub fn has_bigend() -> bool {
    (read_sysreg!("id_aa64mmfr0_el1") >> 8) & 0xf == 1
}

/// ID_AA64MMFR0_EL1.TGran4 (bits 31:28) == 0 or 1: 4 KiB granule supported.
pub fn has_gran4() -> bool {
    let f = (read_sysreg!("id_aa64mmfr0_el1") >> 28) & 0xf;
    f == 0 || f == 1
}

/// ID_AA64MMFR0_EL1.TGran64 (bits 27:24) == 0: 64 KiB granule supported.
pub fn has_gran64() -> bool {
    (read_sysreg!("id_aa64mmfr0_el1") >> 24) & 0xf == 0
}

/// The DC ZVA block size in bytes, or `None` when DCZID_EL0.DZP prohibits it.
pub fn dczva_block() -> Option<u64> {
    let d = read_sysreg!("dczid_el0");
    if d & 0x10 != 0 {
        None
    } else {
        Some(4u64 << (d & 0xf))
    }
}

/// The smallest data cache line (CTR_EL0.DminLine) in bytes.
pub fn dcache_line() -> u64 {
    4 << ((read_sysreg!("ctr_el0") >> 16) & 0xf)
}

/// The smallest instruction cache line (CTR_EL0.IminLine) in bytes.
pub fn icache_line() -> u64 {
    4 << (read_sysreg!("ctr_el0") & 0xf)
}

/// The virtual counter (CNTVCT_EL0).
pub fn counter() -> u64 {
    // SAFETY: an ISB then a counter read; no memory effects.
    unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
    read_sysreg!("cntvct_el0")
}

/// The counter frequency (CNTFRQ_EL0) in Hz.
pub fn counter_freq() -> u64 {
    read_sysreg!("cntfrq_el0")
}

/// Makes `len` bytes of freshly written instructions at `addr` visible to
/// instruction fetch: DC CVAU, DSB ISH, IC IVAU, DSB ISH, ISB (Arm ARM B2.4.4,
/// "Concurrent modification and execution of instructions").
pub fn sync_icache(addr: u64, len: u64) {
    let dl = dcache_line();
    let il = icache_line();
    let end = addr.wrapping_add(len);
    let mut a = addr & !(dl - 1);
    while a < end {
        // SAFETY: cleaning a line of this program's own memory has no effect on
        // its contents.
        unsafe { core::arch::asm!("dc cvau, {}", in(reg) a, options(nostack)) };
        a += dl;
    }
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    let mut a = addr & !(il - 1);
    while a < end {
        // SAFETY: invalidating instruction cache lines has no effect on memory.
        unsafe { core::arch::asm!("ic ivau, {}", in(reg) a, options(nostack)) };
        a += il;
    }
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ish", "isb", options(nostack)) };
}

/// Cleans and invalidates `len` bytes at `addr` to the point of coherency
/// (DC CIVAC), so accesses made with the MMU or caches off see them.
pub fn clean_inval(addr: u64, len: u64) {
    let dl = dcache_line();
    let end = addr.wrapping_add(len);
    let mut a = addr & !(dl - 1);
    while a < end {
        // SAFETY: clean+invalidate keeps the memory's contents.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack)) };
        a += dl;
    }
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}
