// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest RAM and the MMIO bus, as the emulator and the stage-1 walker see them.
//!
//! Both are addressed by intermediate physical address (IPA, the guest's
//! "physical" address). Guest RAM is memory the VMM mapped into memslots; the
//! MMIO bus is whatever the VMM emulates in userspace. Every access is checked:
//! an address outside RAM is an error, never an out-of-bounds host access.

use thiserror::Error;

/// Why a guest RAM access failed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MemError {
    /// Some byte of `[ipa, ipa + len)` is not guest RAM.
    #[error("IPA range {ipa:#x}+{len:#x} is not guest RAM")]
    NotRam {
        /// First byte of the access.
        ipa: u64,
        /// Length of the access in bytes.
        len: usize,
    },
}

/// Why an MMIO bus access failed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// No device claims this address.
    #[error("no device at IPA {ipa:#x} (access of {len} bytes)")]
    NoDevice {
        /// First byte of the access.
        ipa: u64,
        /// Length of the access in bytes.
        len: usize,
    },
    /// A device claims the address but rejected the access.
    #[error("device at IPA {ipa:#x} rejected an access of {len} bytes")]
    DeviceError {
        /// First byte of the access.
        ipa: u64,
        /// Length of the access in bytes.
        len: usize,
    },
}

/// Bounds-checked access to guest RAM by IPA.
///
/// Methods take `&self` like `vm_memory::GuestMemory`: guest RAM is shared,
/// mapped memory.
pub trait GuestRam {
    /// Fill `buf` from guest RAM starting at `ipa`. Fails, without a partial
    /// copy being observable as success, if any byte is not RAM.
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Write `buf` to guest RAM starting at `ipa`. Fails if any byte is not RAM.
    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError>;
    /// Whether every byte of `[ipa, ipa + len)` is RAM.
    fn is_ram(&self, ipa: u64, len: usize) -> bool;

    /// Read `buf.len()` bytes at `ipa` as **one single-copy-atomic access**:
    /// callers pass 1, 2, 4 or 8 bytes at an `ipa` aligned to that size, and
    /// the bytes are in address order (the host's native order of the loaded
    /// value). Run-ahead emulation ([`crate::runahead`]) uses it for every
    /// aligned RAM element of up to 8 bytes (16-byte elements as two 8-byte
    /// halves), because other vCPUs run meanwhile and the architecture makes
    /// such accesses single-copy atomic.
    ///
    /// The default calls [`GuestRam::read`], which is only atomic for a backend
    /// nobody else writes concurrently (tests); a VMM whose RAM is mapped into
    /// running vCPUs overrides it with a host atomic load of that size (e.g.
    /// vm-memory's `Bytes::load`).
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.read(ipa, buf)
    }

    /// Write `buf` (1, 2, 4 or 8 bytes, `ipa` aligned to that size) as one
    /// single-copy-atomic access; see [`GuestRam::read_atomic`]. The default
    /// calls [`GuestRam::write`].
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.write(ipa, buf)
    }
}

impl<T: GuestRam + ?Sized> GuestRam for &T {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(ipa, buf)
    }
    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        (**self).write(ipa, buf)
    }
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read_atomic(ipa, buf)
    }
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        (**self).write_atomic(ipa, buf)
    }
    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        (**self).is_ram(ipa, len)
    }
}

/// A userspace MMIO bus.
///
/// `data` holds the bytes as they appear on the bus, lowest address first
/// (the same convention as `kvm_run.mmio.data`); endianness conversion for
/// big-endian guests is the emulator's job. Accesses are 1, 2, 4 or 8 bytes;
/// the emulator splits a 16-byte element into two 8-byte accesses at
/// increasing addresses.
pub trait MmioBus {
    /// Read `data.len()` bytes at `ipa`.
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError>;
    /// Write `data` at `ipa`.
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError>;
    /// Whether a device claims every byte of `[ipa, ipa + len)`.
    ///
    /// The emulator asks this for every target of an instruction before it
    /// makes any access, so that an instruction whose target has no device
    /// leaves the guest unchanged. The default says yes (the bus is then only
    /// checked when the access is made); implementations should override it.
    fn contains(&self, ipa: u64, len: usize) -> bool {
        let _ = (ipa, len);
        true
    }
}

impl<T: MmioBus + ?Sized> MmioBus for &mut T {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        (**self).read(ipa, data)
    }
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        (**self).write(ipa, data)
    }
    fn contains(&self, ipa: u64, len: usize) -> bool {
        (**self).contains(ipa, len)
    }
}

/// Guest RAM made of owned, non-overlapping regions: the backend for host
/// tests, fuzzing and reference models.
#[derive(Clone, Debug, Default)]
pub struct VecRam {
    regions: Vec<(u64, std::cell::RefCell<Vec<u8>>)>,
}

impl VecRam {
    /// Empty RAM.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a zeroed region of `len` bytes at `ipa`. Returns `false` (and adds
    /// nothing) if it would overlap an existing region or wrap the address space.
    pub fn add_region(&mut self, ipa: u64, len: usize) -> bool {
        let Some(end) = ipa.checked_add(len as u64) else {
            return false;
        };
        if self.regions.iter().any(|(b, r)| {
            let rend = *b + r.borrow().len() as u64;
            ipa < rend && *b < end
        }) {
            return false;
        }
        self.regions
            .push((ipa, std::cell::RefCell::new(vec![0; len])));
        true
    }

    fn locate(&self, ipa: u64, len: usize) -> Option<(usize, usize)> {
        let end = ipa.checked_add(len as u64)?;
        self.regions.iter().enumerate().find_map(|(i, (b, r))| {
            let rend = *b + r.borrow().len() as u64;
            (ipa >= *b && end <= rend).then(|| (i, (ipa - *b) as usize))
        })
    }
}

impl GuestRam for VecRam {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let (i, off) = self.locate(ipa, buf.len()).ok_or(MemError::NotRam {
            ipa,
            len: buf.len(),
        })?;
        buf.copy_from_slice(&self.regions[i].1.borrow()[off..off + buf.len()]);
        Ok(())
    }

    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        let (i, off) = self.locate(ipa, buf.len()).ok_or(MemError::NotRam {
            ipa,
            len: buf.len(),
        })?;
        self.regions[i].1.borrow_mut()[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.locate(ipa, len).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_ram_checks_bounds() {
        let mut ram = VecRam::new();
        assert!(ram.add_region(0x1000, 0x1000));
        assert!(!ram.add_region(0x1800, 0x1000), "overlap must be refused");
        assert!(!ram.add_region(u64::MAX - 4, 16), "wrap must be refused");
        ram.write(0x1ff8, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut b = [0u8; 8];
        ram.read(0x1ff8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            ram.read(0x1ffc, &mut b),
            Err(MemError::NotRam {
                ipa: 0x1ffc,
                len: 8
            })
        );
        assert!(ram.read(u64::MAX - 2, &mut b).is_err());
        assert!(!ram.is_ram(0x0fff, 2));
        assert!(ram.is_ram(0x1000, 0x1000));
    }
}
