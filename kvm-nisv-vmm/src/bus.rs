// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An MMIO bus: non-overlapping IPA ranges mapped to devices.
//!
//! Modelled on firecracker's `vstate/bus.rs`: devices implement [`BusDevice`]
//! and see offsets relative to their base; the bus refuses overlapping ranges.
//! `&Bus` implements [`kvm_nisv::mem::MmioBus`], so the NISV emulator drives the
//! same devices as `KVM_EXIT_MMIO` does. Each device sits behind its own mutex,
//! so vCPU threads only contend when they touch the same device.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_nisv::mem::{BusError, MmioBus};
use thiserror::Error;

/// Why a device rejected an access.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DeviceError {
    /// The access size or alignment is not one the register supports.
    #[error("unsupported access of {len} bytes at offset {offset:#x}")]
    BadAccess {
        /// Offset inside the device.
        offset: u64,
        /// Access size in bytes.
        len: usize,
    },
    /// The device's backend failed (for example a KVM device attribute ioctl).
    #[error("{0}")]
    Backend(String),
}

/// A device on the MMIO bus.
pub trait BusDevice: Send {
    /// A short name for messages ("uart", "testdev-data", "gicd", ...).
    fn name(&self) -> &str;
    /// Read `data.len()` bytes at `offset` from the device's base.
    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError>;
    /// Write `data` at `offset` from the device's base.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError>;
}

/// A shared, lockable device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors from building a bus.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BusSetupError {
    /// The new range overlaps a registered one.
    #[error("range {base:#x}+{len:#x} ({name}) overlaps {other}")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
        /// Name of the rejected device.
        name: String,
        /// Name of the device already there.
        other: String,
    },
    /// The range is empty or wraps the address space.
    #[error("invalid range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    name: String,
    dev: SharedDevice,
}

/// The MMIO bus.
#[derive(Clone, Default)]
pub struct Bus {
    /// Keyed by base address.
    ranges: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (base, e) in &self.ranges {
            l.entry(&format_args!("{:#x}+{:#x} {}", base, e.len, e.name));
        }
        l.finish()
    }
}

/// Lock a device; a poisoned lock (a panic in another thread) still gives access,
/// since device state stays consistent between whole accesses.
fn lock(dev: &SharedDevice) -> MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `dev` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), BusSetupError> {
        let name = lock(&dev).name().to_string();
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusSetupError::InvalidRange { base, len })?;
        // The closest range starting below `end` is the only one that can overlap.
        if let Some((&b, e)) = self.ranges.range(..end).next_back()
            && b.saturating_add(e.len) > base
        {
            return Err(BusSetupError::Overlap {
                base,
                len,
                name,
                other: e.name.clone(),
            });
        }
        self.ranges.insert(base, Entry { len, name, dev });
        Ok(())
    }

    /// The device whose range holds every byte of `[ipa, ipa + len)`, with the
    /// offset of `ipa` inside it.
    fn find(&self, ipa: u64, len: usize) -> Option<(&Entry, u64)> {
        let (&base, e) = self.ranges.range(..=ipa).next_back()?;
        let off = ipa - base;
        let end = off.checked_add(len as u64)?;
        (end <= e.len).then_some((e, off))
    }

    /// The name and base of the device whose window contains `ipa`, if any.
    pub fn device_at(&self, ipa: u64) -> Option<(&str, u64)> {
        let (&base, e) = self.ranges.range(..=ipa).next_back()?;
        (ipa - base < e.len).then_some((e.name.as_str(), base))
    }

    /// The name, base and length of the device whose window contains `ipa`.
    pub fn device_range(&self, ipa: u64) -> Option<(&str, u64, u64)> {
        let (&base, e) = self.ranges.range(..=ipa).next_back()?;
        (ipa - base < e.len).then_some((e.name.as_str(), base, e.len))
    }

    /// Read from the bus.
    pub fn read(&self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        let len = data.len();
        let (e, off) = self.find(ipa, len).ok_or(BusError::NoDevice { ipa, len })?;
        lock(&e.dev).read(off, data).map_err(|err| {
            log::warn!("{}: read of {len} bytes at {ipa:#x}: {err}", e.name);
            BusError::DeviceError { ipa, len }
        })
    }

    /// Write to the bus.
    pub fn write(&self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        let len = data.len();
        let (e, off) = self.find(ipa, len).ok_or(BusError::NoDevice { ipa, len })?;
        lock(&e.dev).write(off, data).map_err(|err| {
            log::warn!("{}: write of {len} bytes at {ipa:#x}: {err}", e.name);
            BusError::DeviceError { ipa, len }
        })
    }
}

impl MmioBus for &Bus {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        Bus::read(self, ipa, data)
    }
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        Bus::write(self, ipa, data)
    }
    fn contains(&self, ipa: u64, len: usize) -> bool {
        self.find(ipa, len).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that records accesses and returns its offset bytes.
    struct Probe {
        name: &'static str,
        log: Vec<(bool, u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn name(&self) -> &str {
            self.name
        }
        fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
            if offset == 0xbad {
                return Err(DeviceError::BadAccess {
                    offset,
                    len: data.len(),
                });
            }
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as u8).wrapping_add(i as u8);
            }
            self.log.push((false, offset, data.to_vec()));
            Ok(())
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
            self.log.push((true, offset, data.to_vec()));
            Ok(())
        }
    }

    fn probe(name: &'static str) -> Arc<Mutex<Probe>> {
        Arc::new(Mutex::new(Probe {
            name,
            log: Vec::new(),
        }))
    }

    #[test]
    fn routes_by_range_with_relative_offsets() {
        let a = probe("a");
        let b = probe("b");
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x100, a.clone()).unwrap();
        bus.insert(0x2000, 0x1000, b.clone()).unwrap();
        let mut d = [0u8; 4];
        bus.read(0x1010, &mut d).unwrap();
        assert_eq!(d, [0x10, 0x11, 0x12, 0x13]);
        bus.write(0x2ff8, &[9; 8]).unwrap();
        assert_eq!(
            a.lock().unwrap().log,
            vec![(false, 0x10, vec![0x10, 0x11, 0x12, 0x13])]
        );
        assert_eq!(b.lock().unwrap().log, vec![(true, 0xff8, vec![9; 8])]);
        assert_eq!(bus.device_at(0x10ff), Some(("a", 0x1000)));
        assert_eq!(bus.device_at(0x1100), None);
        // Through the kvm-nisv trait too.
        let mut m: &Bus = &bus;
        MmioBus::write(&mut m, 0x1000, &[1]).unwrap();
        assert_eq!(a.lock().unwrap().log.len(), 2);
    }

    #[test]
    fn misses_straddles_and_device_errors() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x100, probe("a")).unwrap();
        let mut d = [0u8; 8];
        assert_eq!(
            bus.read(0xfff, &mut d[..1]),
            Err(BusError::NoDevice { ipa: 0xfff, len: 1 })
        );
        assert_eq!(
            bus.read(0x10fc, &mut d),
            Err(BusError::NoDevice {
                ipa: 0x10fc,
                len: 8
            })
        );
        assert_eq!(
            bus.write(0x1100, &d),
            Err(BusError::NoDevice {
                ipa: 0x1100,
                len: 8
            })
        );
        assert_eq!(
            bus.read(u64::MAX, &mut d),
            Err(BusError::NoDevice {
                ipa: u64::MAX,
                len: 8
            })
        );
    }

    #[test]
    fn device_error_is_reported() {
        let mut bus = Bus::new();
        bus.insert(0x0, 0x1000, probe("a")).unwrap();
        let mut d = [0u8; 2];
        assert_eq!(
            bus.read(0xbad, &mut d),
            Err(BusError::DeviceError { ipa: 0xbad, len: 2 })
        );
    }

    #[test]
    fn refuses_overlaps_and_bad_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x1000, probe("a")).unwrap();
        for (base, len) in [(0x1800, 0x10), (0x800, 0x801), (0x0, 0x10000), (0x1fff, 1)] {
            assert!(
                matches!(
                    bus.insert(base, len, probe("b")),
                    Err(BusSetupError::Overlap { .. })
                ),
                "{base:#x}+{len:#x}"
            );
        }
        // Adjacent on both sides is fine.
        bus.insert(0x800, 0x800, probe("below")).unwrap();
        bus.insert(0x2000, 0x10, probe("above")).unwrap();
        assert!(matches!(
            bus.insert(0x5000, 0, probe("c")),
            Err(BusSetupError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX - 1, 4, probe("c")),
            Err(BusSetupError::InvalidRange { .. })
        ));
        assert_eq!(bus.device_at(0x2000), Some(("above", 0x2000)));
    }
}
