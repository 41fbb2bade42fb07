// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest RAM: a vm-memory `GuestMemoryMmap`, which kvm-nisv's
//! [`GuestMemoryRam`] adapter makes the emulator's [`kvm_nisv::mem::GuestRam`].

use kvm_nisv::vm_memory::GuestMemoryRam;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest RAM backed by anonymous mmap'd regions (one memslot each).
pub type Ram = GuestMemoryRam<GuestMemoryMmap>;

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

/// One region of `size` bytes at IPA `base`.
pub fn ram(base: u64, size: u64) -> Result<Ram, RamError> {
    let err = |reason: String| RamError { base, size, reason };
    let len = usize::try_from(size).map_err(|e| err(e.to_string()))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(base), len)])
        .map_err(|e| err(e.to_string()))?;
    Ok(GuestMemoryRam::new(mem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_nisv::mem::GuestRam;

    #[test]
    fn one_region_exactly() {
        let ram = ram(0x8000_0000, 0x10000).unwrap();
        assert!(ram.is_ram(0x8000_0000, 0x10000));
        assert!(!ram.is_ram(0x8000_0000, 0x10001));
        assert!(!ram.is_ram(0x7fff_ffff, 1));
        assert!(ram.is_writable(0x8000_fff8, 8));
        let e = super::ram(0x8000_0000, 0).unwrap_err();
        assert!(e.to_string().contains("0x80000000+0x0"), "{e}");
    }
}
