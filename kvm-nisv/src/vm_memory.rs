// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Glue for rust-vmm's vm-memory (feature `vm-memory`, on by default).
//!
//! [`GuestMemoryRam`] makes any `vm_memory::GuestMemory` (a
//! `GuestMemoryMmap`, a `GuestMemoryAtomic`'s snapshot, an `IommuMemory`...)
//! the [`GuestRam`] the emulator and the stage-1 walker use. vm-memory does not
//! know which regions KVM maps read-only (`KVM_MEM_READONLY` is a memslot
//! flag), so the VMM declares them with [`GuestMemoryRam::with_read_only`]:
//! they stay readable and the adapter's [`GuestRam::is_writable`] says no for
//! them, as KVM, which turns the guest's writes there into MMIO exits.
//!
//! ```
//! use kvm_nisv::mem::GuestRam;
//! use kvm_nisv::vm_memory::GuestMemoryRam;
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[
//!     (GuestAddress(0x0), 0x1000),         // flash, mapped read-only
//!     (GuestAddress(0x8000_0000), 0x10000), // RAM
//! ])?;
//! let ram = GuestMemoryRam::new(mem).with_read_only(0x0, 0x1000);
//! ram.write(0x8000_0ff8, &42u64.to_le_bytes())?;
//! assert!(ram.is_ram(0x8000_0000, 0x10000));
//! assert!(!ram.is_ram(0x8000_fff8, 16)); // runs past the end of RAM
//! assert!(ram.is_ram(0x0, 8) && !ram.is_writable(0x0, 8));
//! assert!(ram.is_writable(0x8000_0000, 8));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec::Vec;

use core::sync::atomic::Ordering;

use ::vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::mem::{GuestRam, MemError};

/// [`GuestRam`] over a vm-memory guest memory, with read-only ranges.
///
/// Accesses are bounds-checked with vm-memory's own `check_range` before any
/// byte moves: a range that is not entirely guest memory fails with
/// [`MemError::NotRam`] and copies nothing. A range may span several regions
/// if they are contiguous.
///
/// [`GuestRam::write`] is the VMM's (host) write and works on read-only
/// ranges too (that is how a ROM gets its contents); the emulator asks
/// [`GuestRam::is_writable`] before it performs a guest store.
#[derive(Clone, Debug)]
pub struct GuestMemoryRam<M> {
    mem: M,
    /// `[start, end)` IPA ranges the guest may not write, sorted, merged.
    read_only: Vec<(u64, u64)>,
}

impl<M: GuestMemory> GuestMemoryRam<M> {
    /// All of `mem` is writable RAM.
    pub fn new(mem: M) -> Self {
        GuestMemoryRam {
            mem,
            read_only: Vec::new(),
        }
    }

    /// Declare `[ipa, ipa + len)` read-only for the guest (a memslot with
    /// `KVM_MEM_READONLY`). A range running past the top of the address
    /// space is clipped there.
    pub fn with_read_only(mut self, ipa: u64, len: u64) -> Self {
        self.add_read_only(ipa, len);
        self
    }

    /// [`GuestMemoryRam::with_read_only`] on a borrowed adapter.
    pub fn add_read_only(&mut self, ipa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = ipa.saturating_add(len);
        self.read_only.push((ipa, end));
        self.read_only.sort_unstable();
        // Merge overlapping or touching ranges.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.read_only.len());
        for &(s, e) in &self.read_only {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.read_only = merged;
    }

    /// The read-only ranges as `(start, end)` (end exclusive), sorted and
    /// merged.
    pub fn read_only_ranges(&self) -> &[(u64, u64)] {
        &self.read_only
    }

    /// The vm-memory object, for loaders and memslot registration.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Give back the vm-memory object.
    pub fn into_inner(self) -> M {
        self.mem
    }

    /// Whether all of `[ipa, ipa + len)` is guest memory accessible with
    /// `access` (a zero-length range: whether `ipa` itself is).
    fn check(&self, ipa: u64, len: usize, access: Permissions) -> bool {
        let len = len.max(1);
        // The last byte must not wrap around the address space.
        ipa.checked_add(len as u64 - 1).is_some()
            && self.mem.check_range(GuestAddress(ipa), len, access)
    }

    fn touches_read_only(&self, ipa: u64, len: usize) -> bool {
        let end = ipa.saturating_add(len.max(1) as u64);
        self.read_only.iter().any(|&(s, e)| ipa < e && s < end)
    }
}

impl<M: GuestMemory> GuestRam for GuestMemoryRam<M> {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        if !self.check(ipa, buf.len(), Permissions::Read) {
            return Err(err);
        }
        self.mem.read_slice(buf, GuestAddress(ipa)).map_err(|_| err)
    }

    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        if !self.check(ipa, buf.len(), Permissions::Write) {
            return Err(err);
        }
        self.mem
            .write_slice(buf, GuestAddress(ipa))
            .map_err(|_| err)
    }

    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.check(ipa, len, Permissions::Read)
    }

    fn is_writable(&self, ipa: u64, len: usize) -> bool {
        self.check(ipa, len, Permissions::Write) && !self.touches_read_only(ipa, len)
    }

    /// One host atomic load of 1, 2, 4 or 8 bytes (vm-memory's `Bytes::load`,
    /// sequentially consistent): other vCPUs run while run-ahead emulation
    /// ([`crate::runahead`]) reads RAM, and an aligned access of that size is
    /// single-copy atomic. Other sizes, or an address not aligned to the size,
    /// fall back to [`GuestRam::read`].
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        if !self.check(ipa, buf.len(), Permissions::Read) {
            return Err(err);
        }
        if !ipa.is_multiple_of(buf.len().max(1) as u64) {
            return self.read(ipa, buf);
        }
        let a = GuestAddress(ipa);
        let o = Ordering::SeqCst;
        match buf.len() {
            1 => buf.copy_from_slice(&self.mem.load::<u8>(a, o).map_err(|_| err)?.to_ne_bytes()),
            2 => buf.copy_from_slice(&self.mem.load::<u16>(a, o).map_err(|_| err)?.to_ne_bytes()),
            4 => buf.copy_from_slice(&self.mem.load::<u32>(a, o).map_err(|_| err)?.to_ne_bytes()),
            8 => buf.copy_from_slice(&self.mem.load::<u64>(a, o).map_err(|_| err)?.to_ne_bytes()),
            _ => return self.read(ipa, buf),
        }
        Ok(())
    }

    /// One host atomic store of 1, 2, 4 or 8 bytes (`Bytes::store`); see
    /// [`GuestMemoryRam::read_atomic`].
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        if !self.check(ipa, buf.len(), Permissions::Write) {
            return Err(err);
        }
        if !ipa.is_multiple_of(buf.len().max(1) as u64) {
            return self.write(ipa, buf);
        }
        let a = GuestAddress(ipa);
        let o = Ordering::SeqCst;
        let r = match *buf {
            [b0] => self.mem.store(b0, a, o),
            [b0, b1] => self.mem.store(u16::from_ne_bytes([b0, b1]), a, o),
            [b0, b1, b2, b3] => self.mem.store(u32::from_ne_bytes([b0, b1, b2, b3]), a, o),
            [b0, b1, b2, b3, b4, b5, b6, b7] => {
                self.mem
                    .store(u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]), a, o)
            }
            _ => return self.write(ipa, buf),
        };
        r.map_err(|_| err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap<()> {
        // Two contiguous regions, a hole, one more region.
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x2000), 0x1000),
            (GuestAddress(0x8000), 0x1000),
        ])
        .unwrap()
    }

    #[test]
    fn bounds_are_checked_before_any_copy() {
        let ram = GuestMemoryRam::new(mem());
        ram.write(0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut b = [0u8; 8];
        ram.read(0x1ffc, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8], "across contiguous regions");
        // Runs into the hole: refused, and nothing written.
        assert_eq!(
            ram.write(0x2ffc, &[9; 8]),
            Err(MemError::NotRam {
                ipa: 0x2ffc,
                len: 8
            })
        );
        ram.read(0x2ff8, &mut b).unwrap();
        assert_eq!(b, [0; 8]);
        assert!(ram.read(0x2ffc, &mut b).is_err());
        assert!(ram.read(u64::MAX - 3, &mut b).is_err());
        assert!(ram.read(0x0, &mut b).is_err());
        assert!(ram.is_ram(0x1000, 0x2000));
        assert!(!ram.is_ram(0x1000, 0x2001));
        assert!(!ram.is_ram(0x7fff, 2));
        assert!(ram.is_ram(0x8fff, 1));
        assert!(ram.is_ram(0x8000, 0), "zero length: the address is RAM");
        assert!(!ram.is_ram(0x9000, 0));
        assert!(ram.is_writable(0x1000, 0x2000), "no read-only ranges");
    }

    #[test]
    fn read_only_ranges_are_readable_not_guest_writable() {
        let ram = GuestMemoryRam::new(mem())
            .with_read_only(0x2000, 0x800)
            .with_read_only(0x2800, 0x100)
            .with_read_only(0x8100, 0);
        assert_eq!(ram.read_only_ranges(), [(0x2000, 0x2900)]);
        assert!(ram.is_ram(0x2000, 8));
        assert!(!ram.is_writable(0x2000, 8));
        assert!(!ram.is_writable(0x1ffc, 8), "partly read-only");
        assert!(!ram.is_writable(0x28ff, 1));
        assert!(ram.is_writable(0x2900, 8));
        assert!(ram.is_writable(0x1ff8, 8));
        assert!(ram.is_writable(0x8100, 8), "empty ranges are ignored");
        assert!(!ram.is_writable(0x7ff8, 8), "not RAM at all");
        // The host can still fill it.
        ram.write(0x2000, &[0x5a; 4]).unwrap();
        let mut b = [0u8; 4];
        ram.read(0x2000, &mut b).unwrap();
        assert_eq!(b, [0x5a; 4]);
        let inner = ram.into_inner();
        assert_eq!(inner.num_regions(), 3);
    }

    #[test]
    fn atomic_accesses_are_element_sized_and_checked() {
        let ram = GuestMemoryRam::new(mem());
        let base = 0x8000;
        ram.write_atomic(base + 8, &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        ram.write_atomic(base + 0x12, &[9, 10]).unwrap();
        let mut b = [0u8; 8];
        ram.read_atomic(base + 8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        let mut h = [0u8; 4];
        ram.read_atomic(base + 0x10, &mut h).unwrap();
        assert_eq!(h, [0, 0, 9, 10]);
        // Misaligned: the plain (non-atomic) copy, same bytes.
        ram.read_atomic(base + 6, &mut h).unwrap();
        assert_eq!(h, [0, 0, 1, 2]);
        // Outside RAM or wrapping: an error, never a host fault.
        assert!(ram.read_atomic(u64::MAX - 3, &mut h).is_err());
        assert!(ram.write_atomic(u64::MAX - 7, &b).is_err());
        assert!(ram.read_atomic(0x4000, &mut b).is_err());
        assert!(ram.read_atomic(0x8ffc, &mut b).is_err()); // runs past the end
    }
}
