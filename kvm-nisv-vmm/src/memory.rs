// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest RAM: a vm-memory `GuestMemoryMmap` seen through [`kvm_nisv::mem::GuestRam`].

use std::sync::atomic::Ordering;

use kvm_nisv::mem::{GuestRam, MemError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest RAM backed by anonymous mmap'd regions (one memslot each).
#[derive(Debug)]
pub struct Ram {
    mem: GuestMemoryMmap,
}

/// Why RAM could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create guest RAM {base:#x}+{size:#x}: {reason}")]
pub struct RamError {
    /// Base IPA.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// What vm-memory said.
    pub reason: String,
}

impl Ram {
    /// One region of `size` bytes at IPA `base`.
    pub fn new(base: u64, size: u64) -> Result<Self, RamError> {
        let err = |reason: String| RamError { base, size, reason };
        let len = usize::try_from(size).map_err(|e| err(e.to_string()))?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(base), len)])
            .map_err(|e| err(e.to_string()))?;
        Ok(Ram { mem })
    }

    /// The vm-memory view, for loaders and memslot registration.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Whether `[ipa, ipa + len)` is inside one region (every access we make is).
    fn check(&self, ipa: u64, len: usize) -> Result<(), MemError> {
        let end = ipa.checked_add(len as u64);
        let ok = match end {
            Some(end) if len > 0 => self.mem.find_region(GuestAddress(ipa)).is_some_and(|r| {
                use vm_memory::GuestMemoryRegion;
                end <= r.start_addr().0.saturating_add(r.len())
            }),
            Some(_) => self.mem.address_in_range(GuestAddress(ipa)),
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(MemError::NotRam { ipa, len })
        }
    }
}

impl GuestRam for Ram {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(ipa, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(ipa))
            .map_err(|_| MemError::NotRam {
                ipa,
                len: buf.len(),
            })
    }

    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.check(ipa, buf.len())?;
        self.mem
            .write_slice(buf, GuestAddress(ipa))
            .map_err(|_| MemError::NotRam {
                ipa,
                len: buf.len(),
            })
    }

    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.check(ipa, len).is_ok()
    }

    /// One host atomic load of 1, 2, 4 or 8 bytes (vm-memory's `Bytes::load`,
    /// sequentially consistent): other vCPUs run while run-ahead emulation
    /// reads RAM, and an aligned access of that size is single-copy atomic.
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        self.check(ipa, buf.len())?;
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

    /// One host atomic store of 1, 2, 4 or 8 bytes (`Bytes::store`).
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        let err = MemError::NotRam {
            ipa,
            len: buf.len(),
        };
        self.check(ipa, buf.len())?;
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

    #[test]
    fn bounds_are_checked() {
        let ram = Ram::new(0x8000_0000, 0x10000).unwrap();
        ram.write(0x8000_fff8, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut b = [0u8; 8];
        ram.read(0x8000_fff8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(ram.read(0x8000_fffc, &mut b).is_err());
        assert!(ram.write(0x7fff_fffc, &b).is_err());
        assert!(ram.read(u64::MAX - 3, &mut b).is_err());
        assert!(ram.is_ram(0x8000_0000, 0x10000));
        assert!(!ram.is_ram(0x8000_0000, 0x10001));
        assert!(!ram.is_ram(0x7fff_ffff, 1));
    }

    #[test]
    fn atomic_accesses_are_element_sized_and_checked() {
        let ram = Ram::new(0x8000_0000, 0x10000).unwrap();
        ram.write_atomic(0x8000_0008, &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        ram.write_atomic(0x8000_0012, &[9, 10]).unwrap();
        let mut b = [0u8; 8];
        ram.read_atomic(0x8000_0008, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        let mut h = [0u8; 4];
        ram.read_atomic(0x8000_0010, &mut h).unwrap();
        assert_eq!(h, [0, 0, 9, 10]);
        // Misaligned or outside RAM: an error, never a host fault.
        assert!(ram.read_atomic(0x8000_0004, &mut b).is_err());
        assert!(ram.write_atomic(0x8000_fffc, &b).is_err());
        assert!(ram.read_atomic(u64::MAX - 3, &mut h).is_err());
    }
}
