// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

// The decoder benchmark proper; included by benches/decode.rs except on musl,
// where the reference decoders (C libraries) are not built.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvm_nisv::decode::decode;

/// The seed of the word mix: fixed, so every run measures the same words.
const SEED: u64 = 0x6b76_6d2d_6e69_7376;
/// Words in the mix.
const MIX: usize = 4096;
/// Words per class in `decode-class` (fewer if the pool has fewer).
const PER_CLASS: usize = 512;
/// Random words drawn to fill the per-class groups.
const POOL: usize = 1 << 21;

/// SplitMix64, as in `tests/decode_diff.rs`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The `i`-th word of the seeded stream: one in 256 from the DC ZVA family
/// (and its SYS neighbours), the rest from the load/store space (bit 27 = 1,
/// bit 25 = 0). Same rule as `random_words` in `tests/decode_diff.rs`.
fn words(seed: u64, count: usize) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    (0..count)
        .map(|i| {
            let r = rng.next();
            if i % 256 == 0 {
                0xd50b_7420 ^ ((r as u32) & 0x0000_f0ff)
            } else {
                ((r as u32) | 0x0800_0000) & !0x0200_0000
            }
        })
        .collect()
}

fn ours(words: &[u32]) -> usize {
    words
        .iter()
        .filter(|&&w| black_box(decode(black_box(w))).is_ok())
        .count()
}

fn bad64(words: &[u32]) -> usize {
    words
        .iter()
        .filter(|&&w| black_box(bad64::decode(black_box(w), 0)).is_ok())
        .count()
}

fn ours_text(words: &[u32], buf: &mut String) -> usize {
    let mut n = 0;
    for &w in words {
        buf.clear();
        if let Ok(insn) = decode(black_box(w)) {
            let _ = write!(buf, "{insn}");
            n += black_box(buf.len());
        }
    }
    n
}

fn bad64_text(words: &[u32], buf: &mut String) -> usize {
    let mut n = 0;
    for &w in words {
        buf.clear();
        if let Ok(insn) = bad64::decode(black_box(w), 0) {
            let _ = write!(buf, "{insn}");
            n += black_box(buf.len());
        }
    }
    n
}

fn capstone_text(cs: &capstone::Capstone, words: &[u32]) -> usize {
    let mut n = 0;
    for &w in words {
        if let Ok(insns) = cs.disasm_count(&black_box(w).to_le_bytes(), 0, 1)
            && let Some(i) = insns.iter().next()
        {
            n += black_box(i.mnemonic().map_or(0, str::len) + i.op_str().map_or(0, str::len));
        }
    }
    n
}

fn bench_mix(c: &mut Criterion) {
    let mix = words(SEED, MIX);
    let handled = mix.iter().filter(|&&w| decode(w).is_ok()).count();
    println!(
        "decode-mix: {MIX} words (seed {SEED:#x}), {handled} decoded by kvm-nisv, {} by bad64",
        bad64(&mix)
    );
    let cs = {
        use capstone::prelude::*;
        capstone::Capstone::new()
            .arm64()
            .mode(capstone::arch::arm64::ArchMode::Arm)
            .build()
            .expect("capstone")
    };
    let mut g = c.benchmark_group("decode-mix");
    g.throughput(Throughput::Elements(MIX as u64));
    g.bench_function("kvm-nisv", |b| b.iter(|| ours(&mix)));
    g.bench_function("bad64", |b| b.iter(|| bad64(&mix)));
    let mut buf = String::with_capacity(128);
    g.bench_function("kvm-nisv+text", |b| b.iter(|| ours_text(&mix, &mut buf)));
    g.bench_function("bad64+text", |b| b.iter(|| bad64_text(&mix, &mut buf)));
    g.bench_function("capstone+text", |b| b.iter(|| capstone_text(&cs, &mix)));
    g.finish();
}

fn bench_class(c: &mut Criterion) {
    // Group a larger draw of the same stream by our class, up to PER_CLASS
    // words each, so rare classes (DC ZVA, CAS) get enough words.
    let mut by_class: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for w in words(SEED, POOL) {
        let key = match decode(w) {
            Ok(insn) => format!("{:?}", insn.class),
            Err(_) => "Unsupported".to_string(),
        };
        let v = by_class.entry(key).or_default();
        if v.len() < PER_CLASS {
            v.push(w);
        }
    }
    let mut g = c.benchmark_group("decode-class");
    for (class, ws) in &by_class {
        println!("decode-class: {class}: {} words", ws.len());
        g.throughput(Throughput::Elements(ws.len() as u64));
        g.bench_with_input(BenchmarkId::new("kvm-nisv", class), ws, |b, ws| {
            b.iter(|| ours(ws))
        });
        g.bench_with_input(BenchmarkId::new("bad64", class), ws, |b, ws| {
            b.iter(|| bad64(ws))
        });
    }
    g.finish();
}

/// Short measurements: `scripts/bench` keeps the whole run within a few
/// minutes on a shared two-core machine; ratios need no more.
fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(900))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench_mix, bench_class
}
criterion_main!(benches);
