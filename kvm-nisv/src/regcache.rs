// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A per-exit register cache, and a counting wrapper to measure register
//! traffic.
//!
//! On KVM every [`VcpuRegs`] call is a `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG`
//! ioctl, and arm64 KVM has no batched register access. [`RegCache`] wraps any
//! [`VcpuRegs`] for the duration of one exit:
//!
//! * each register is read from the backend **at most once**; later reads of
//!   it, and reads of a register written meanwhile, are answered from the
//!   cache;
//! * writes are buffered and [`RegCache::flush`] writes back **only the
//!   registers whose value changed**, in a fixed order: X0..X30, SP_EL0,
//!   SP_EL1, V0..V31, the system registers (in [`SysReg::ALL`] order), PSTATE,
//!   and the PC last;
//! * a write that stores the value the register already holds is dropped.
//!
//! The cache is only valid while the vCPU is stopped: flush it (or drop it
//! after flushing) before the next `KVM_RUN`. A register the backend cannot
//! read is not cached; the error is returned each time.
//!
//! [`CountingRegs`] counts the calls that reach its backend, per register, so
//! tests can assert that no register was read twice and compare the traffic of
//! an exit with its architectural floor (`docs/performance.md`).

use crate::regs::{Reg, RegError, SysReg, VcpuRegs};

/// Number of 64-bit core registers the cache keeps: X0..X30, SP_EL0, SP_EL1,
/// PC, PSTATE.
const CORE: usize = 35;
const SP_EL0: usize = 31;
const SP_EL1: usize = 32;
const PC: usize = 33;
const PSTATE: usize = 34;
const NSYS: usize = SysReg::ALL.len();

/// One cached 64-bit register: its value (if known) and whether it must be
/// written back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot<T> {
    /// The value the backend holds (`orig`) when it was read, or `None`.
    orig: Option<T>,
    /// The current value, when known (read or written).
    cur: Option<T>,
}

impl<T: Copy + PartialEq> Slot<T> {
    fn dirty(&self) -> bool {
        match (self.orig, self.cur) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(c)) => o != c,
        }
    }
}

/// Index of a 64-bit register in the cache, `None` for names the backend must
/// judge (`X(31)` and above).
fn core_index(reg: Reg) -> Option<usize> {
    match reg {
        Reg::X(n) if n <= 30 => Some(usize::from(n)),
        Reg::X(_) => None,
        Reg::SpEl0 => Some(SP_EL0),
        Reg::SpEl1 => Some(SP_EL1),
        Reg::Pc => Some(PC),
        Reg::Pstate => Some(PSTATE),
        Reg::Sys(_) => None,
    }
}

fn sys_index(s: SysReg) -> Option<usize> {
    SysReg::ALL.iter().position(|&r| r == s)
}

/// Register traffic that reached the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// 64-bit register reads.
    pub get: u32,
    /// SIMD&FP register reads.
    pub get_v: u32,
    /// 64-bit register writes.
    pub set: u32,
    /// SIMD&FP register writes.
    pub set_v: u32,
}

impl Traffic {
    /// All calls.
    pub fn total(&self) -> u32 {
        self.get + self.get_v + self.set + self.set_v
    }
}

/// A [`VcpuRegs`] wrapper that reads each register at most once and writes
/// back only what changed (see the module documentation).
#[derive(Clone, Debug)]
pub struct RegCache<R> {
    inner: R,
    core: [Slot<u64>; CORE],
    sys: [Slot<u64>; NSYS],
    v: [Slot<u128>; 32],
    traffic: Traffic,
}

impl<R: VcpuRegs> RegCache<R> {
    /// An empty cache over `inner`.
    pub fn new(inner: R) -> Self {
        RegCache {
            inner,
            core: [Slot::default(); CORE],
            sys: [Slot::default(); NSYS],
            v: [Slot::default(); 32],
            traffic: Traffic::default(),
        }
    }

    /// The backend.
    pub fn inner(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Calls made on the backend so far (reads, and writes by
    /// [`RegCache::flush`]).
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Whether some register holds a value not yet written back.
    pub fn is_dirty(&self) -> bool {
        self.core.iter().any(Slot::dirty)
            || self.sys.iter().any(Slot::dirty)
            || self.v.iter().any(Slot::dirty)
    }

    /// The cached value of `reg` if it was read or written, without a backend
    /// call.
    pub fn peek(&self, reg: Reg) -> Option<u64> {
        match reg {
            Reg::Sys(s) => sys_index(s).and_then(|i| self.sys[i].cur),
            r => core_index(r).and_then(|i| self.core[i].cur),
        }
    }

    /// Forget every buffered write (the backend keeps its values; cached reads
    /// stay valid).
    pub fn discard_writes(&mut self) {
        for s in self.core.iter_mut().chain(self.sys.iter_mut()) {
            s.cur = s.orig;
        }
        for s in self.v.iter_mut() {
            s.cur = s.orig;
        }
    }

    /// Write back every changed register: X0..X30, SP_EL0, SP_EL1, V0..V31,
    /// system registers, PSTATE, then PC. On success the backend holds every
    /// value and nothing is dirty. On an error the registers before the failing
    /// one have been written and stay clean; the rest are still dirty.
    pub fn flush(&mut self) -> Result<(), RegError> {
        for i in 0..CORE {
            if i == PSTATE || i == PC {
                continue;
            }
            self.flush_core(i)?;
        }
        for n in 0..32u8 {
            let s = &mut self.v[usize::from(n)];
            if let (true, Some(v)) = (s.dirty(), s.cur) {
                self.inner.set_v(n, v)?;
                self.traffic.set_v += 1;
                s.orig = Some(v);
            }
        }
        for (i, &r) in SysReg::ALL.iter().enumerate() {
            let s = &mut self.sys[i];
            if let (true, Some(v)) = (s.dirty(), s.cur) {
                self.inner.set(Reg::Sys(r), v)?;
                self.traffic.set += 1;
                s.orig = Some(v);
            }
        }
        self.flush_core(PSTATE)?;
        self.flush_core(PC)
    }

    fn flush_core(&mut self, i: usize) -> Result<(), RegError> {
        let s = &mut self.core[i];
        if let (true, Some(v)) = (s.dirty(), s.cur) {
            let reg = match i {
                SP_EL0 => Reg::SpEl0,
                SP_EL1 => Reg::SpEl1,
                PC => Reg::Pc,
                PSTATE => Reg::Pstate,
                n => Reg::X(n as u8),
            };
            self.inner.set(reg, v)?;
            self.traffic.set += 1;
            s.orig = Some(v);
        }
        Ok(())
    }

    /// Flush, then return the backend.
    pub fn finish(mut self) -> Result<R, RegError> {
        self.flush()?;
        Ok(self.inner)
    }
}

impl<R: VcpuRegs> VcpuRegs for RegCache<R> {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        let slot = match reg {
            Reg::Sys(s) => sys_index(s).map(|i| &mut self.sys[i]),
            r => core_index(r).map(|i| &mut self.core[i]),
        };
        let Some(slot) = slot else {
            self.traffic.get += 1;
            return self.inner.get(reg);
        };
        if let Some(v) = slot.cur {
            return Ok(v);
        }
        self.traffic.get += 1;
        let v = self.inner.get(reg)?;
        slot.orig = Some(v);
        slot.cur = Some(v);
        Ok(v)
    }

    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        let slot = match reg {
            Reg::Sys(s) => sys_index(s).map(|i| &mut self.sys[i]),
            r => core_index(r).map(|i| &mut self.core[i]),
        };
        match slot {
            Some(s) => {
                s.cur = Some(value);
                Ok(())
            }
            None => {
                self.traffic.set += 1;
                self.inner.set(reg, value)
            }
        }
    }

    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        let Some(slot) = self.v.get_mut(usize::from(n)) else {
            self.traffic.get_v += 1;
            return self.inner.get_v(n);
        };
        if let Some(v) = slot.cur {
            return Ok(v);
        }
        self.traffic.get_v += 1;
        let v = self.inner.get_v(n)?;
        slot.orig = Some(v);
        slot.cur = Some(v);
        Ok(v)
    }

    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        match self.v.get_mut(usize::from(n)) {
            Some(s) => {
                s.cur = Some(value);
                Ok(())
            }
            None => {
                self.traffic.set_v += 1;
                self.inner.set_v(n, value)
            }
        }
    }
}

/// One call that reached a [`CountingRegs`] backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegCall {
    /// `get(reg)`.
    Get(Reg),
    /// `set(reg, _)`.
    Set(Reg),
    /// `get_v(n)`.
    GetV(u8),
    /// `set_v(n, _)`.
    SetV(u8),
}

/// A [`VcpuRegs`] wrapper that records every call, in order, for tests and
/// benchmarks: on KVM each call is one ioctl.
#[derive(Clone, Debug, Default)]
pub struct CountingRegs<R> {
    /// The backend.
    pub inner: R,
    /// The calls, in order (at most [`CountingRegs::MAX_LOG`] are kept; the
    /// counters in [`CountingRegs::traffic`] go on counting).
    pub log: CallLog,
    traffic: Traffic,
}

/// A fixed-capacity call log (no allocation): up to 256 calls.
#[derive(Clone, Debug)]
pub struct CallLog {
    calls: [Option<RegCall>; 256],
    len: usize,
}

impl Default for CallLog {
    fn default() -> Self {
        CallLog {
            calls: [None; 256],
            len: 0,
        }
    }
}

impl CallLog {
    fn push(&mut self, c: RegCall) {
        if let Some(slot) = self.calls.get_mut(self.len) {
            *slot = Some(c);
            self.len += 1;
        }
    }

    /// The recorded calls.
    pub fn iter(&self) -> impl Iterator<Item = RegCall> + '_ {
        self.calls.iter().take(self.len).filter_map(|c| *c)
    }

    /// Number of recorded calls.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget the calls.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<R: VcpuRegs> CountingRegs<R> {
    /// Most calls the log keeps.
    pub const MAX_LOG: usize = 256;

    /// A counter over `inner`.
    pub fn new(inner: R) -> Self {
        CountingRegs {
            inner,
            log: CallLog::default(),
            traffic: Traffic::default(),
        }
    }

    /// Calls so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Forget the calls and counters.
    pub fn reset(&mut self) {
        self.log.clear();
        self.traffic = Traffic::default();
    }

    /// How many times `call` was made.
    pub fn count(&self, call: RegCall) -> usize {
        self.log.iter().filter(|&c| c == call).count()
    }

    /// The first register read more than once, if any.
    pub fn read_twice(&self) -> Option<RegCall> {
        let mut seen = [None::<RegCall>; 256];
        for (i, c) in self.log.iter().enumerate() {
            if matches!(c, RegCall::Get(_) | RegCall::GetV(_)) {
                if seen.iter().take(i).any(|s| *s == Some(c)) {
                    return Some(c);
                }
                if let Some(s) = seen.get_mut(i) {
                    *s = Some(c);
                }
            }
        }
        None
    }
}

impl<R: VcpuRegs> VcpuRegs for CountingRegs<R> {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        self.traffic.get += 1;
        self.log.push(RegCall::Get(reg));
        self.inner.get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.traffic.set += 1;
        self.log.push(RegCall::Set(reg));
        self.inner.set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.traffic.get_v += 1;
        self.log.push(RegCall::GetV(n));
        self.inner.get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        self.traffic.set_v += 1;
        self.log.push(RegCall::SetV(n));
        self.inner.set_v(n, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::RegisterFile;

    #[test]
    fn reads_once_and_writes_back_changes_in_order() {
        let mut rf = RegisterFile::default();
        rf.x[3] = 7;
        rf.pc = 0x1000;
        rf.pstate = 0x3c5;
        rf.v[2] = 9;
        let mut c = RegCache::new(CountingRegs::new(rf));
        assert_eq!(c.get(Reg::X(3)).unwrap(), 7);
        assert_eq!(c.get(Reg::X(3)).unwrap(), 7);
        assert_eq!(c.get(Reg::Pc).unwrap(), 0x1000);
        assert_eq!(c.get_v(2).unwrap(), 9);
        assert_eq!(c.get_v(2).unwrap(), 9);
        // A write is seen by later reads and never read from the backend.
        c.set(Reg::X(5), 11).unwrap();
        assert_eq!(c.get(Reg::X(5)).unwrap(), 11);
        // Writing the same value back is not a change.
        c.set(Reg::X(3), 7).unwrap();
        c.set(Reg::Pc, 0x1004).unwrap();
        c.set(Reg::Pstate, 0x3c5 | (1 << 30)).unwrap();
        c.set(Reg::SpEl1, 5).unwrap();
        c.set_v(31, 1).unwrap();
        c.set(Reg::Sys(SysReg::TcrEl1), 3).unwrap();
        assert!(c.is_dirty());
        c.flush().unwrap();
        assert!(!c.is_dirty());
        let counting = c.inner();
        assert_eq!(counting.read_twice(), None);
        let calls: Vec<RegCall> = counting.log.iter().collect();
        assert_eq!(
            calls,
            vec![
                RegCall::Get(Reg::X(3)),
                RegCall::Get(Reg::Pc),
                RegCall::GetV(2),
                RegCall::Set(Reg::X(5)),
                RegCall::Set(Reg::SpEl1),
                RegCall::SetV(31),
                RegCall::Set(Reg::Sys(SysReg::TcrEl1)),
                RegCall::Set(Reg::Pstate),
                RegCall::Set(Reg::Pc),
            ]
        );
        // A second flush writes nothing.
        c.flush().unwrap();
        assert_eq!(c.inner().log.len(), 9);
        let rf = c.finish().unwrap().inner;
        assert_eq!(rf.x[5], 11);
        assert_eq!(rf.pc, 0x1004);
        assert_eq!(rf.sp_el1, 5);
        assert_eq!(rf.v[31], 1);
        assert_eq!(rf.sys(SysReg::TcrEl1), 3);
    }

    #[test]
    fn invalid_names_reach_the_backend_and_discard_restores() {
        let mut c = RegCache::new(RegisterFile::default());
        assert!(c.get(Reg::X(31)).is_err());
        assert!(c.set(Reg::X(40), 1).is_err());
        assert!(c.get_v(32).is_err());
        c.set(Reg::X(1), 5).unwrap();
        c.discard_writes();
        assert!(!c.is_dirty());
        assert_eq!(c.get(Reg::X(1)).unwrap(), 0);
        assert_eq!(c.peek(Reg::X(1)), Some(0));
        assert_eq!(c.peek(Reg::X(2)), None);
    }

    #[test]
    fn counting_finds_a_double_read() {
        let mut c = CountingRegs::new(RegisterFile::default());
        c.get(Reg::X(1)).unwrap();
        c.get(Reg::Pc).unwrap();
        assert_eq!(c.read_twice(), None);
        c.get(Reg::X(1)).unwrap();
        assert_eq!(c.read_twice(), Some(RegCall::Get(Reg::X(1))));
        assert_eq!(c.traffic().get, 3);
        assert_eq!(c.count(RegCall::Get(Reg::X(1))), 2);
    }
}
