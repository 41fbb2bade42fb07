// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `classes-*` guests: every decoder class against the test device (and the
//! vGIC distributor), with the MMU off or with the guest's own page tables.
//!
//! For each class, `classes.count` (default 24) generated instances per layout
//! run through the run-twice engine ([`guest_rt::engine`]): the state after the
//! device run must equal the state after the same instruction ran on RAM. On top
//! of that, fixed checks with values known in advance: an STP/LDP and an
//! ST1/LD1 of four registers straddling 0x8000_0000 (device then RAM), DC ZVA on
//! Device memory (an Alignment fault), the alignment of ordinary loads and
//! stores to Device memory on the CPU alone and through the window
//! ([`guest_rt::devalign`]), FEAT_LSE2 alignment, and a post-index `str` loop
//! programming `GICD_IROUTER<n>` read back with plain loads and with a
//! post-index `ldr` loop.

use guest_rt::engine::{self, Engine, Layout};
use guest_rt::insn::{self, Features};
use guest_rt::mmu::{self, Attr, Granule};
use guest_rt::rng::Rng;
use guest_rt::{devalign, dtb, println, run, sysreg, testdev};

/// How the guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MMU off: every data access is Device-nGnRnE.
    MmuOff,
    /// The guest's own page tables with this granule.
    MmuOn(Granule),
}

/// VA of the alias region: a RAM page, the first page of the data window, a RAM
/// page, all Normal memory.
pub const ALIAS_VA: u64 = 0x10_0000_0000;

/// VA of a RAM page mapped Device-nGnRE for the CPU-only alignment probe
/// ([`devalign::cpu_probe`]): RAM has a memslot, so no access to it exits.
pub const PROBE_VA: u64 = 0x13_0000_0000;

/// Offset in the data window of the [`devalign::window_check`] region (away
/// from the pages the engines and the other checks use).
const DEVALIGN_WIN_OFF: u64 = 0x4_0000;

/// Maps the alias region in `t` (RAM, device page at window offset 0, RAM).
pub fn map_alias(t: &mut mmu::Tables) -> Result<(), mmu::MapError> {
    let pg = t.granule().page();
    let (pre, post) = engine::devside_pa();
    t.map(ALIAS_VA, pre, pg, Attr::Normal)?;
    t.map(ALIAS_VA + pg, testdev::WINDOW, pg, Attr::Normal)?;
    t.map(ALIAS_VA + 2 * pg, post, pg, Attr::Normal)
}

/// The alias layout (see [`map_alias`]).
pub fn alias_layout(pg: u64, name: &'static str) -> Layout {
    Layout {
        name,
        ram_va: engine::ramside_pa(),
        dev_va: ALIAS_VA,
        pre: pg,
        page: pg,
        post: pg,
        dev_off: 0,
        device_attrs: false,
        sctlr: run::canonical_sctlr(),
        tail_unmapped: false,
    }
}

/// The features the CPU offers the generator.
pub fn features() -> Features {
    Features {
        lse: sysreg::has_lse(),
        zva: sysreg::dczva_block(),
        lse2: sysreg::has_lse2(),
        ld1_device_align: 1,
    }
}

/// Runs the guest; returns its exit status.
pub fn main(mode: Mode) -> u8 {
    let tag = match mode {
        Mode::MmuOff => "classes-mmu-off",
        Mode::MmuOn(Granule::K4) => "classes-mmu-on-4k",
        Mode::MmuOn(Granule::K64) => "classes-mmu-on-64k",
    };
    let args = guest_rt::bootargs();
    let seed = dtb::arg_u64(args, "classes.seed").unwrap_or(0x0C1A_55E5);
    let count = dtb::arg_u64(args, "classes.count").unwrap_or(24).max(1);
    let mut feat = features();
    println!(
        "{}: seed {:#x}, {} cases per class and layout, LSE {}, LSE2 {}, DC ZVA block {:?}",
        tag, seed, count, feat.lse, feat.lse2, feat.zva
    );
    let mut layouts: [Option<Layout>; 2] = [None, None];
    match mode {
        Mode::MmuOff => {
            layouts[0] = Some(Layout::identity(
                0x1000,
                run::canonical_sctlr(),
                true,
                "mmu-off",
            ));
        }
        Mode::MmuOn(g) => {
            let ok = match g {
                Granule::K4 => sysreg::has_gran4(),
                Granule::K64 => sysreg::has_gran64(),
            };
            if !ok {
                println!("{}: FAIL: the CPU does not support this granule", tag);
                return 2;
            }
            let tables = mmu::standard(g, Attr::Device).and_then(|mut t| {
                map_alias(&mut t)?;
                t.map(PROBE_VA, engine::devside_pa().1, g.page(), Attr::Device)?;
                Ok(t)
            });
            let tables = match tables {
                Ok(t) => t,
                Err(e) => {
                    println!("{}: FAIL: page tables: {:?}", tag, e);
                    return 2;
                }
            };
            tables.enable();
            println!(
                "{}: MMU on, {} KiB pages; window identity-mapped Device-nGnRE, alias at {:#x} Normal",
                tag,
                g.page() / 1024,
                ALIAS_VA
            );
            layouts[0] = Some(Layout::identity(
                g.page(),
                run::canonical_sctlr(),
                true,
                "device-ngnre",
            ));
            layouts[1] = Some(alias_layout(g.page(), "normal-alias"));
        }
    }
    let mut failures = 0u32;
    // What the CPU itself does with Device-memory alignment, before the engines
    // place their cases (an access the CPU faults never reaches the emulator).
    let probe_region = match mode {
        Mode::MmuOff => engine::devside_pa().1,
        Mode::MmuOn(_) => PROBE_VA,
    };
    let fwb = sysreg::has_s2fwb();
    println!(
        "  cpu-device-alignment: RAM at {:#x} with Device attributes, ID_AA64MMFR2_EL1.FWB {}",
        probe_region,
        u8::from(fwb)
    );
    let probe = devalign::cpu_probe(probe_region, fwb);
    if probe.ld1_over_aligned {
        feat.ld1_device_align = 8;
        println!(
            "  cpu-device-alignment: the CPU faults element-aligned LD1/ST1 (multiple structures) below 8 bytes; on Device memory the engines place them 8-byte aligned"
        );
    }
    failures += check(
        tag,
        "cpu-device-alignment",
        if probe.errors > 0 {
            Err("unexpected exceptions")
        } else if probe.deviations > 0 {
            Err(
                "the CPU deviates from the Arm ARM (see the lines above; docs/compatibility-notes.md)",
            )
        } else {
            Ok(())
        },
    );
    let mut rng = Rng::new(seed);
    let mut engines: [Option<Engine>; 2] = [None, None];
    for (e, l) in engines.iter_mut().zip(layouts.iter()) {
        *e = l.map(|l| Engine::new(l, feat, seed));
    }
    for class in insn::ALL {
        let (mut ran, mut skipped, mut mism, mut supported) = (0u64, 0u64, 0u64, false);
        for e in engines.iter_mut().flatten() {
            if !e.supports(class) {
                continue;
            }
            supported = true;
            for _ in 0..count {
                match e.run_class(&mut rng, class) {
                    engine::Verdict::Match => ran += 1,
                    engine::Verdict::Skipped => skipped += 1,
                    engine::Verdict::Mismatch => {
                        ran += 1;
                        mism += 1;
                    }
                }
            }
        }
        if !supported {
            if class == insn::Class::DcZva {
                continue; // checked below on Device memory
            }
            println!(
                "{}: class {}: SKIP (not supported by this CPU)",
                tag,
                class.name()
            );
            continue;
        }
        if mism == 0 && ran > 0 {
            println!(
                "{}: class {}: PASS ({} compared, {} skipped)",
                tag,
                class.name(),
                ran,
                skipped
            );
        } else {
            println!(
                "{}: class {}: FAIL ({} compared, {} mismatches, {} skipped)",
                tag,
                class.name(),
                ran,
                mism,
                skipped
            );
            failures += 1;
        }
    }
    failures += check(tag, "straddle-stp-ldp", straddle_pair());
    failures += check(tag, "straddle-st1-ld1", straddle_st1());
    failures += check(tag, "dc-zva-device", dczva_device(feat));
    if let Mode::MmuOn(g) = mode {
        let win = testdev::WINDOW + DEVALIGN_WIN_OFF;
        let r = devalign::window_check(win, DEVALIGN_WIN_OFF, engine::ramside_pa(), &probe)
            .and_then(|n| {
                if n == 0 {
                    Ok(())
                } else {
                    Err("outcome differs from the Arm ARM")
                }
            });
        failures += check(tag, "device-alignment", r);
        failures += check(tag, "lse2-alignment", lse2_alignment(feat, g.page()));
    }
    failures += check(tag, "gic-irouter", gic_irouter());
    let nisv = testdev::nisv_count();
    println!("{}: VMM reports {} NISV exits emulated", tag, nisv);
    if failures == 0 {
        println!("{}: PASS", tag);
        0
    } else {
        println!("{}: FAIL ({} checks failed)", tag, failures);
        1
    }
}

fn check(tag: &str, name: &str, r: Result<(), &'static str>) -> u32 {
    match r {
        Ok(()) => {
            println!("{}: check {}: PASS", tag, name);
            0
        }
        Err(e) => {
            println!("{}: check {}: FAIL: {}", tag, name, e);
            1
        }
    }
}

#[repr(C, align(64))]
struct Buf64([u64; 8]);

static BUF: guest_rt::Global<Buf64> = guest_rt::Global::new(Buf64([0; 8]));

fn buf() -> &'static mut [u64; 8] {
    // SAFETY: single-threaded; each check uses the buffer in turn.
    unsafe { &mut (*BUF.get()).0 }
}

fn scratch(i: usize) -> u64 {
    // SAFETY: the first 0x100 bytes of the image are scratch (link.ld).
    unsafe { ((engine::SCRATCH_BASE + 8 * i as u64) as *const u64).read_volatile() }
}

/// STP then LDP of two X registers at 0x7FFF_FFF8: the first in the window, the
/// second in RAM at 0x8000_0000.
fn straddle_pair() -> Result<(), &'static str> {
    let p = engine::SCRATCH_BASE - 8;
    let (a, b) = (0x1122_3344_5566_7788u64, 0x99aa_bbcc_ddee_ff00u64);
    // SAFETY: stores to the window's last 8 bytes and the scratch RAM.
    unsafe {
        core::arch::asm!("stp {a}, {b}, [{p}]", a = in(reg) a, b = in(reg) b, p = in(reg) p, options(nostack))
    };
    let bb = buf();
    if !testdev::from_device(bb.as_mut_ptr() as u64, testdev::WINDOW_SIZE - 8, 8) {
        return Err("bulk copy from the device failed");
    }
    if bb[0] != a {
        println!("  window got {:#x}, expected {:#x}", bb[0], a);
        return Err("STP: wrong value in the device half");
    }
    if scratch(0) != b {
        println!("  RAM got {:#x}, expected {:#x}", scratch(0), b);
        return Err("STP: wrong value in the RAM half");
    }
    // Put other values on both sides and load them back.
    let (c, d) = (0x0f0e_0d0c_0b0a_0908u64, 0x7071_7273_7475_7677u64);
    bb[0] = c;
    if !testdev::to_device(bb.as_ptr() as u64, testdev::WINDOW_SIZE - 8, 8) {
        return Err("bulk copy to the device failed");
    }
    // SAFETY: scratch RAM.
    unsafe { (engine::SCRATCH_BASE as *mut u64).write_volatile(d) };
    let (x, y): (u64, u64);
    // SAFETY: loads from the window and the scratch RAM.
    unsafe {
        core::arch::asm!("ldp {x}, {y}, [{p}]", x = out(reg) x, y = out(reg) y, p = in(reg) p, options(nostack))
    };
    if (x, y) != (c, d) {
        println!("  LDP got {:#x} {:#x}, expected {:#x} {:#x}", x, y, c, d);
        return Err("LDP: wrong values");
    }
    Ok(())
}

/// ST1 {v0.2d-v3.2d} then LD1 at 0x7FFF_FFE0: 32 bytes in the window, 32 in RAM.
fn straddle_st1() -> Result<(), &'static str> {
    let p = engine::SCRATCH_BASE - 32;
    let src: [u64; 8] = core::array::from_fn(|i| {
        0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1) ^ 0xa5a5_0000_5a5a_0000
    });
    let bb = buf();
    *bb = src;
    // SAFETY: loads q0-q3 from the buffer, stores them to the window's last 32
    // bytes and the first 32 bytes of scratch RAM.
    unsafe {
        core::arch::asm!("ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{b}]", "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{p}]",
            b = in(reg) bb.as_ptr(), p = in(reg) p, out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            options(nostack));
    }
    *bb = [0; 8];
    if !testdev::from_device(bb.as_mut_ptr() as u64, testdev::WINDOW_SIZE - 32, 32) {
        return Err("bulk copy from the device failed");
    }
    for i in 0..4 {
        if bb[i] != src[i] {
            return Err("ST1: wrong bytes in the device part");
        }
        if scratch(i) != src[4 + i] {
            return Err("ST1: wrong bytes in the RAM part");
        }
    }
    // Load it back through the same straddling access and store to the buffer.
    *bb = [0; 8];
    // SAFETY: loads from the window and scratch RAM, stores into the buffer.
    unsafe {
        core::arch::asm!("ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{p}]", "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{b}]",
            b = in(reg) bb.as_mut_ptr(), p = in(reg) p, out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            options(nostack));
    }
    if *bb != src {
        return Err("LD1: wrong values");
    }
    Ok(())
}

/// DC ZVA on the window with Device attributes (MMU off, or the identity
/// mapping). The Arm ARM (DC ZVA) makes it an Alignment fault (DFSC 0x21) taken
/// at EL1 without touching memory, with no choice for a page without a stage-2
/// mapping. QEMU 7.2's TCG does not make that check itself: its access reaches
/// stage 2, exits to the VMM (no syndrome) and the emulator takes the fault.
/// Required: the fault and an unchanged device. (Until this was tightened, the
/// check also accepted "no fault, the block zeroed", which only an emulator
/// ignoring the memory type could produce.)
fn dczva_device(feat: Features) -> Result<(), &'static str> {
    let Some(bs) = feat.zva else {
        println!("  DC ZVA prohibited (DCZID_EL0.DZP): nothing to check");
        return Ok(());
    };
    if bs > 0x800 {
        return Err("DC ZVA block larger than the checked area");
    }
    let off = testdev::WINDOW_SIZE - 0x1000;
    if !testdev::fill(off, 0x1000, 0x5a) {
        return Err("fill failed");
    }
    // An address inside the second block of the checked page.
    let addr = testdev::WINDOW + off + bs + 8;
    let f = run::expect_fault(|| {
        // SAFETY: DC ZVA on the window; an Alignment fault is recorded and skipped.
        unsafe { core::arch::asm!("dc zva, {}", in(reg) addr, options(nostack)) };
    });
    let page = engine::devside_pa().0;
    if !testdev::from_device(page, off, 0x1000) {
        return Err("bulk copy from the device failed");
    }
    // SAFETY: devside_pa is a 64 KiB RAM buffer; only 4 KiB are read.
    let got = unsafe { core::slice::from_raw_parts(page as *const u8, 0x1000) };
    match f {
        Some(f) => {
            let (ec, dfsc) = ((f.esr >> 26) & 0x3f, f.esr & 0x3f);
            if ec != 0x25 || dfsc != 0x21 {
                println!("  ESR {:#x} FAR {:#x}", f.esr, f.far);
                return Err("expected a data abort with DFSC 0x21 (alignment fault)");
            }
            if got.iter().any(|&b| b != 0x5a) {
                return Err("the device changed although DC ZVA faulted");
            }
            println!("  Alignment fault (ESR {:#x}), device unchanged", f.esr);
        }
        None => {
            // The Arm ARM gives no choice here: "If the memory region being
            // zeroed is any type of Device memory, this instruction generates
            // an Alignment fault" (DC ZVA). The window has no stage-2 mapping
            // (so the FEAT_S2FWB latitude for RAM does not apply), and an
            // exit reaches the emulator, which must fault even if the CPU
            // did not check (QEMU 7.2 does not).
            println!(
                "  no Alignment fault; {} of the page's bytes changed",
                got.iter().filter(|&&b| b != 0x5a).count()
            );
            return Err(
                "DC ZVA to Device memory completed (the Arm ARM requires an Alignment fault)",
            );
        }
    }
    Ok(())
}

const GICD: u64 = 0x0800_0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IROUTER: u64 = 0x6100;

/// Programs GICD_IROUTER<32..40> with a post-index `str` loop (no valid
/// syndrome: the VMM emulates it through the vGIC device attributes), reads
/// them back with plain `ldr` (handled in the kernel) and with a post-index
/// `ldr` loop (emulated again). KVM keeps Aff2.Aff1.Aff0 (bits 23:0,
/// arch/arm64/kvm/vgic/vgic-mmio-v3.c vgic_mmio_write_irouter).
fn gic_irouter() -> Result<(), &'static str> {
    // SAFETY: a 32-bit read of GICD_TYPER (valid syndrome, in-kernel vGIC).
    let typer = unsafe { ((GICD + GICD_TYPER) as *const u32).read_volatile() };
    let lines = ((typer & 0x1f) + 1) * 32;
    if lines < 64 {
        println!("  GICD_TYPER {:#x}: {} interrupt lines", typer, lines);
        return Err("fewer than 32 SPIs");
    }
    let vals: [u64; 8] = core::array::from_fn(|i| {
        ((i as u64 + 1) << 16) | ((i as u64 * 3) << 8) | (0x10 + i as u64)
    });
    let bb = buf();
    *bb = vals;
    let dst = GICD + GICD_IROUTER + 8 * 32;
    // SAFETY: copies 8 words from the buffer to GICD_IROUTER<32..40>.
    unsafe {
        core::arch::asm!(
            "2:", "ldr {v}, [{s}], #8", "str {v}, [{d}], #8", "subs {n}, {n}, #1", "b.ne 2b",
            v = out(reg) _, s = inout(reg) bb.as_ptr() => _, d = inout(reg) dst => _, n = inout(reg) 8u64 => _,
            options(nostack));
    }
    for (i, v) in vals.iter().enumerate() {
        // SAFETY: 64-bit read of GICD_IROUTER<32 + i>.
        let got = unsafe { ((dst + 8 * i as u64) as *const u64).read_volatile() };
        if got != v & 0xff_ffff {
            println!(
                "  IROUTER{} = {:#x}, expected {:#x}",
                32 + i,
                got,
                v & 0xff_ffff
            );
            return Err("plain read-back differs");
        }
    }
    *bb = [0; 8];
    // SAFETY: copies GICD_IROUTER<32..40> to the buffer with post-index loads.
    unsafe {
        core::arch::asm!(
            "2:", "ldr {v}, [{s}], #8", "str {v}, [{d}], #8", "subs {n}, {n}, #1", "b.ne 2b",
            v = out(reg) _, s = inout(reg) dst => _, d = inout(reg) bb.as_mut_ptr() => _, n = inout(reg) 8u64 => _,
            options(nostack));
    }
    for (i, v) in vals.iter().enumerate() {
        if bb[i] != v & 0xff_ffff {
            println!(
                "  IROUTER{} read {:#x} by post-index ldr, expected {:#x}",
                32 + i,
                bb[i],
                v & 0xff_ffff
            );
            return Err("post-index read-back differs");
        }
    }
    Ok(())
}

#[repr(C, align(4096))]
struct CodePage([u32; 1024]);

static LSE2_CODE: guest_rt::Global<CodePage> = guest_rt::Global::new(CodePage([0; 1024]));

/// FEAT_LSE2 alignment (Arm ARM `AArch64.UnalignedAccessFaults`): each
/// instruction with an alignment requirement of its own runs unaligned inside
/// one aligned 16-byte quantity and across two, with SCTLR_EL1.nAA 0 and 1, on
/// RAM and on the device window (both Normal memory): the CPU and the emulator
/// must agree, and both must follow the rule for the CPU's ID_AA64MMFR2_EL1.AT.
/// LDAXR and LDADD carry no syndrome (NISV: the emulator decides); LDAR/STLR
/// carry one (the CPU decides, and KVM or the VMM completes the access).
fn lse2_alignment(feat: Features, pg: u64) -> Result<(), &'static str> {
    // (word, name, exclusive or atomic, store, needs FEAT_LSE)
    let insns: [(u32, &str, bool, bool, bool); 4] = [
        (0xc8df_fc22, "ldar x2, [x1]", false, false, false),
        (0xc89f_fc20, "stlr x0, [x1]", false, true, false),
        (0xc85f_fc22, "ldaxr x2, [x1]", true, false, false),
        (0xf820_0022, "ldadd x0, x2, [x1]", true, false, true),
    ];
    println!(
        "  lse2-alignment: ID_AA64MMFR2_EL1.AT says FEAT_LSE2 {}",
        if feat.lse2 {
            "implemented"
        } else {
            "not implemented"
        }
    );
    let code = LSE2_CODE.get() as u64;
    let ram = engine::ramside_pa();
    let dev = ALIAS_VA + pg;
    let image: [u8; 32] = core::array::from_fn(|i| 0xa0 + i as u8);
    let mut ok = true;
    for (word, name, excl_or_atomic, store, needs_lse) in insns {
        if needs_lse && !feat.lse {
            continue;
        }
        // SAFETY: the code page is this function's own RAM.
        unsafe {
            (code as *mut u32).write_volatile(word);
            ((code + 4) as *mut u32).write_volatile(run::SVC_WORD);
        }
        sysreg::sync_icache(code, 8);
        for off in [0x104u64, 0x10c] {
            for naa in [false, true] {
                let in_quantity = (off & 15) + 8 <= 16;
                let want_fault = if !feat.lse2 {
                    true
                } else if excl_or_atomic {
                    !in_quantity
                } else {
                    !naa && !in_quantity
                };
                let mut got = [(false, 0u64, [0u8; 32]); 2];
                for (side, base) in [ram, dev].into_iter().enumerate() {
                    let bb = buf();
                    for (i, w) in bb.iter_mut().enumerate().take(4) {
                        *w = u64::from_le_bytes(core::array::from_fn(|j| image[8 * i + j]));
                    }
                    if side == 0 {
                        // SAFETY: the RAM side region is this guest's RAM.
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                image.as_ptr(),
                                (ram + 0x100) as *mut u8,
                                32,
                            )
                        };
                    } else if !testdev::to_device(bb.as_ptr() as u64, 0x100, 32) {
                        return Err("bulk copy to the device failed");
                    }
                    let mut st = run::RunState::zero();
                    // Both values explicitly: KVM resets SCTLR_EL1 with nAA set
                    // (0x00C50078); the runtime clears it, but the check must
                    // not depend on that.
                    st.sctlr = (run::canonical_sctlr() & !run::SCTLR_NAA)
                        | if naa { run::SCTLR_NAA } else { 0 };
                    let mut x = [0u64; 31];
                    x[0] = 0x0102_0304_0506_0708;
                    x[1] = base + off;
                    x[2] = 0x5a5a;
                    st.store_x(&x);
                    st.elr = code;
                    st.spsr = run::SPSR_EL1T_MASKED;
                    st.sp = ram + 0x800;
                    let f = run::run(&st);
                    let mut mem = [0u8; 32];
                    if side == 0 {
                        // SAFETY: as above.
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                (ram + 0x100) as *const u8,
                                mem.as_mut_ptr(),
                                32,
                            )
                        };
                    } else {
                        if !testdev::from_device(bb.as_mut_ptr() as u64, 0x100, 32) {
                            return Err("bulk copy from the device failed");
                        }
                        for (i, w) in bb.iter().enumerate().take(4) {
                            mem[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
                        }
                    }
                    let fault = !f.done();
                    if fault && (f.esr & 0x3f != 0x21 || f.far != base + off) {
                        println!(
                            "  {} at +{:#x} nAA {}: side {}: unexpected exception ESR {:#x} FAR {:#x}",
                            name, off, naa, side, f.esr, f.far
                        );
                        ok = false;
                    }
                    got[side] = (fault, if store { 0 } else { f.x[2] }, mem);
                }
                let line = |what: &str| {
                    println!(
                        "  {} at +{:#x} nAA {}: {} (RAM: fault {}, device: fault {}, architecture: fault {})",
                        name, off, naa, what, got[0].0, got[1].0, want_fault
                    )
                };
                if got[0] != got[1] {
                    line("RAM and device differ");
                    ok = false;
                } else if got[0].0 != want_fault {
                    line("the CPU does not follow the architecture's rule for its ID register");
                    ok = false;
                } else {
                    line("ok");
                }
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err("FEAT_LSE2 alignment differs")
    }
}
