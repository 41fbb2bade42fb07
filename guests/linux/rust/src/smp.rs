// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Two CPUs at once: each thread is pinned to its CPU, runs the device I/O
//! workload on its own half of the window, and updates two shared counters in
//! the window:
//!
//! * `lse`: `AtomicU64::fetch_add` compiled with LSE (one `LDADD`);
//! * `locked`: a plain read-increment-write under a spinlock whose acquire is
//!   `AtomicU32::swap`, which without LSE the compiler turns into an
//!   `LDAXR`/`STXR` loop (exclusives), released with a store-release.
//!
//! Both totals must be exactly threads × iterations.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::testdev::{Ctrl, Mapping};
use crate::workload::{REGION_LEN, Rng, StepResult, Work};

/// Window offsets of the counters (each in its own 64-byte granule).
pub const COUNTER_LSE: usize = 0xf_0000;
pub const LOCK: usize = 0xf_0040;
pub const COUNTER_LOCKED: usize = 0xf_0080;
/// Where thread k's workload region starts.
pub const REGION_STRIDE: usize = 0x1_0000;

#[target_feature(enable = "lse")]
fn add_lse(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn lock(l: &AtomicU32) {
    while l.swap(1, Ordering::Acquire) != 0 {
        std::hint::spin_loop();
    }
}

fn unlock(l: &AtomicU32) {
    l.store(0, Ordering::Release);
}

fn pin(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET initialise it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid; `cpu` is below CPU_SETSIZE (checked by the caller: 0 or 1).
    unsafe {
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: valid set of the right size for the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Run on `threads` CPUs; prints one line per step and thread and one for the
/// counters. Returns whether everything passed.
pub fn run(map: &Mapping, ctrl: &Ctrl, threads: usize, iters: u64, prog: &str) -> bool {
    assert!(threads * REGION_STRIDE <= COUNTER_LSE && COUNTER_LOCKED + 8 <= map.len());
    if !std::arch::is_aarch64_feature_detected!("lse") {
        println!("@nisv {prog} smp counters FAIL the CPU has no LSE atomics");
        return false;
    }
    let base = map.ptr();
    // Threads get the address (a raw pointer is not Send).
    let base_addr = base as usize;
    // SAFETY: the counters are naturally aligned words inside the mapping; all
    // accesses to them go through these atomics or volatile accesses.
    let (lse, lk, locked) = unsafe {
        (
            &*base.add(COUNTER_LSE).cast::<AtomicU64>(),
            &*base.add(LOCK).cast::<AtomicU32>(),
            base.add(COUNTER_LOCKED).cast::<u64>(),
        )
    };
    // SAFETY: as above.
    unsafe { locked.write_volatile(0) };
    lse.store(0, Ordering::SeqCst);
    lk.store(0, Ordering::SeqCst);
    let start = Barrier::new(threads);
    let locked_addr = locked as usize;
    let results: Vec<(bool, Vec<StepResult>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let start = &start;
                s.spawn(move || {
                    let pinned = pin(k);
                    let base = base_addr as *mut u8;
                    // SAFETY: thread k's region is disjoint from the others' and from
                    // the counters (asserted above) and inside the mapping.
                    let dev = unsafe {
                        std::slice::from_raw_parts_mut(base.add(k * REGION_STRIDE), REGION_LEN)
                    };
                    let mut w = Work {
                        dev,
                        window_offset: k * REGION_STRIDE,
                        ram: vec![0; REGION_LEN],
                        ctrl,
                        rng: Rng::new(0x5eed_0000 + k as u64),
                    };
                    start.wait();
                    let steps = w.run();
                    let p = locked_addr as *mut u64;
                    for _ in 0..iters {
                        // SAFETY: checked once at start of `run`.
                        unsafe { add_lse(lse) };
                        lock(lk);
                        // SAFETY: the counter word; the lock makes this read-modify-write exclusive.
                        unsafe { p.write_volatile(p.read_volatile() + 1) };
                        unlock(lk);
                    }
                    (pinned, steps)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, Vec::new())))
            .collect()
    });
    let mut ok = true;
    for (k, (pinned, steps)) in results.iter().enumerate() {
        if !pinned {
            println!("@nisv {prog} smp cpu{k} FAIL could not pin the thread");
            ok = false;
        }
        for r in steps {
            ok &= r.ok;
            println!(
                "@nisv {prog} smp cpu{k} {} {} bytes={} nisv={}{}{}",
                r.name,
                if r.ok { "ok" } else { "FAIL" },
                r.bytes,
                r.nisv,
                if r.detail.is_empty() { "" } else { " " },
                r.detail
            );
        }
    }
    let want = threads as u64 * iters;
    let got_lse = lse.load(Ordering::SeqCst);
    // SAFETY: the counter word; the threads are done.
    let got_locked = unsafe { locked.read_volatile() };
    let c_ok = got_lse == want && got_locked == want;
    ok &= c_ok;
    println!(
        "@nisv {prog} smp counters {} lse={got_lse} locked={got_locked} expected={want} threads={threads}",
        if c_ok { "ok" } else { "FAIL" }
    );
    ok
}
