// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The run-twice differential engine: the CPU is the oracle.
//!
//! A case from [`crate::insn`] is written into a code buffer (followed by
//! `svc #SVC_DONE`) and run twice from the same register state, memory contents
//! and code: once with its base register pointing into a RAM region, once
//! pointing into a region of identical shape whose middle page is the test
//! device's data window (so the accesses exit to the VMM as KVM_EXIT_ARM_NISV or
//! KVM_EXIT_MMIO and are emulated). The two final states (x0-x30, SP_EL0, q0-q31,
//! NZCV, ESR/ELR) and the memory regions must be identical, apart from the base
//! register, which differs by the constant distance between the regions.
//!
//! A region is `pre` bytes, one device-sized `page`, and `post` bytes. On the
//! device side `pre` and `post` are RAM (an alias mapping, or the RAM that
//! physically follows the window at 0x8000_0000) so page-straddling accesses hit
//! RAM on one side and the device on the other.

use crate::insn::{self, Case, Class, Features};
use crate::rng::Rng;
use crate::run::{self, Frame, RunState, SPSR_EL1T_MASKED, SVC_WORD};
use crate::{Global, print, println, sysreg, testdev};

/// The largest region page the engine supports (the 64 KiB granule).
pub const MAX_PAGE: usize = 0x1_0000;
const MAX_REGION: usize = 3 * MAX_PAGE;

#[repr(C, align(65536))]
struct Buf<const N: usize>([u8; N]);

static RAMSIDE: Global<Buf<MAX_REGION>> = Global::new(Buf([0; MAX_REGION]));
static DEVSIDE: Global<Buf<{ 2 * MAX_PAGE }>> = Global::new(Buf([0; 2 * MAX_PAGE]));
static MASTER: Global<Buf<MAX_REGION>> = Global::new(Buf([0; MAX_REGION]));
static DEVBUF: Global<Buf<MAX_PAGE>> = Global::new(Buf([0; MAX_PAGE]));

#[repr(C, align(64))]
struct Code([u32; 16]);
static CODE: Global<Code> = Global::new(Code([0; 16]));

/// Physical address of the RAM-run region buffer (3 × [`MAX_PAGE`], 64 KiB aligned).
pub fn ramside_pa() -> u64 {
    RAMSIDE.get() as u64
}

/// Physical addresses of two RAM pages (each [`MAX_PAGE`], 64 KiB aligned) that a
/// guest maps before and after the device page in an alias layout.
pub fn devside_pa() -> (u64, u64) {
    let b = DEVSIDE.get() as u64;
    (b, b + MAX_PAGE as u64)
}

/// Where the two runs of a case happen.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// A name for reports.
    pub name: &'static str,
    /// VA of the RAM-run region (contiguous RAM of `pre + page + post` bytes).
    pub ram_va: u64,
    /// VA of the device-run region.
    pub dev_va: u64,
    /// Bytes of RAM before the device page (device side).
    pub pre: u64,
    /// Bytes of the device page.
    pub page: u64,
    /// Bytes of RAM after the device page (device side).
    pub post: u64,
    /// Offset of the device page in the data window.
    pub dev_off: u64,
    /// Both regions have Device memory attributes (or the MMU is off): every
    /// element access must be aligned to its size.
    pub device_attrs: bool,
    /// SCTLR_EL1 while a case runs.
    pub sctlr: u64,
    /// The page after both regions is unmapped: one case in two is placed
    /// across the end of the region, into that page, and the two runs must take
    /// the same fault (issue 11: page-crossing accesses into nothing).
    pub tail_unmapped: bool,
}

impl Layout {
    fn region(&self) -> u64 {
        self.pre + self.page + self.post
    }

    /// True when a case runs with other SCTLR_EL1.M/EE than the runtime's own.
    fn special(&self) -> bool {
        let m = run::SCTLR_M | run::SCTLR_EE;
        self.sctlr & m != run::canonical_sctlr() & m
    }

    /// The RAM-run region with the MMU off: identity, from [`ramside_pa`].
    pub fn identity(page: u64, sctlr: u64, device_attrs: bool, name: &'static str) -> Self {
        Self {
            name,
            ram_va: ramside_pa(),
            dev_va: testdev::WINDOW + testdev::WINDOW_SIZE - page,
            pre: 0,
            page,
            post: SCRATCH,
            dev_off: testdev::WINDOW_SIZE - page,
            device_attrs,
            sctlr,
            tail_unmapped: false,
        }
    }
}

/// Bytes of scratch RAM at 0x8000_0000 (the image's first bytes, see link.ld)
/// used as the RAM after the window in identity layouts.
pub const SCRATCH: u64 = 0x100;

/// Address of the scratch RAM (the start of RAM).
pub const SCRATCH_BASE: u64 = 0x8000_0000;

/// Outcome of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both runs ended identically.
    Match,
    /// The RAM run did not complete (it faulted): nothing to compare.
    Skipped,
    /// The runs differ.
    Mismatch,
}

/// Per-class counters.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Cases compared (the RAM run completed).
    pub ran: [u32; insn::ALL.len()],
    /// Cases skipped (the RAM run faulted).
    pub skipped: [u32; insn::ALL.len()],
    /// Mismatches.
    pub mismatches: [u32; insn::ALL.len()],
    /// Mismatches by [`Kind`].
    pub kinds: [u32; 3],
}

/// What a mismatching case was, as far as the platform is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A sign-extending load of a general register with a valid syndrome
    /// (LDRSB/LDRSH/LDRSW and their unscaled/register forms, no writeback): KVM
    /// completes these itself from the KVM_EXIT_MMIO data, sign-extending per
    /// ESR_EL2.SSE.
    IsvSignExtend,
    /// A single general-register access with a valid syndrome (no writeback)
    /// that crosses a page boundary of the device page: KVM reports one
    /// KVM_EXIT_MMIO of the whole size at the fault IPA.
    IsvPageStraddle,
    /// Anything else.
    Other,
}

impl Kind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IsvSignExtend => "isv-sign-extend",
            Kind::IsvPageStraddle => "isv-page-straddle",
            Kind::Other => "other",
        }
    }

    /// Every kind, in the order of [`Stats::kinds`].
    pub const ALL: [Kind; 3] = [Kind::IsvSignExtend, Kind::IsvPageStraddle, Kind::Other];
}

/// Classifies a case placed at offset `t` of layout `l`.
pub fn kind_of(c: &Case, l: &Layout, t: u64) -> Kind {
    let isv = matches!(c.class, Class::GprImm | Class::GprUnscaled | Class::GprReg);
    if !isv {
        return Kind::Other;
    }
    let end = t + c.len;
    let crosses = |b: u64| t < b && end > b;
    if crosses(l.pre) || crosses(l.pre + l.page) {
        return Kind::IsvPageStraddle;
    }
    // opc<1> (bit 23) set: LDRS* (V = 0).
    if c.words[0] & (1 << 23) != 0 {
        return Kind::IsvSignExtend;
    }
    Kind::Other
}

impl Stats {
    /// Zero counters.
    pub const fn new() -> Self {
        Self {
            ran: [0; insn::ALL.len()],
            skipped: [0; insn::ALL.len()],
            mismatches: [0; insn::ALL.len()],
            kinds: [0; 3],
        }
    }

    /// Total compared cases.
    pub fn total_ran(&self) -> u64 {
        self.ran.iter().map(|&v| u64::from(v)).sum()
    }

    /// Total mismatches.
    pub fn total_mismatches(&self) -> u64 {
        self.mismatches.iter().map(|&v| u64::from(v)).sum()
    }

    /// Total skipped cases.
    pub fn total_skipped(&self) -> u64 {
        self.skipped.iter().map(|&v| u64::from(v)).sum()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    /// Where cases run.
    pub layout: Layout,
    /// What the generator may use.
    pub feat: Features,
    /// Counters.
    pub stats: Stats,
    /// Full dumps still allowed (each mismatch dump costs UART exits).
    pub dumps_left: u32,
    /// Skipped-case reports still allowed.
    pub skip_reports_left: u32,
    /// Mismatch reports still allowed (the first [`Engine::dumps_left`] of them
    /// with the whole register state); later mismatches are only counted.
    pub reports_left: u32,
    cases: u64,
    /// The device page holds the current image (no copy needed before a run).
    dev_clean: bool,
    /// [`testdev::epoch`] right after the last read-back.
    dev_epoch: u64,
    /// Cases that crossed into the unmapped page after the region and were
    /// compared as faults ([`Layout::tail_unmapped`]).
    pub tail_faults: u64,
    /// RAM runs repeated because the CPU's store-exclusive failed after its
    /// load-exclusive (see [`STXR_RETRIES`]).
    pub stxr_retries: u64,
}

/// How often the RAM run of a load-exclusive + store-exclusive pair is repeated
/// when the CPU's store-exclusive failed. The Arm ARM lets a CPU clear its
/// exclusive monitor "at any time without an application-related cause,
/// provided that such clearing is not systematically repeated so as to prevent
/// the forward progress" (B2.9.5, "Load-Exclusive and Store-Exclusive
/// instruction usage restrictions"), so one failing pass is permitted and says
/// nothing about the emulator, which fuses the pair and succeeds (docs/emulator.md,
/// "Exclusives"). QEMU 10.0 does this for pairs placed unaligned inside 16 bytes
/// (FEAT_LSE2): its store-exclusive then leaves the translated block for a
/// serialised re-execution, and now and then the monitor is lost on the way
/// (measured: 4 of 100,000 oracle cases). A CPU that fails every attempt still
/// shows up as a mismatch.
pub const STXR_RETRIES: u32 = 4;

/// The status register of the store-exclusive of `c` (a pair class with two
/// words), or `None` when `c` has none.
fn stxr_status_reg(c: &Case) -> Option<usize> {
    let pair = matches!(c.class, Class::Exclusive | Class::ExclusivePair);
    (pair && c.nwords == 2).then_some(((c.words[1] >> 16) & 31) as usize)
}

fn bytes(addr: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: every caller passes one of this module's buffers, or RAM the
    // layout maps (alias pages, the scratch at 0x8000_0000), with a length
    // inside it; the engine is single-threaded.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
}

impl Engine {
    /// An engine for `layout`. Panics (a guest bug, not guest data) if the layout
    /// is larger than the buffers.
    pub fn new(layout: Layout, feat: Features, seed: u64) -> Self {
        assert!(
            layout.page as usize <= MAX_PAGE
                && layout.pre as usize <= MAX_PAGE
                && layout.post as usize <= MAX_PAGE
        );
        let mut e = Self {
            layout,
            feat,
            stats: Stats::new(),
            dumps_left: 3,
            skip_reports_left: 5,
            reports_left: 20,
            cases: 0,
            dev_clean: false,
            dev_epoch: 0,
            tail_faults: 0,
            stxr_retries: 0,
        };
        e.refill(&mut Rng::new(seed ^ 0x5eed));
        e
    }

    fn refill(&mut self, rng: &mut Rng) {
        self.dev_clean = false;
        let m = bytes(MASTER.get() as u64, self.layout.region());
        for chunk in m.chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// True when `class` can run in this layout with these features.
    pub fn supports(&self, class: Class) -> bool {
        if class.needs_lse() && !self.feat.lse {
            return false;
        }
        if class == Class::DcZva {
            // DC ZVA to any type of Device memory is an Alignment fault (Arm ARM,
            // DC ZVA). QEMU 7.2's TCG does not take it, the emulator does, so with
            // the MMU off (Device-nGnRnE on both sides, phase 3) the RAM run would
            // zero the block and the device run fault: that is a known TCG
            // deviation, not something to compare (docs/oracle.md, "Known
            // limits"). Only Normal memory on both sides is compared; the classes
            // guests check the Device case and print which behaviour they saw.
            let normal = !self.layout.device_attrs && self.layout.sctlr & run::SCTLR_M != 0;
            return self.feat.zva.is_some_and(|bs| bs <= self.layout.page) && normal;
        }
        true
    }

    /// Generates and runs one case of `class`.
    pub fn run_class(&mut self, rng: &mut Rng, class: Class) -> Verdict {
        let c = insn::generate(rng, class, &self.feat);
        self.run_case(rng, &c)
    }

    /// Runs `c` twice and compares.
    pub fn run_case(&mut self, rng: &mut Rng, c: &Case) -> Verdict {
        let l = self.layout;
        self.cases += 1;
        if self.cases.is_multiple_of(32) {
            self.refill(rng);
        }
        let region = l.region();
        // Placement of the access in the region.
        // Device memory: each element aligned to its size (Arm ARM: an
        // element-aligned access never takes an Alignment fault there), or 8
        // bytes for the LD1/ST1 a deviating CPU faults before any exit
        // (`Features::ld1_device_align`).
        let a = if l.device_attrs {
            let cpu = if c.ld1_multiple {
                self.feat.ld1_device_align
            } else {
                1
            };
            c.align.max(c.elem).max(cpu)
        } else {
            c.align
        }
        .max(1);
        let len = c.len;
        let inside = |rng: &mut Rng| l.pre + rng.below(l.page.saturating_sub(len) + 1);
        let mut t = match rng.below(4) {
            0 if l.pre > 0 && len > 1 => l.pre - 1 - rng.below(len - 1),
            1 if l.post > 0 && len > 1 => l.pre + l.page - 1 - rng.below(len - 1),
            _ => inside(rng),
        };
        t &= !(a - 1);
        let into_tail = l.tail_unmapped && len > 1 && rng.chance(1, 2);
        if into_tail {
            // Across the end of the region into the unmapped page.
            t = (region - 1 - rng.below(len - 1)) & !(a - 1);
        } else if t + len > region {
            t = (region - len) & !(a - 1);
        }
        // FEAT_LSE2 (Normal memory only: Device memory faults on any unaligned
        // access): an access that needs its own alignment may be unaligned
        // inside one aligned 16-byte quantity (Arm ARM
        // `AArch64.UnalignedAccessFaults`; SCTLR_EL1.nAA = 0 here).
        if self.feat.lse2 && !l.device_attrs && c.align > 1 && len < 16 && rng.chance(1, 4) {
            let k = 1 + rng.below(16 - len);
            if !k.is_multiple_of(c.align) {
                t = (t & !15) + k;
            }
        }
        let master = bytes(MASTER.get() as u64, region);
        // Registers read from memory (CAS compare values).
        let mut x = c.x;
        for f in c.fixups.iter().take(c.nfix) {
            let o = (t + u64::from(f.off)) as usize;
            let mut v = [0u8; 8];
            if let (Some(src), Some(dst)) = (
                master.get(o..o + usize::from(f.size)),
                v.get_mut(..usize::from(f.size)),
            ) {
                dst.copy_from_slice(src);
            }
            if let Some(r) = x.get_mut(usize::from(f.reg)) {
                *r = u64::from_le_bytes(v);
            }
        }
        // Code.
        let code = CODE.get() as *mut u32;
        let mut n = 0;
        for w in c
            .words
            .iter()
            .take(c.nwords)
            .chain(core::iter::once(&SVC_WORD))
        {
            // SAFETY: at most 3 words into a 16-word buffer.
            unsafe { code.add(n).write_volatile(*w) };
            n += 1;
        }
        sysreg::sync_icache(code as u64, 4 * n as u64);
        // Memory, RAM side and device side.
        bytes(l.ram_va, region).copy_from_slice(master);
        let (mpre, rest) = master.split_at(l.pre as usize);
        let (mpage, mpost) = rest.split_at(l.page as usize);
        bytes(l.dev_va, l.pre).copy_from_slice(mpre);
        bytes(l.dev_va + l.pre + l.page, l.post).copy_from_slice(mpost);
        let devbuf = DEVBUF.get() as u64;
        testdev::setup(devbuf, l.dev_off, l.page);
        // Any command since our own read-back (another engine, a check) may
        // have changed the window, and engines share the image buffer.
        if !self.dev_clean || testdev::epoch() != self.dev_epoch {
            // One exit; skipped when the last case left the device holding
            // exactly the current image (it only loaded).
            bytes(devbuf, l.page).copy_from_slice(mpage);
            testdev::command(testdev::CMD_TO_DEVICE);
        }
        // Register state.
        let ram_base = l.ram_va.wrapping_add(t).wrapping_sub(c.addr_off);
        let delta = l.dev_va.wrapping_sub(l.ram_va);
        let mut st = RunState::zero();
        st.elr = code as u64;
        st.spsr = SPSR_EL1T_MASKED | c.nzcv;
        st.sctlr = l.sctlr;
        st.v = c.v;
        let state_for = |base: u64| {
            let mut s = st;
            let mut xx = x;
            let mut sp = c.sp;
            if c.rn == 31 {
                sp = base;
            } else if let Some(r) = xx.get_mut(usize::from(c.rn)) {
                *r = base;
            }
            s.sp = sp;
            s.store_x(&xx);
            s
        };
        let special = l.special();
        if special {
            self.flush(code as u64);
        }
        let mut o1 = run::run(&state_for(ram_base));
        if let Some(rs) = stxr_status_reg(c) {
            // The CPU's store-exclusive failed (status 1; with WZR as status,
            // the RAM side untouched): a permitted spurious monitor clear.
            let mut tries = 0;
            while tries < STXR_RETRIES && o1.done() {
                let failed = match o1.x.get(rs) {
                    Some(&st) => st & 0xffff_ffff != 0,
                    None => bytes(l.ram_va, region) == master,
                };
                if !failed {
                    break;
                }
                if self.stxr_retries < 3 {
                    println!(
                        "{}: store-exclusive failed on the CPU, RAM run repeated: {} {:08x} {:08x} at offset {:#x} (status register {})",
                        l.name,
                        c.class.name(),
                        c.words[0],
                        c.words[1],
                        t,
                        reg_name(rs as u8)
                    );
                }
                bytes(l.ram_va, region).copy_from_slice(master);
                if special {
                    self.flush(code as u64);
                }
                o1 = run::run(&state_for(ram_base));
                self.stxr_retries += 1;
                tries += 1;
            }
        }
        let o2 = run::run(&state_for(ram_base.wrapping_add(delta)));
        testdev::command(testdev::CMD_FROM_DEVICE);
        self.dev_clean = bytes(devbuf, l.page) == mpage;
        self.dev_epoch = testdev::epoch();
        if special {
            self.flush(code as u64);
        }
        let ci = class_index(c.class);
        let ec = (o1.esr >> 26) & 0x3f;
        if !o1.done()
            && l.tail_unmapped
            && (ec == 0x24 || ec == 0x25)
            && o1.far.wrapping_sub(l.ram_va) >= region
        {
            // The access crossed into the unmapped page: both runs must take
            // the same data abort, at the same offset, with nothing written on
            // the device side (the emulator checks every piece first). The RAM
            // run's memory and its SIMD&FP destinations are not compared: for
            // a faulting store or multi-register load the Arm ARM leaves them
            // UNKNOWN (QEMU writes a Q element or an LD1 register before the
            // next one faults).
            bump(&mut self.stats.ran, ci);
            self.tail_faults += 1;
            let dev_ok = bytes(devbuf, l.page) == mpage
                && bytes(l.dev_va, l.pre) == mpre
                && bytes(l.dev_va + l.pre + l.page, l.post) == mpost;
            let mut o2v = o2;
            o2v.v = o1.v;
            // Nothing was loaded: the base register still differs by delta,
            // even for a load that would have overwritten it.
            let mut cf = *c;
            cf.base_loaded = false;
            let ok = !o2.done()
                && o2.far == o1.far.wrapping_add(delta)
                && same_regs(&cf, &o1, &o2v, delta)
                && dev_ok;
            if ok {
                return Verdict::Match;
            }
            bump(&mut self.stats.mismatches, ci);
            if let Some(k) = self.stats.kinds.get_mut(Kind::Other as usize) {
                *k += 1;
            }
            if self.reports_left > 0 {
                self.reports_left -= 1;
                println!(
                    "{}: MISMATCH (fault into the unmapped page) {} {:08x}: RAM ESR {:#x} FAR {:#x} ELR {:#x}, device ESR {:#x} FAR {:#x} ELR {:#x}, device side unchanged {}",
                    l.name,
                    c.class.name(),
                    c.words[0],
                    o1.esr,
                    o1.far,
                    o1.elr,
                    o2.esr,
                    o2.far,
                    o2.elr,
                    dev_ok
                );
            }
            return Verdict::Mismatch;
        }
        if !o1.done() {
            bump(&mut self.stats.skipped, ci);
            if self.skip_reports_left > 0 {
                self.skip_reports_left -= 1;
                println!(
                    "{}: skipped {} {:08x} {:08x} (RAM run faulted: ESR {:#x} FAR {:#x} ELR {:#x})",
                    l.name,
                    c.class.name(),
                    c.words[0],
                    if c.nwords > 1 { c.words[1] } else { 0 },
                    o1.esr,
                    o1.far,
                    o1.elr
                );
            }
            return Verdict::Skipped;
        }
        bump(&mut self.stats.ran, ci);
        let mem_ok = {
            let ram = bytes(l.ram_va, region);
            let (rpre, rrest) = ram.split_at(l.pre as usize);
            let (rpage, rpost) = rrest.split_at(l.page as usize);
            rpre == bytes(l.dev_va, l.pre)
                && rpage == bytes(devbuf, l.page)
                && rpost == bytes(l.dev_va + l.pre + l.page, l.post)
        };
        let regs_ok = same_regs(c, &o1, &o2, delta);
        if mem_ok && regs_ok {
            return Verdict::Match;
        }
        bump(&mut self.stats.mismatches, ci);
        let kind = kind_of(c, &l, t);
        if let Some(k) = self.stats.kinds.get_mut(kind as usize) {
            *k += 1;
        }
        if self.reports_left > 0 {
            self.reports_left -= 1;
            self.report(c, t, &x, &o1, &o2, delta, mem_ok, kind);
            if self.reports_left == 0 {
                println!("{}: further mismatches are counted, not printed", l.name);
            }
        }
        Verdict::Mismatch
    }

    fn flush(&self, code: u64) {
        let l = &self.layout;
        sysreg::clean_inval(l.ram_va, l.region());
        sysreg::clean_inval(l.dev_va, l.pre);
        sysreg::clean_inval(l.dev_va + l.pre + l.page, l.post);
        sysreg::clean_inval(code, 64);
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        c: &Case,
        t: u64,
        x0: &[u64; 31],
        o1: &Frame,
        o2: &Frame,
        delta: u64,
        mem_ok: bool,
        kind: Kind,
    ) {
        let l = &self.layout;
        print!(
            "MISMATCH [{}] {} ({}) words",
            l.name,
            c.class.name(),
            kind.name()
        );
        for w in c.words.iter().take(c.nwords) {
            print!(" {:08x}", w);
        }
        println!(
            " base {} offset-in-region {:#x} delta {:#x}",
            reg_name(c.rn),
            t,
            delta
        );
        println!(
            "  ram: ESR {:#x} ELR {:#x} NZCV {:#x} SP {:#x}",
            o1.esr,
            o1.elr,
            o1.spsr >> 28,
            o1.sp_el0
        );
        if o2.done() {
            println!(
                "  dev: ESR {:#x} ELR {:#x} NZCV {:#x} SP {:#x}",
                o2.esr,
                o2.elr,
                o2.spsr >> 28,
                o2.sp_el0
            );
        } else {
            println!(
                "  dev: ESR {:#x} ELR {:#x} NZCV {:#x} SP {:#x} FAR {:#x} (exception)",
                o2.esr,
                o2.elr,
                o2.spsr >> 28,
                o2.sp_el0,
                o2.far
            );
        }
        let full = self.dumps_left > 0;
        self.dumps_left = self.dumps_left.saturating_sub(1);
        for (i, init) in x0.iter().enumerate() {
            let (a, b) = (o1.x[i], o2.x[i]);
            let b_adj = if i == usize::from(c.rn) && !c.base_loaded {
                b.wrapping_sub(delta)
            } else {
                b
            };
            if a != b_adj || full {
                println!(
                    "  x{:<2} init {:#018x} ram {:#018x} dev {:#018x}{}",
                    i,
                    init,
                    a,
                    b,
                    if a != b_adj { "  <--" } else { "" }
                );
            }
        }
        for i in 0..32 {
            if o1.v[i] != o2.v[i] {
                println!(
                    "  q{:<2} init {:#034x} ram {:#034x} dev {:#034x}  <--",
                    i, c.v[i], o1.v[i], o2.v[i]
                );
            }
        }
        if !mem_ok {
            let region = l.region();
            let ram = bytes(l.ram_va, region);
            let mut shown = 0;
            for (i, r) in ram.iter().enumerate() {
                let i = i as u64;
                let d = if i < l.pre {
                    bytes(l.dev_va + i, 1)[0]
                } else if i < l.pre + l.page {
                    bytes(DEVBUF.get() as u64 + i - l.pre, 1)[0]
                } else {
                    bytes(l.dev_va + i, 1)[0]
                };
                if *r != d {
                    if shown < 16 {
                        let m = bytes(MASTER.get() as u64 + i, 1)[0];
                        println!(
                            "  mem +{:#x}: init {:02x} ram {:02x} dev {:02x}",
                            i, m, r, d
                        );
                    }
                    shown += 1;
                }
            }
            println!("  {} memory bytes differ", shown);
        }
    }

    /// Prints the per-class counters (and the mismatch kinds, if any).
    pub fn print_stats(&self) {
        if self.stxr_retries > 0 {
            println!(
                "  RAM runs repeated after a store-exclusive failed on the CPU: {}",
                self.stxr_retries
            );
        }
        if self.layout.tail_unmapped {
            println!(
                "  accesses into the unmapped page, compared as faults: {}",
                self.tail_faults
            );
        }
        if self.stats.total_mismatches() > 0 {
            for k in Kind::ALL {
                println!(
                    "  mismatches of kind {:<18} {}",
                    k.name(),
                    self.stats.kinds[k as usize]
                );
            }
        }
        for (i, c) in insn::ALL.iter().enumerate() {
            let (r, s, m) = (
                self.stats.ran[i],
                self.stats.skipped[i],
                self.stats.mismatches[i],
            );
            if r + s + m > 0 {
                println!(
                    "  {:<22} compared {:>7} mismatches {:>4} skipped {:>4}",
                    c.name(),
                    r,
                    m,
                    s
                );
            }
        }
    }
}

fn bump(a: &mut [u32; insn::ALL.len()], i: usize) {
    if let Some(v) = a.get_mut(i) {
        *v += 1;
    }
}

fn class_index(c: Class) -> usize {
    c.index()
}

fn reg_name(r: u8) -> &'static str {
    const N: [&str; 32] = [
        "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
        "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26",
        "x27", "x28", "x29", "x30", "sp",
    ];
    N.get(usize::from(r)).copied().unwrap_or("?")
}

fn same_regs(c: &Case, o1: &Frame, o2: &Frame, delta: u64) -> bool {
    if o1.esr != o2.esr || o1.elr != o2.elr || o1.spsr != o2.spsr || o1.v != o2.v {
        return false;
    }
    for i in 0..31 {
        let b = if i == usize::from(c.rn) && !c.base_loaded {
            o2.x[i].wrapping_sub(delta)
        } else {
            o2.x[i]
        };
        if o1.x[i] != b {
            return false;
        }
    }
    let sp = if c.rn == 31 {
        o2.sp_el0.wrapping_sub(delta)
    } else {
        o2.sp_el0
    };
    o1.sp_el0 == sp
}
