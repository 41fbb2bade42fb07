// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The guest physical (IPA) memory map, as fixed by `docs/guest-interface.md`.
//!
//! ```text
//!  IPA
//!  0x0000_0000 +--------------------------------+
//!              |   (unmapped: external abort)   |
//!  0x0800_0000 +--------------------------------+
//!              | GICv3 distributor       64 KiB | in-kernel vGICv3
//!  0x0801_0000 +--------------------------------+
//!              |   (unmapped)                   |
//!  0x080A_0000 +--------------------------------+
//!              | GICv3 redistributors           | 128 KiB per vCPU, in-kernel
//!              |   (up to MAX_VCPUS)            |
//!  0x0900_0000 +--------------------------------+
//!              | ns16550a UART            4 KiB | userspace (vm-superio), SPI 1
//!  0x0900_1000 +--------------------------------+
//!              |   (unmapped)                   |
//!  0x0A00_0000 +--------------------------------+
//!              | test device control      4 KiB | userspace
//!  0x0A00_1000 +--------------------------------+
//!              |   (unmapped)                   |
//!  0x7E00_0000 +--------------------------------+
//!              | framebuffer (--framebuffer)    | userspace, NOT a memslot;
//!              |   up to 16 MiB                 | simple-framebuffer node
//!  0x7F00_0000 +--------------------------------+
//!              |   (unmapped)                   |
//!  0x7FF0_0000 +--------------------------------+
//!              | test device data window  1 MiB | userspace, NOT a memslot
//!  0x8000_0000 +--------------------------------+
//!              | RAM (one memslot)    --mem     | flat binary / Image at the start,
//!              |                                | DTB in the last 2 MiB
//!              +--------------------------------+
//! ```

/// Base of the GICv3 distributor (`GICD_*`).
pub const GIC_DIST_BASE: u64 = 0x0800_0000;
/// Size of the GICv3 distributor frame (`KVM_VGIC_V3_DIST_SIZE`).
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// Base of the first GICv3 redistributor (`GICR_*`); one per vCPU, contiguous.
pub const GIC_REDIST_BASE: u64 = 0x080A_0000;
/// Size of one redistributor: RD_base + SGI_base frames (`KVM_VGIC_V3_REDIST_SIZE`,
/// which bindgen does not generate because it is defined from other macros).
pub const GIC_REDIST_SIZE: u64 = 0x2_0000;
/// Number of vCPUs whose redistributors fit below the UART (0x0900_0000).
pub const MAX_VCPUS: u64 = (UART_BASE - GIC_REDIST_BASE) / GIC_REDIST_SIZE;

/// Base of the ns16550a UART.
pub const UART_BASE: u64 = 0x0900_0000;
/// Size of the UART window.
pub const UART_SIZE: u64 = 0x1000;
/// The UART's SPI number (interrupt id 32 + 1 = 33; GSI 1 for irqfd).
pub const UART_SPI: u32 = 1;
/// The UART input clock, as QEMU's virt board and lkvm describe it.
pub const UART_CLOCK_HZ: u32 = 1_843_200;

/// Base of the test device's control registers.
pub const TESTDEV_CTRL_BASE: u64 = 0x0A00_0000;
/// Size of the test device's control window.
pub const TESTDEV_CTRL_SIZE: u64 = 0x1000;
/// Base of the test device's data window (RAM-backed MMIO, not a memslot).
pub const TESTDEV_DATA_BASE: u64 = 0x7FF0_0000;
/// Size of the test device's data window.
pub const TESTDEV_DATA_SIZE: u64 = 0x10_0000;

/// Base of the framebuffer window (`--framebuffer`): scan-out memory the VMM
/// keeps, deliberately not a memslot, so every guest access to it exits.
pub const FB_BASE: u64 = 0x7E00_0000;
/// Largest framebuffer the window holds (16 MiB: 1920x1080 at 32 bpp fits).
pub const FB_MAX_SIZE: u64 = 0x100_0000;

/// Start of guest RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Default RAM size (256 MiB).
pub const DEFAULT_RAM_SIZE: u64 = 256 << 20;
/// Smallest RAM we accept: room for a 2 MiB aligned image slot plus the 2 MiB DTB slot.
pub const MIN_RAM_SIZE: u64 = 8 << 20;
/// Largest RAM we accept (the IPA space KVM gives by default is 40 bits).
pub const MAX_RAM_SIZE: u64 = (1 << 40) - RAM_BASE;

/// The DTB lives in the last 2 MiB of RAM.
pub const DTB_SLOT_SIZE: u64 = 2 << 20;
/// Largest DTB we generate.
pub const DTB_MAX_SIZE: usize = 0x10_0000;

/// Number of interrupts the vGIC is configured with (`KVM_DEV_ARM_VGIC_GRP_NR_IRQS`):
/// 32 private + 96 SPIs; a multiple of 32 as the kernel requires.
pub const GIC_NR_IRQS: u32 = 128;

/// The DTB's address for a given RAM size: 2 MiB below the end of RAM (8-byte aligned
/// by construction).
pub const fn dtb_addr(ram_size: u64) -> u64 {
    RAM_BASE + ram_size - DTB_SLOT_SIZE
}

/// The redistributor window's total size for `vcpus` vCPUs.
pub const fn redist_window_size(vcpus: u64) -> u64 {
    vcpus * GIC_REDIST_SIZE
}

// The windows do not overlap and sit below RAM; the data window ends exactly
// where RAM starts (straddling accesses are a feature of the test device).
const _: () = {
    assert!(GIC_DIST_BASE + GIC_DIST_SIZE <= GIC_REDIST_BASE);
    assert!(GIC_REDIST_BASE + redist_window_size(MAX_VCPUS) <= UART_BASE);
    assert!(UART_BASE + UART_SIZE <= TESTDEV_CTRL_BASE);
    assert!(TESTDEV_CTRL_BASE + TESTDEV_CTRL_SIZE <= FB_BASE);
    assert!(FB_BASE + FB_MAX_SIZE <= TESTDEV_DATA_BASE);
    assert!(TESTDEV_DATA_BASE + TESTDEV_DATA_SIZE == RAM_BASE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values() {
        assert_eq!(MAX_VCPUS, 123);
        assert_eq!(dtb_addr(DEFAULT_RAM_SIZE), 0x8FE0_0000);
        assert_eq!(redist_window_size(2), 0x4_0000);
    }
}
