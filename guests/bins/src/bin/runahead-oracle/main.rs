// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `runahead-oracle`: the CPU as the oracle for run-ahead emulation
//! (docs/oracle.md, "The run-ahead oracle").
//!
//! Random sequences ([`seq`]) mixing integer data processing, forward
//! branches, counted loops, barriers and loads/stores run twice from the same
//! registers and memory: once with their pointers on RAM (the CPU does
//! everything), once with two of them on the test device's window, where the
//! first access without a valid syndrome exits to kvm-nisv-vmm, which runs
//! the rest of the sequence ahead (`--nisv-run-ahead`) until a stop rule
//! hands it back to the CPU. Every register, NZCV, q0-q31 and every byte of
//! both regions must then be equal (pointers differ by the regions' distance).
//!
//! Cheap by design: sixteen sequences share one 64 KiB batch (one slot of
//! 4 KiB each), copied to the device and read back once per batch (two exits),
//! so a sequence costs about one exit of its own (the first device access;
//! run-ahead does the rest).
//!
//! Phases: `normal` (60%: MMU on, Normal memory, unaligned accesses),
//! `device` (20%: MMU on, Device-nGnRE mappings, aligned, FEAT_LSE atomics),
//! `mmu-off` (20%: Device-nGnRnE, aligned, atomics).
//!
//! Bootargs: `runahead.seed`, `runahead.count` (default 100000). Exit status
//! 0 iff there were no mismatches and at least `count` sequences compared.

#![no_std]
#![no_main]

mod seq;

use guest_bins::classes;
use guest_rt::mmu::{self, Attr, Granule};
use guest_rt::rng::Rng;
use guest_rt::run::{self, Frame, RunState, SPSR_EL1T_MASKED};
use guest_rt::{Global, dtb, print, println, sysreg, testdev};
use seq::{MAXW, SLOT, Seq};

const DEFAULT_SEED: u64 = 0x7275_6e61_6865_6164; // "runahead"
/// Sequences per batch.
const K: usize = 16;
const REGION: usize = K * SLOT as usize;

#[repr(C, align(65536))]
struct Buf([u8; REGION]);

static RSIDE: Global<Buf> = Global::new(Buf([0; REGION]));
static SCR_A: Global<Buf> = Global::new(Buf([0; REGION]));
static SCR_B: Global<Buf> = Global::new(Buf([0; REGION]));
static MASTER: Global<Buf> = Global::new(Buf([0; REGION]));
static XFER: Global<Buf> = Global::new(Buf([0; REGION]));

#[repr(C, align(4096))]
struct Code([u32; K * MAXW]);
static CODE: Global<Code> = Global::new(Code([0; K * MAXW]));

/// VAs of Device-nGnRE aliases of the RAM-side region and of the window.
const DEV_ALIAS_RAM: u64 = 0x20_0000_0000;
const DEV_ALIAS_WIN: u64 = 0x20_0100_0000;

fn bytes(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: callers pass this program's own buffers with their lengths; the
    // guest is single-threaded.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    /// SCTLR_EL1 for the runs.
    sctlr: u64,
    /// VA of the RAM-side region (RAM run) and of the device-side region.
    ram_va: u64,
    dev_va: u64,
    /// Accesses must be aligned (Device memory).
    aligned: bool,
    /// The runs see memory non-cacheable: clean/invalidate around them.
    flush: bool,
}

#[derive(Default)]
struct Totals {
    ran: u64,
    mism: u64,
    skipped: u64,
    reports: u32,
}

fn addr(buf: &Global<Buf>) -> u64 {
    buf.get() as u64
}

fn state(s: &Seq, ph: &Phase, code: u64, p01: u64, p2: u64) -> RunState {
    let mut st = RunState::zero();
    st.elr = code;
    st.spsr = SPSR_EL1T_MASKED | s.nzcv;
    st.sctlr = ph.sctlr;
    st.v = s.v;
    st.sp = 0x8000_0000;
    let mut x = s.x;
    for (k, &r) in s.roles.p.iter().enumerate() {
        if let Some(v) = x.get_mut(usize::from(r)) {
            *v = v.wrapping_add(if k < 2 { p01 } else { p2 });
        }
    }
    st.store_x(&x);
    st
}

/// The registers agree (pointers differ by their region's distance).
fn same(s: &Seq, o1: &Frame, o2: &Frame, d01: u64, d2: u64) -> bool {
    if o1.esr != o2.esr || o1.elr != o2.elr || o1.spsr != o2.spsr || o1.v != o2.v {
        return false;
    }
    if o1.sp_el0 != o2.sp_el0 {
        return false;
    }
    (0..31u8).all(|i| {
        let d = match s.roles.p.iter().position(|&r| r == i) {
            Some(0 | 1) => d01,
            Some(_) => d2,
            None => 0,
        };
        o2.x[usize::from(i)].wrapping_sub(o1.x[usize::from(i)]) == d
    })
}

fn report(ph: &Phase, n: u64, s: &Seq, o1: &Frame, o2: &Frame, what: &str) {
    print!("MISMATCH [{}] sequence {} ({}): words", ph.name, n, what);
    for w in s.words.iter().take(s.n) {
        print!(" {:08x}", w);
    }
    println!();
    println!(
        "  roles: P0 x{} P1 x{} P2 x{} CNT x{} IDX x{}",
        s.roles.p[0], s.roles.p[1], s.roles.p[2], s.roles.cnt, s.roles.idx
    );
    println!(
        "  ram: ESR {:#x} ELR {:#x} SPSR {:#x} FAR {:#x}",
        o1.esr, o1.elr, o1.spsr, o1.far
    );
    println!(
        "  dev: ESR {:#x} ELR {:#x} SPSR {:#x} FAR {:#x}",
        o2.esr, o2.elr, o2.spsr, o2.far
    );
    for i in 0..31 {
        println!(
            "  x{:<2} init {:#018x} ram {:#018x} dev {:#018x}",
            i, s.x[i], o1.x[i], o2.x[i]
        );
    }
    for i in 0..32 {
        if o1.v[i] != o2.v[i] {
            println!("  q{:<2} ram {:#034x} dev {:#034x}", i, o1.v[i], o2.v[i]);
        }
    }
}

struct Oracle {
    rng: Rng,
    lse: bool,
    tot: Totals,
    seqs: [Option<Seq>; K],
    outs: [Option<(Frame, Frame)>; K],
    batches: u64,
}

impl Oracle {
    fn batch(&mut self, ph: &Phase, want: u64) {
        let master = bytes(addr(&MASTER), REGION);
        // A new random image every eighth batch (generating it costs more
        // guest time than the runs it feeds).
        if self.batches.is_multiple_of(8) {
            for chunk in master.chunks_mut(8) {
                let v = self.rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        self.batches += 1;
        bytes(addr(&RSIDE), REGION).copy_from_slice(master);
        bytes(addr(&SCR_A), REGION).copy_from_slice(master);
        bytes(addr(&SCR_B), REGION).copy_from_slice(master);
        let xfer = addr(&XFER);
        bytes(xfer, REGION).copy_from_slice(master);
        // One exit each way per batch (ADDR/OFFSET/LEN keep their values).
        testdev::setup(xfer, 0, REGION as u64);
        testdev::command(testdev::CMD_TO_DEVICE);

        let n = (want.min(K as u64)) as usize;
        let code = CODE.get() as *mut u32;
        for i in 0..n {
            let s = seq::generate(&mut self.rng, ph.aligned, self.lse && ph.aligned);
            for (j, w) in s.words.iter().take(s.n).enumerate() {
                // SAFETY: slot i of the code buffer, j < MAXW.
                unsafe { code.add(i * MAXW + j).write_volatile(*w) };
            }
            self.seqs[i] = Some(s);
        }
        sysreg::sync_icache(code as u64, (K * MAXW * 4) as u64);
        if ph.flush {
            for b in [&RSIDE, &SCR_A, &SCR_B] {
                sysreg::clean_inval(addr(b), REGION as u64);
            }
            sysreg::clean_inval(code as u64, (K * MAXW * 4) as u64);
        }
        let d01 = ph.dev_va.wrapping_sub(ph.ram_va);
        let d2 = addr(&SCR_B).wrapping_sub(addr(&SCR_A));
        for i in 0..n {
            let Some(s) = self.seqs[i].as_ref() else {
                continue;
            };
            let slot = (i as u64) * SLOT;
            let c = code as u64 + (i * MAXW * 4) as u64;
            let o1 = run::run(&state(s, ph, c, ph.ram_va + slot, addr(&SCR_A) + slot));
            let o2 = run::run(&state(s, ph, c, ph.dev_va + slot, addr(&SCR_B) + slot));
            self.outs[i] = Some((o1, o2));
        }
        if ph.flush {
            for b in [&RSIDE, &SCR_A, &SCR_B] {
                sysreg::clean_inval(addr(b), REGION as u64);
            }
        }
        testdev::command(testdev::CMD_FROM_DEVICE);
        let (rside, xf) = (bytes(addr(&RSIDE), REGION), bytes(xfer, REGION));
        let (sa, sb) = (bytes(addr(&SCR_A), REGION), bytes(addr(&SCR_B), REGION));
        for i in 0..n {
            let (Some(s), Some((o1, o2))) = (self.seqs[i].as_ref(), self.outs[i].as_ref()) else {
                continue;
            };
            let num = self.tot.ran + self.tot.skipped;
            if !o1.done() {
                self.tot.skipped += 1;
                if self.tot.reports < 5 {
                    self.tot.reports += 1;
                    println!(
                        "[{}] sequence {} skipped: RAM run ended with ESR {:#x} ELR {:#x} FAR {:#x}",
                        ph.name, num, o1.esr, o1.elr, o1.far
                    );
                }
                continue;
            }
            self.tot.ran += 1;
            let r = i * SLOT as usize..(i + 1) * SLOT as usize;
            let mem_ok =
                rside.get(r.clone()) == xf.get(r.clone()) && sa.get(r.clone()) == sb.get(r);
            let regs_ok = same(s, o1, o2, d01, d2);
            if !(mem_ok && regs_ok) {
                self.tot.mism += 1;
                if self.tot.reports < 20 {
                    self.tot.reports += 1;
                    report(
                        ph,
                        num,
                        s,
                        o1,
                        o2,
                        if regs_ok { "memory" } else { "registers" },
                    );
                    if !mem_ok {
                        let base = i * SLOT as usize;
                        let mut shown = 0;
                        for j in 0..SLOT as usize {
                            let (a, b) = (rside[base + j], xf[base + j]);
                            let (c, d) = (sa[base + j], sb[base + j]);
                            if (a != b || c != d) && shown < 16 {
                                shown += 1;
                                println!(
                                    "  +{:#05x}: region ram {:02x} dev {:02x}; scratch a {:02x} b {:02x}",
                                    j, a, b, c, d
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[unsafe(no_mangle)]
fn guest_main() -> u8 {
    let args = guest_rt::bootargs();
    let seed = dtb::arg_u64(args, "runahead.seed").unwrap_or(DEFAULT_SEED);
    let count = dtb::arg_u64(args, "runahead.count").unwrap_or(100_000);
    let feat = classes::features();
    println!(
        "runahead-oracle: seed {} count {} LSE {}",
        seed, count, feat.lse
    );
    if !sysreg::has_gran4() {
        println!("runahead-oracle: FAIL: no 4 KiB granule");
        return 2;
    }
    let tables = mmu::standard(Granule::K4, Attr::Normal).and_then(|mut t| {
        t.map(DEV_ALIAS_RAM, addr(&RSIDE), REGION as u64, Attr::Device)?;
        t.map(DEV_ALIAS_WIN, testdev::WINDOW, REGION as u64, Attr::Device)?;
        Ok(t)
    });
    match tables {
        Ok(t) => t.enable(),
        Err(e) => {
            println!("runahead-oracle: FAIL: page tables: {:?}", e);
            return 2;
        }
    }
    let canon = run::canonical_sctlr();
    let phases = [
        Phase {
            name: "normal",
            sctlr: canon,
            ram_va: addr(&RSIDE),
            dev_va: testdev::WINDOW,
            aligned: false,
            flush: false,
        },
        Phase {
            name: "device",
            sctlr: canon,
            ram_va: DEV_ALIAS_RAM,
            dev_va: DEV_ALIAS_WIN,
            aligned: true,
            flush: true,
        },
        Phase {
            name: "mmu-off",
            sctlr: canon & !run::SCTLR_M,
            ram_va: addr(&RSIDE),
            dev_va: testdev::WINDOW,
            aligned: true,
            flush: true,
        },
    ];
    let shares = [count - 2 * (count / 5), count / 5, count / 5];
    let hz = sysreg::counter_freq().max(1);
    let t0 = sysreg::counter();
    let nisv0 = testdev::nisv_count();
    let mut o = Oracle {
        rng: Rng::new(seed),
        lse: feat.lse,
        tot: Totals::default(),
        seqs: [const { None }; K],
        outs: [const { None }; K],
        batches: 0,
    };
    let mut next_progress = 10_000;
    for (ph, share) in phases.iter().zip(shares) {
        let (ran0, mism0, skip0) = (o.tot.ran, o.tot.mism, o.tot.skipped);
        let nisv_ph = testdev::nisv_count();
        let mut attempts = 0u64;
        while o.tot.ran - ran0 < share && attempts < share.saturating_mul(2) + 64 {
            let want = share - (o.tot.ran - ran0);
            let before = o.tot.ran + o.tot.skipped;
            o.batch(ph, want);
            attempts += o.tot.ran + o.tot.skipped - before;
            if o.tot.ran >= next_progress {
                next_progress += 10_000;
                println!(
                    "runahead-oracle: progress {}/{}, {} mismatches, {} s",
                    o.tot.ran,
                    count,
                    o.tot.mism,
                    (sysreg::counter() - t0) / hz
                );
            }
        }
        println!(
            "runahead-oracle: phase {}: {} sequences, {} mismatches, {} skipped, {} NISV exits",
            ph.name,
            o.tot.ran - ran0,
            o.tot.mism - mism0,
            o.tot.skipped - skip0,
            testdev::nisv_count().wrapping_sub(nisv_ph)
        );
    }
    let ms = (sysreg::counter() - t0).saturating_mul(1000) / hz;
    println!(
        "runahead-oracle: {} ms, {} us per sequence (two runs), {} NISV exits, {} skipped",
        ms,
        ms.saturating_mul(1000) / o.tot.ran.max(1),
        testdev::nisv_count().wrapping_sub(nisv0),
        o.tot.skipped
    );
    println!(
        "runahead-oracle: {} sequences, {} mismatches, seed {}",
        o.tot.ran, o.tot.mism, seed
    );
    if o.tot.mism == 0 && o.tot.ran >= count {
        println!("runahead-oracle: PASS");
        0
    } else {
        println!("runahead-oracle: FAIL");
        1
    }
}
