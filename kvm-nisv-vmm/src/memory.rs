// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest RAM: a vm-memory `GuestMemoryMmap` seen through [`kvm_nisv::mem::GuestRam`].

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
}
