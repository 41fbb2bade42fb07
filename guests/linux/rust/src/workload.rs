// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device I/O workload: ordinary Rust over a mapping of device memory.
//!
//! Each step is one function run twice, on the device region and on a RAM
//! buffer of the same size, so both get exactly the same work; then the
//! device's own hash of the range (`CMD_HASH`, one MMIO exit, independent of
//! the emulated loads) must equal the hash of the RAM copy. At the end the
//! whole region is read back with `copy_from_slice` (libc memcpy) and compared
//! byte for byte.
//!
//! Nothing here is written to provoke particular instructions: copies are
//! `copy_from_slice`/`fill`, structs are assigned, loops are indexed loops, and
//! the compiler (opt-level 3) and musl choose the instructions. The only
//! constraint is the memory type: `/dev/mem` and UIO map device memory as
//! Device-nGnRnE, where every access must be aligned to its size (an unaligned
//! one is an alignment fault, SIGBUS), so offsets and lengths are multiples of
//! 16 and structs are 32 bytes, as a driver's descriptors would be.

// The indexed loops, element-wise struct copies and manual swaps are the
// workload: what ordinary code does, compiled as the compiler sees fit.
#![allow(
    clippy::needless_range_loop,
    clippy::manual_memcpy,
    clippy::manual_swap
)]
use std::hint::black_box;

use crate::testdev::{Ctrl, fnv1a64};

/// Bytes of a region the workload uses.
pub const REGION_LEN: usize = 0x5a00;

/// A DMA-descriptor-like record (32 bytes, 8-byte aligned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub id: u16,
    pub cookie: [u64; 2],
}

const DESCS: usize = 64;
const DESC_AT: usize = 0x3000;

/// xorshift64* (deterministic data from a seed).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// One step's outcome.
#[derive(Debug)]
pub struct StepResult {
    pub name: &'static str,
    pub bytes: usize,
    pub ok: bool,
    pub detail: String,
    pub nisv: u64,
}

/// The device region (a slice of the mapping) and its RAM twin.
pub struct Work<'a> {
    pub dev: &'a mut [u8],
    /// Offset of `dev` inside the data window (for the device's hash).
    pub window_offset: usize,
    pub ram: Vec<u8>,
    pub ctrl: &'a Ctrl,
    pub rng: Rng,
}

fn typed<T>(b: &mut [u8], at: usize, n: usize) -> &mut [T] {
    let bytes = n * std::mem::size_of::<T>();
    let s = &mut b[at..at + bytes];
    assert_eq!(s.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: `s` is `bytes` long and aligned for T (checked); T is a plain-data
    // integer or `Desc`, for which every bit pattern is valid.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<T>(), n) }
}

// The steps: each is applied to the device and to RAM alike.

const COPIES: [(usize, usize); 5] = [(0, 16), (64, 48), (256, 256), (1024, 2048), (4096, 4096)];

fn step_memcpy(b: &mut [u8], src: &[u8]) {
    for (off, len) in COPIES {
        b[off..off + len].copy_from_slice(&src[off..off + len]);
    }
}

fn step_memset(b: &mut [u8]) {
    b[0x2000..0x2800].fill(0xa5);
    b[0x2800..0x2860].fill(0);
    b[0x2900..0x2d00].fill(0x5a);
}

fn step_struct_copy(b: &mut [u8], src: &[Desc]) {
    let d: &mut [Desc] = typed(b, DESC_AT, DESCS);
    for i in 0..DESCS {
        d[i] = src[i];
    }
}

fn step_struct_update(b: &mut [u8]) {
    let d: &mut [Desc] = typed(b, DESC_AT, DESCS);
    // Field updates, then whole-struct moves (reverse the second half).
    for x in d.iter_mut() {
        x.len = x.len.wrapping_mul(3).wrapping_add(1);
        x.flags ^= 0x8000;
        x.cookie[1] = x.cookie[0] ^ x.addr;
    }
    let half = DESCS / 2;
    for i in 0..half / 2 {
        let a = d[half + i];
        d[half + i] = d[DESCS - 1 - i];
        d[DESCS - 1 - i] = a;
    }
}

fn step_loops(b: &mut [u8], seed: u32) -> u64 {
    {
        let w: &mut [u32] = typed(b, 0x4000, 512);
        for (i, x) in w.iter_mut().enumerate() {
            *x = (i as u32).wrapping_mul(0x9e37_79b9) ^ seed;
        }
    }
    {
        let w: &mut [u64] = typed(b, 0x4800, 256);
        for i in 0..w.len() {
            w[i] = (i as u64) << 32 | u64::from(seed) ^ i as u64;
        }
    }
    let sum = {
        let w: &mut [u64] = typed(b, 0x4800, 256);
        let mut s = 0u64;
        for i in 0..w.len() {
            s = s.wrapping_add(w[i]);
        }
        s
    };
    {
        let w: &mut [u16] = typed(b, 0x5000, 1024);
        for i in 0..w.len() {
            w[i] = w[i].wrapping_mul(3).wrapping_add(i as u16);
        }
    }
    {
        let key = seed.to_le_bytes();
        let w = &mut b[0x5800..0x5a00];
        for i in 0..w.len() {
            w[i] ^= key[i & 3].wrapping_add(i as u8);
        }
    }
    sum
}

impl Work<'_> {
    fn check(&self, name: &'static str, range: std::ops::Range<usize>, nisv0: u64) -> StepResult {
        let want = fnv1a64(&self.ram[range.clone()]);
        let got = self
            .ctrl
            .hash(self.window_offset + range.start, range.len());
        let nisv = self.ctrl.nisv_count().wrapping_sub(nisv0);
        let ok = got == Some(want);
        StepResult {
            name,
            bytes: range.len(),
            ok,
            detail: if ok {
                String::new()
            } else {
                format!("device hash {got:x?} != RAM hash {want:#x}")
            },
            nisv,
        }
    }

    /// Run every step; one result per step.
    pub fn run(&mut self) -> Vec<StepResult> {
        assert!(self.dev.len() >= REGION_LEN && self.ram.len() >= REGION_LEN);
        let mut out = Vec::new();
        // The device region starts as whatever is there: zero it and the RAM
        // twin (the device's CMD_FILL, one exit), so both start equal.
        let n0 = self.ctrl.nisv_count();
        self.ctrl.fill(self.window_offset, REGION_LEN, 0);
        self.ram[..REGION_LEN].fill(0);
        out.push(self.check("fill", 0..REGION_LEN, n0));
        let mut src = vec![0u8; REGION_LEN];

        let n0 = self.ctrl.nisv_count();
        self.rng.fill(&mut src);
        step_memcpy(self.dev, &src);
        step_memcpy(&mut self.ram, &src);
        out.push(self.check("memcpy", 0..0x2000, n0));

        let n0 = self.ctrl.nisv_count();
        step_memset(self.dev);
        step_memset(&mut self.ram);
        out.push(self.check("memset", 0x2000..0x2d00, n0));

        let n0 = self.ctrl.nisv_count();
        let descs: Vec<Desc> = (0..DESCS)
            .map(|i| Desc {
                addr: self.rng.next_u64(),
                len: self.rng.next_u64() as u32,
                flags: i as u16,
                id: (DESCS - i) as u16,
                cookie: [self.rng.next_u64(), self.rng.next_u64()],
            })
            .collect();
        step_struct_copy(self.dev, &descs);
        step_struct_copy(&mut self.ram, &descs);
        step_struct_update(self.dev);
        step_struct_update(&mut self.ram);
        out.push(self.check("structs", DESC_AT..DESC_AT + DESCS * 32, n0));

        let n0 = self.ctrl.nisv_count();
        let seed = self.rng.next_u64() as u32;
        let s_dev = step_loops(self.dev, seed);
        let s_ram = step_loops(&mut self.ram, seed);
        let mut r = self.check("loops", 0x4000..0x5a00, n0);
        if s_dev != s_ram {
            r.ok = false;
            r.detail = format!("sum over the device {s_dev:#x} != over RAM {s_ram:#x}");
        }
        out.push(r);

        // Read everything back through the mapping (memcpy from the device).
        let n0 = self.ctrl.nisv_count();
        let mut back = vec![0u8; REGION_LEN];
        // black_box: the compiler must not reuse what it knows was written.
        let dev: &[u8] = black_box(&*self.dev);
        back.copy_from_slice(&dev[..REGION_LEN]);
        let bad = back
            .iter()
            .zip(&self.ram[..REGION_LEN])
            .filter(|(a, b)| a != b)
            .count();
        let first = back
            .iter()
            .zip(&self.ram[..REGION_LEN])
            .position(|(a, b)| a != b);
        out.push(StepResult {
            name: "readback",
            bytes: REGION_LEN,
            ok: bad == 0,
            detail: if bad == 0 {
                String::new()
            } else {
                format!("{bad} bytes differ, first at +{first:#x?}")
            },
            nisv: self.ctrl.nisv_count().wrapping_sub(n0),
        });
        out
    }
}
