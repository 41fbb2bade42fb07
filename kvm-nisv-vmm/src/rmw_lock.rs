// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Atomicity of emulated read-modify-write instructions across vCPUs.
//!
//! kvm-nisv's emulator performs an LSE atomic, a CAS or a fused
//! load-exclusive/store-exclusive pair on a device as separate bus reads and
//! writes (docs/emulator.md: "a device sees no atomicity"). Each bus device has
//! its own lock, held for one access only, so with two vCPUs an `ldadd` on one
//! could read, the other `ldadd` read the same value, and one increment be lost.
//! The architecture requires an atomic to be single-copy atomic with respect to
//! every other access to the location.
//!
//! The VMM therefore orders device accesses with one VM-wide reader/writer
//! lock: a NISV exit is handled under the write lock (the VMM only knows the
//! instruction after decoding it, so every NISV exit takes it), an MMIO exit
//! under the read lock (it is one bus access, atomic by the device's own lock).
//! So no other vCPU's device access falls between the read and the write of an
//! emulated read-modify-write. The cost is that NISV exits of different vCPUs
//! are emulated one at a time; the kernel's exit and entry paths still run in
//! parallel.
//!
//! Deadlock freedom: the lock is taken after `KVM_RUN` returned and released
//! before the next one, and nothing else is waited for while holding it except
//! the vGIC pause (`gic.rs`), which only needs the other vCPUs to be out of
//! `KVM_RUN`: a vCPU thread waiting for this lock is.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::new(());

/// Held while one exit is handled.
#[derive(Debug)]
pub enum ExitGuard {
    /// An MMIO exit: shared.
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    /// A NISV exit: exclusive.
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// Take the lock for one exit: exclusively for a NISV exit, shared for MMIO.
/// A poisoned lock (a panic elsewhere) still orders accesses.
pub fn for_exit(nisv: bool) -> ExitGuard {
    if nisv {
        ExitGuard::Exclusive(LOCK.write().unwrap_or_else(|e| e.into_inner()))
    } else {
        ExitGuard::Shared(LOCK.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A read-then-write "emulated atomic" under the exclusive guard never loses
    /// an update, while plain accesses under the shared guard run alongside.
    #[test]
    fn exclusive_exits_do_not_interleave() {
        let cell = AtomicU64::new(0);
        let n = 2000;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..n {
                        let _g = for_exit(true);
                        let v = cell.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        cell.store(v + 1, Ordering::Relaxed);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..n {
                    let _g = for_exit(false);
                    let _ = cell.load(Ordering::Relaxed);
                }
            });
        });
        assert_eq!(cell.load(Ordering::Relaxed), 2 * n);
    }
}
