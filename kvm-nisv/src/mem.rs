// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest RAM and the MMIO bus, as the emulator and the stage-1 walker see them.
//!
//! Both are addressed by intermediate physical address (IPA, the guest's
//! "physical" address). Guest RAM is memory the VMM mapped into memslots; the
//! MMIO bus is whatever the VMM emulates in userspace. Every access is checked:
//! an address outside RAM is an error, never an out-of-bounds host access.
//!
//! Implementations: [`VecRam`] and [`VecBus`] (in memory, for tests, fuzzing
//! and examples) and, with the `vm-memory` feature,
//! `vm_memory::GuestMemoryRam` for rust-vmm's guest memory types.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use thiserror::Error;

/// Why a guest RAM access failed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
    ///
    /// `true` for a range must mean `true` for each of its sub-ranges (the
    /// planner asks once for the span of an instruction's bytes in a page,
    /// and only asks per element when that fails); the same holds for
    /// [`GuestRam::is_writable`].
    fn is_ram(&self, ipa: u64, len: usize) -> bool;
    /// Whether every byte of `[ipa, ipa + len)` is RAM the guest may write.
    ///
    /// RAM in a `KVM_MEM_READONLY` memslot is readable by the guest but its
    /// writes exit to userspace: the emulator sends a store to such RAM to the
    /// MMIO bus if a device claims it (a ROM device's write handler), and
    /// reports `NoDevice` otherwise. The default: all RAM is writable.
    fn is_writable(&self, ipa: u64, len: usize) -> bool {
        self.is_ram(ipa, len)
    }

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
    fn is_writable(&self, ipa: u64, len: usize) -> bool {
        (**self).is_writable(ipa, len)
    }
}

/// A userspace MMIO bus.
///
/// `data` holds the bytes as they appear on the bus, lowest address first
/// (the same convention as `kvm_run.mmio.data`); endianness conversion for
/// big-endian guests is the emulator's job. Every access the emulator makes
/// is a power of two in size and naturally aligned (its address is a multiple
/// of its size), at most [`MmioBus::max_access_size`] bytes: 1, 2, 4 or 8
/// bytes with the default, like `kvm_run.mmio`.
///
/// What the accesses of one instruction look like depends on the memory type
/// the guest mapped the address with (docs/emulator.md, "Gathering"):
///
/// - **Device-nGnRnE, Device-nGnRE, Device-nGRE** (non-Gathering; every data
///   access with the guest's MMU off is Device-nGnRnE): one access per
///   element at its own size, at increasing addresses, as the Arm ARM requires
///   ("All accesses occur at their single-copy atomic sizes", B2.10.2.1). A
///   16-byte Q element is two 8-byte accesses (it is a pair of single-copy
///   atomic 64-bit accesses); the pair of an LDXP/STXP of W registers and of
///   a CASP of W registers is one 8-byte access, STXP and CASP of X registers
///   one 16-byte access if `max_access_size` allows it (each pair is one
///   single-copy atomic access).
/// - **Normal memory and Device-GRE** (the G attribute permits gathering):
///   the contiguous bytes of one instruction are *gathered*: cut into
///   naturally aligned accesses of at most `max_access_size` bytes whatever
///   the element size, so `ldp w0, w1, [x]` at an 8-byte aligned address is
///   one 8-byte access and `ld1 {v0.16b-v3.16b}` (64 one-byte elements) eight
///   8-byte accesses (one 64-byte access if the device takes it).
pub trait MmioBus {
    /// Read `data.len()` bytes at `ipa`.
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError>;
    /// Write `data` at `ipa`.
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError>;
    /// Whether a device claims every byte of `[ipa, ipa + len)`.
    ///
    /// The emulator asks this for every target of an instruction before it
    /// makes any access, so that an instruction whose target has no device
    /// leaves the guest unchanged. It must agree with [`MmioBus::read`] and
    /// [`MmioBus::write`]: an access inside a range reported here must not
    /// fail with [`BusError::NoDevice`]. `true` means one device claims the
    /// whole range (the emulator may gather accesses anywhere inside it into
    /// one), and so every sub-range: the emulator asks once for a span of
    /// contiguous elements and per element only when that fails.
    fn contains(&self, ipa: u64, len: usize) -> bool;
    /// The widest single access, in bytes, the device claiming `ipa` accepts
    /// when the guest's memory type lets the emulator gather accesses (Normal
    /// memory, Device-GRE; see the trait documentation).
    ///
    /// The default, 8, is what `kvm_run.mmio` carries: a bus written for
    /// `KVM_EXIT_MMIO` handles every access the emulator makes. Return more
    /// (16, 64, 4096...) for a device that takes wide accesses, such as a
    /// framebuffer or a RAM-like BAR, so that a 64-byte `ld1`/`st1` or a
    /// `DC ZVA` block reaches it as one access. The value applies to every
    /// access that starts at `ipa` and lies in a range [`MmioBus::contains`]
    /// reported. Values below 8 are taken as 8 (an 8-byte element is always
    /// one access), values above 4096 as 4096, others are rounded down to a
    /// power of two. Device-nG memory never sees an access wider than its
    /// single-copy atomic size, whatever this says.
    fn max_access_size(&self, ipa: u64) -> usize {
        let _ = ipa;
        8
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
    fn max_access_size(&self, ipa: u64) -> usize {
        (**self).max_access_size(ipa)
    }
}

/// Guest RAM made of owned, non-overlapping regions: the backend for host
/// tests, fuzzing and reference models.
#[derive(Clone, Debug, Default)]
pub struct VecRam {
    regions: Vec<(u64, RefCell<Vec<u8>>)>,
    /// Regions the guest may only read (like `KVM_MEM_READONLY` memslots).
    read_only: Vec<(u64, u64)>,
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
        self.regions.push((ipa, RefCell::new(vec![0; len])));
        true
    }

    /// Add a zeroed region the guest may read but not write
    /// ([`GuestRam::is_writable`] is false for it, like a `KVM_MEM_READONLY`
    /// memslot); [`GuestRam::write`] still fills it (the VMM's own writes).
    pub fn add_read_only_region(&mut self, ipa: u64, len: usize) -> bool {
        if !self.add_region(ipa, len) {
            return false;
        }
        self.read_only.push((ipa, ipa + len as u64));
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

    fn is_writable(&self, ipa: u64, len: usize) -> bool {
        let end = ipa.saturating_add(len as u64);
        self.is_ram(ipa, len) && !self.read_only.iter().any(|&(b, e)| ipa < e && b < end)
    }
}

/// One access to a [`VecBus`], as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BusAccess {
    /// First byte.
    pub ipa: u64,
    /// Length in bytes.
    pub len: usize,
    /// A write (else a read).
    pub write: bool,
}

impl BusAccess {
    /// A read of `len` bytes at `ipa`.
    pub const fn read(ipa: u64, len: usize) -> Self {
        BusAccess {
            ipa,
            len,
            write: false,
        }
    }

    /// A write of `len` bytes at `ipa`.
    pub const fn write(ipa: u64, len: usize) -> Self {
        BusAccess {
            ipa,
            len,
            write: true,
        }
    }
}

/// An MMIO bus of device windows backed by byte vectors, with a log of every
/// access: the [`MmioBus`] for host tests, fuzzing and examples.
///
/// A window is plain memory: a read returns its bytes, a write stores them.
/// An access must lie inside one window (adjacent windows are separate
/// devices); anything else fails with [`BusError::NoDevice`]. Every
/// attempted access is logged, also failed ones.
///
/// ```
/// use kvm_nisv::mem::{BusAccess, MmioBus, VecBus};
///
/// let mut bus = VecBus::new();
/// assert!(bus.add_window(0x900_0000, vec![0; 0x1000]));
/// bus.write(0x900_0008, &[1, 2]).unwrap();
/// let mut b = [0; 4];
/// bus.read(0x900_0006, &mut b).unwrap();
/// assert_eq!(b, [0, 0, 1, 2]);
/// assert!(bus.read(0x900_0ffe, &mut b).is_err()); // crosses the window end
/// assert_eq!(bus.window(0x900_0000).unwrap()[8..10], [1, 2]);
/// assert_eq!(
///     bus.log(),
///     [
///         BusAccess::write(0x900_0008, 2),
///         BusAccess::read(0x900_0006, 4),
///         BusAccess::read(0x900_0ffe, 4),
///     ]
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecBus {
    /// Windows by base address.
    windows: BTreeMap<u64, Vec<u8>>,
    log: Vec<BusAccess>,
}

impl VecBus {
    /// A bus without windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a window at `base` holding `bytes` (its initial contents; the
    /// window is `bytes.len()` long). Returns `false` (and adds nothing) if
    /// it is empty, would overlap an existing window or wrap the address
    /// space.
    pub fn add_window(&mut self, base: u64, bytes: Vec<u8>) -> bool {
        let Some(end) = u64::try_from(bytes.len())
            .ok()
            .and_then(|l| base.checked_add(l))
        else {
            return false;
        };
        if bytes.is_empty() || self.overlaps(base, end) {
            return false;
        }
        self.windows.insert(base, bytes);
        true
    }

    fn overlaps(&self, base: u64, end: u64) -> bool {
        // The last window starting below `end` is the only one that can
        // reach into [base, end) (windows do not overlap each other).
        self.windows
            .range(..end)
            .next_back()
            .is_some_and(|(b, w)| b + w.len() as u64 > base)
    }

    /// The contents of the window starting at `base`.
    pub fn window(&self, base: u64) -> Option<&[u8]> {
        self.windows.get(&base).map(Vec::as_slice)
    }

    /// The contents of the window starting at `base`, mutable (the guest
    /// does not see this as an access; it is not logged).
    pub fn window_mut(&mut self, base: u64) -> Option<&mut [u8]> {
        self.windows.get_mut(&base).map(Vec::as_mut_slice)
    }

    /// Every access so far, in order.
    pub fn log(&self) -> &[BusAccess] {
        &self.log
    }

    /// Forget the accesses logged so far.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }

    /// The window holding all of `[ipa, ipa + len)`: its base and the offset
    /// of `ipa` in it.
    fn locate(&self, ipa: u64, len: usize) -> Option<(u64, usize)> {
        let end = ipa.checked_add(u64::try_from(len).ok()?)?;
        let (&base, w) = self.windows.range(..=ipa).next_back()?;
        let off = usize::try_from(ipa - base).ok()?;
        (end - base <= w.len() as u64).then_some((base, off))
    }

    fn bytes(&mut self, ipa: u64, len: usize) -> Result<&mut [u8], BusError> {
        let (base, off) = self
            .locate(ipa, len)
            .ok_or(BusError::NoDevice { ipa, len })?;
        self.windows
            .get_mut(&base)
            .and_then(|w| w.get_mut(off..off + len))
            .ok_or(BusError::NoDevice { ipa, len })
    }
}

impl MmioBus for VecBus {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.log.push(BusAccess::read(ipa, data.len()));
        data.copy_from_slice(self.bytes(ipa, data.len())?);
        Ok(())
    }

    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        self.log.push(BusAccess::write(ipa, data.len()));
        self.bytes(ipa, data.len())?.copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, ipa: u64, len: usize) -> bool {
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

    #[test]
    fn vec_bus_windows_and_log() {
        let mut bus = VecBus::new();
        assert!(bus.add_window(0x1000, vec![0xaa; 0x10]));
        assert!(bus.add_window(0x1010, vec![0xbb; 0x10]), "adjacent is fine");
        assert!(
            !bus.add_window(0x100f, vec![0; 1]),
            "overlap must be refused"
        );
        assert!(!bus.add_window(0x0ff8, vec![0; 0x9]), "overlap from below");
        assert!(!bus.add_window(0x2000, Vec::new()), "empty");
        assert!(!bus.add_window(u64::MAX - 7, vec![0; 8]), "wrap");
        assert!(bus.add_window(u64::MAX - 8, vec![0; 8]), "up to the top");
        assert!(bus.contains(0x1000, 0x10));
        assert!(
            !bus.contains(0x1008, 0x10),
            "an access spans one window only"
        );
        assert!(!bus.contains(0xfff, 1));
        assert!(!bus.contains(u64::MAX - 1, 2));
        assert!(bus.contains(u64::MAX - 1, 1));
        assert!(!bus.contains(u64::MAX, 1));
        bus.write(0x100e, &[1, 2]).unwrap();
        let mut b = [0u8; 4];
        bus.read(0x100c, &mut b).unwrap();
        assert_eq!(b, [0xaa, 0xaa, 1, 2]);
        assert_eq!(
            bus.write(0x100f, &[0; 2]),
            Err(BusError::NoDevice {
                ipa: 0x100f,
                len: 2
            })
        );
        assert_eq!(bus.window(0x1010), Some(&[0xbb; 0x10][..]), "untouched");
        assert_eq!(
            bus.read(0x0, &mut b),
            Err(BusError::NoDevice { ipa: 0, len: 4 })
        );
        assert_eq!(
            bus.log(),
            [
                BusAccess::write(0x100e, 2),
                BusAccess::read(0x100c, 4),
                BusAccess::write(0x100f, 2),
                BusAccess::read(0, 4),
            ]
        );
        bus.window_mut(0x1010).unwrap()[0] = 7;
        bus.clear_log();
        bus.read(0x1010, &mut b[..1]).unwrap();
        assert_eq!(b[0], 7);
        assert_eq!(bus.log(), [BusAccess::read(0x1010, 1)]);
        assert_eq!(bus.window(0x1011), None);
    }

    #[test]
    fn writable_defaults_to_ram() {
        let mut ram = VecRam::new();
        assert!(ram.add_region(0x1000, 0x1000));
        assert!(ram.is_writable(0x1000, 8));
        assert!(!ram.is_writable(0x1ffc, 8));
        assert!(GuestRam::is_writable(&&ram, 0x1000, 0x1000), "through &T");
    }
}
