// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Alignment of ordinary loads and stores to Device memory.
//!
//! The rule (Arm ARM DDI 0487, "Alignment of data accesses"; pseudocode
//! `Mem[]` and `AArch64.S1HasAlignmentFault`): an access to any type of Device
//! memory that is not aligned to the size of **the element it accesses** takes
//! an Alignment fault (DFSC 0b100001), ahead of permission and stage-2 faults.
//! The element is what one `Mem[address, size, accdesc]` call of the
//! instruction's pseudocode reads or writes: each lane of LD1-LD4/ST1-ST4
//! (multiple and single structures) and of LD1R-LD4R, each register of a pair
//! (`Mem[]` checks `size DIV 2` when `accdesc.ispair`), the whole register of
//! LDR/STR. "For these instructions, the definition of an unaligned access is
//! based on the size of the accessed elements, not the overall size of the
//! memory access. This affects SIMD and SVE element and structure loads and
//! stores, and also load/store pair instructions." So `ld1 {v0.4s}, [x1]` with
//! x1 = 4 mod 8 is aligned (four 4-byte elements) and never faults; with x1 = 2
//! mod 4 it faults; `ldr q0, [x1]` with x1 = 8 mod 16 faults.
//!
//! Two checks are built from the same [`SHAPES`]:
//!
//! - [`cpu_probe`]: the CPU alone, on RAM with Device attributes (no stage-2
//!   fault, so no exit can reach the VMM). An element-aligned access must not
//!   fault: the Arm ARM allows no choice there. A misaligned one must fault,
//!   except that on RAM whose stage-2 MemAttr is 0b110 (FEAT_S2FWB, which KVM
//!   uses for guest RAM when the CPU has it) "it is CONSTRAINED UNPREDICTABLE
//!   whether the resultant stage 1 memory type generates a stage 1 Alignment
//!   fault" (Arm ARM D8.6, rule RRMTWN), so with FWB either outcome passes.
//! - [`window_check`] (MMU on): the test device's window, mapped Device, against
//!   the same instruction on Normal RAM. An element-aligned access completes
//!   with the RAM run's registers and memory; a misaligned one takes the
//!   Alignment fault with FAR = the address, nothing written. Whichever of the
//!   CPU (before stage 2) or the emulator (after the NISV exit) decides, the
//!   outcome is the architecture's; the shapes carry no valid syndrome (SIMD&FP,
//!   pairs, writeback), so every access that passes the CPU reaches the emulator.
//!
//! QEMU deviates (docs/compatibility-notes.md): 7.2 takes no Alignment fault
//! for any unaligned access to Device memory (it has no memory-type alignment
//! check; the emulator takes it after the exit); 10.0 turns LD1/ST1 (multiple
//! structures, one register per structure, little-endian) into 8-byte accesses
//! and checks those, so it faults element-aligned accesses at 4 mod 8 (and odd
//! .16B/.8B ones). [`CpuProbe::ld1_over_aligned`] reports the latter so the
//! generator can keep its Device-memory cases where the emulator gets them.

use crate::run::{self, Frame, RunState, SPSR_EL1T_MASKED, SVC_WORD};
use crate::{Global, println, sysreg, testdev};

/// One instruction and where it is placed.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// The A64 word; base register x1, data x2/x3 or v0/v1.
    pub word: u32,
    /// Its disassembly.
    pub name: &'static str,
    /// Offset of the address from a 16-byte aligned base.
    pub off: u64,
    /// Size of the elements it accesses (the alignment the rule asks for).
    pub esize: u64,
    /// Bytes it accesses from the address.
    pub len: u64,
    /// A store (WnR = 1 in the fault).
    pub store: bool,
    /// LD1/ST1 (multiple structures) with one register per structure, whose
    /// consecutive elements QEMU 10 merges into 8-byte accesses.
    pub ld1_multiple: bool,
}

impl Shape {
    /// Aligned to its element size: the Arm ARM forbids an Alignment fault.
    pub const fn aligned(&self) -> bool {
        self.off.is_multiple_of(self.esize)
    }
}

const fn s(
    word: u32,
    name: &'static str,
    off: u64,
    esize: u64,
    len: u64,
    store: bool,
    ld1_multiple: bool,
) -> Shape {
    Shape {
        word,
        name,
        off,
        esize,
        len,
        store,
        ld1_multiple,
    }
}

/// The shapes: element-aligned but not 8-byte aligned ones first, then
/// misaligned ones.
pub const SHAPES: [Shape; 22] = [
    s(0x4c40_7820, "ld1 {v0.4s}, [x1]", 4, 4, 16, false, true),
    s(0x4c00_7420, "st1 {v0.8h}, [x1]", 2, 2, 16, true, true),
    s(0x4c40_7020, "ld1 {v0.16b}, [x1]", 1, 1, 16, false, true),
    s(0x0c00_7820, "st1 {v0.2s}, [x1]", 4, 4, 8, true, true),
    s(
        0x4c40_a820,
        "ld1 {v0.4s, v1.4s}, [x1]",
        4,
        4,
        32,
        false,
        true,
    ),
    s(0x4c40_7c20, "ld1 {v0.2d}, [x1]", 8, 8, 16, false, true),
    s(
        0x4c40_8820,
        "ld2 {v0.4s, v1.4s}, [x1]",
        4,
        4,
        32,
        false,
        false,
    ),
    s(0x0d40_9020, "ld1 {v0.s}[1], [x1]", 4, 4, 4, false, false),
    s(0x4d40_c820, "ld1r {v0.4s}, [x1]", 4, 4, 4, false, false),
    s(0x2940_0c22, "ldp w2, w3, [x1]", 4, 4, 8, false, false),
    s(0xa940_0c22, "ldp x2, x3, [x1]", 8, 8, 16, false, false),
    s(0xf840_0422, "ldr x2, [x1], #0", 8, 8, 8, false, false),
    s(0x4c40_7820, "ld1 {v0.4s}, [x1]", 2, 4, 16, false, true),
    s(0x4c00_7420, "st1 {v0.8h}, [x1]", 1, 2, 16, true, true),
    s(0x4c40_7c20, "ld1 {v0.2d}, [x1]", 4, 8, 16, false, true),
    s(
        0x4c40_8820,
        "ld2 {v0.4s, v1.4s}, [x1]",
        2,
        4,
        32,
        false,
        false,
    ),
    s(0x0d40_9020, "ld1 {v0.s}[1], [x1]", 2, 4, 4, false, false),
    s(0x4d40_c820, "ld1r {v0.4s}, [x1]", 1, 4, 4, false, false),
    s(0x2940_0c22, "ldp w2, w3, [x1]", 2, 4, 8, false, false),
    s(0xa940_0c22, "ldp x2, x3, [x1]", 4, 8, 16, false, false),
    s(0x3dc0_0020, "ldr q0, [x1]", 8, 16, 16, false, false),
    s(0xf840_0422, "ldr x2, [x1], #0", 4, 8, 8, false, false),
];

/// Offset of the placements from the start of a region (16-byte aligned).
const AREA: u64 = 0x100;
/// Bytes of a region the shapes may touch (from its start).
pub const REGION: u64 = AREA + 0x40;

#[repr(C, align(4096))]
struct CodePage([u32; 1024]);

static CODE: Global<CodePage> = Global::new(CodePage([0; 1024]));

/// Runs `shape` at `base + AREA + shape.off` with fixed register values.
fn run_shape(shape: &Shape, base: u64) -> Frame {
    let code = CODE.get() as u64;
    // SAFETY: the code page is this module's own RAM; two words.
    unsafe {
        (code as *mut u32).write_volatile(shape.word);
        ((code + 4) as *mut u32).write_volatile(SVC_WORD);
    }
    sysreg::sync_icache(code, 8);
    let mut st = RunState::zero();
    st.sctlr = run::canonical_sctlr();
    let mut x = [0u64; 31];
    x[1] = base + AREA + shape.off;
    x[2] = 0x1122_3344_5566_7788;
    x[3] = 0x99aa_bbcc_ddee_ff00;
    st.store_x(&x);
    st.v[0] = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
    st.v[1] = 0x1f1e_1d1c_1b1a_1918_1716_1514_1312_1110;
    st.elr = code;
    st.spsr = SPSR_EL1T_MASKED;
    st.sp = crate::engine::ramside_pa() + 0x800;
    run::run(&st)
}

/// An Alignment fault (EC 0x25, DFSC 0x21) at `far` with WnR = `store`.
fn is_alignment_fault(f: &Frame, far: u64, store: bool) -> bool {
    f.ec() == 0x25 && f.esr & 0x3f == 0x21 && f.far == far && ((f.esr >> 6) & 1 == 1) == store
}

/// What [`cpu_probe`] found.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuProbe {
    /// Element-aligned LD1/ST1 (multiple structures, one register per
    /// structure) took an Alignment fault: the CPU checks them at 8 bytes
    /// (QEMU 10's deviation). No access of that kind that is not 8-byte aligned
    /// reaches the emulator on this CPU.
    pub ld1_over_aligned: bool,
    /// Outcomes the Arm ARM forbids.
    pub deviations: u32,
    /// Unexpected exceptions (not an Alignment fault at the address).
    pub errors: u32,
}

/// Runs every shape on `region`, RAM the caller maps with Device attributes
/// (or any RAM with the MMU off), at least [`REGION`] bytes, 16-byte aligned.
/// `fwb`: ID_AA64MMFR2_EL1.FWB != 0 (misaligned accesses may then go either
/// way, see the module documentation). Prints one line per shape.
pub fn cpu_probe(region: u64, fwb: bool) -> CpuProbe {
    let mut p = CpuProbe::default();
    for sh in SHAPES.iter() {
        let addr = region + AREA + sh.off;
        let f = run_shape(sh, region);
        let fault = !f.done();
        if fault && !is_alignment_fault(&f, addr, sh.store) {
            println!(
                "  {} at +{}: unexpected exception ESR {:#x} FAR {:#x}",
                sh.name, sh.off, f.esr, f.far
            );
            p.errors += 1;
            continue;
        }
        let verdict = if sh.aligned() {
            if fault {
                p.deviations += 1;
                if sh.ld1_multiple {
                    p.ld1_over_aligned = true;
                }
                "CPU DEVIATION: Alignment fault on an element-aligned access"
            } else {
                "ok"
            }
        } else if fault {
            "ok"
        } else if fwb {
            "no fault: permitted (stage-2 FWB, CONSTRAINED UNPREDICTABLE)"
        } else {
            p.deviations += 1;
            "CPU DEVIATION: no Alignment fault on a misaligned access"
        };
        println!(
            "  {} at {} mod 16 ({}-byte elements, {}): {} ({})",
            sh.name,
            sh.off,
            sh.esize,
            if sh.aligned() {
                "aligned"
            } else {
                "misaligned"
            },
            if fault { "Alignment fault" } else { "no fault" },
            verdict
        );
    }
    p
}

/// Runs every shape on the test device's window at `WINDOW + win_off` (mapped
/// at VA `win_va`, Device memory) and on Normal RAM at `ram` (both 16-byte
/// aligned, [`REGION`] bytes, same contents), and checks the window's outcome
/// against the architecture (see the module documentation). Shapes the CPU
/// itself faults although aligned (`probe.ld1_over_aligned`) cannot reach the
/// emulator and are reported, not checked (the probe already failed on them).
/// Returns the number of failures.
pub fn window_check(
    win_va: u64,
    win_off: u64,
    ram: u64,
    probe: &CpuProbe,
) -> Result<u32, &'static str> {
    let mut image = [0u8; REGION as usize];
    for (i, b) in image.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(0x31);
    }
    let mut failures = 0;
    for sh in SHAPES.iter() {
        if sh.aligned() && sh.ld1_multiple && probe.ld1_over_aligned && !sh.off.is_multiple_of(8) {
            println!(
                "  {} at {} mod 16: not checked (this CPU faults it before stage 2; see cpu-device-alignment)",
                sh.name, sh.off
            );
            continue;
        }
        // SAFETY: `ram` is REGION bytes of the caller's RAM.
        unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), ram as *mut u8, image.len()) };
        if !testdev::to_device(image.as_ptr() as u64, win_off, REGION) {
            return Err("bulk copy to the device failed");
        }
        let r = run_shape(sh, ram);
        if !r.done() {
            println!(
                "  {}: the run on Normal RAM faulted: ESR {:#x} FAR {:#x}",
                sh.name, r.esr, r.far
            );
            return Err("a shape faulted on Normal RAM");
        }
        let d = run_shape(sh, win_va);
        let mut dev = [0u8; REGION as usize];
        if !testdev::from_device(dev.as_mut_ptr() as u64, win_off, REGION) {
            return Err("bulk copy from the device failed");
        }
        let addr = win_va + AREA + sh.off;
        let ok = if sh.aligned() {
            // SAFETY: as above.
            let ram_after = unsafe { core::slice::from_raw_parts(ram as *const u8, image.len()) };
            d.done()
                && d.x[2] == r.x[2]
                && d.x[3] == r.x[3]
                && d.x[1].wrapping_sub(win_va) == r.x[1].wrapping_sub(ram)
                && d.v[0] == r.v[0]
                && d.v[1] == r.v[1]
                && dev[..] == ram_after[..]
        } else {
            is_alignment_fault(&d, addr, sh.store) && dev == image
        };
        let what = if sh.aligned() {
            "aligned: must complete"
        } else {
            "misaligned: must fault"
        };
        let verdict = if ok { "ok" } else { "WRONG" };
        if d.done() {
            println!(
                "  {} at {} mod 16 ({}): completed, {}",
                sh.name, sh.off, what, verdict
            );
        } else {
            println!(
                "  {} at {} mod 16 ({}): exception ESR {:#x} FAR {:#x}, {}",
                sh.name, sh.off, what, d.esr, d.far, verdict
            );
        }
        if !ok {
            failures += 1;
        }
    }
    Ok(failures)
}
