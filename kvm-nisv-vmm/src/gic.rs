// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The in-kernel GICv3 and the path for NISV accesses to its windows.
//!
//! The vGIC is created with `KVM_CREATE_DEVICE` (`KVM_DEV_TYPE_ARM_VGIC_V3`), its
//! distributor and redistributor bases set through `KVM_DEV_ARM_VGIC_GRP_ADDR`,
//! the number of interrupts through `KVM_DEV_ARM_VGIC_GRP_NR_IRQS`, and
//! initialised with `KVM_DEV_ARM_VGIC_CTRL_INIT` (firecracker's
//! `gic/gicv3/mod.rs` does the same).
//!
//! Plain accesses to those windows never leave the kernel. A NISV access (say a
//! post-index `str` loop programming `GICD_IROUTER<n>`) does: the kernel cannot
//! emulate it, and the userspace bus has no GIC. [`GicRegs`] puts the windows on
//! the bus and forwards each access to the vGIC's register interface,
//! `KVM_{GET,SET}_DEVICE_ATTR` with `KVM_DEV_ARM_VGIC_GRP_DIST_REGS` /
//! `KVM_DEV_ARM_VGIC_GRP_REDIST_REGS`
//! (Documentation/virt/kvm/devices/arm-vgic-v3.rst). That interface is 32-bit
//! only and is meant for save/restore, so a few registers behave differently
//! from a guest access; [`GicRegs`] restores the guest semantics (see
//! `docs/vmm.md`, "The vGIC path", and arch/arm64/kvm/vgic/vgic-mmio-v3.c).

use std::sync::Arc;

use crate::bus::{BusDevice, DeviceError};
use crate::layout::GIC_REDIST_SIZE;

/// `KVM_DEV_ARM_VGIC_GRP_DIST_REGS` (include/uapi/asm/kvm.h).
pub const GRP_DIST_REGS: u32 = 1;
/// `KVM_DEV_ARM_VGIC_GRP_REDIST_REGS`.
pub const GRP_REDIST_REGS: u32 = 5;

// Distributor register offsets (GICv3 architecture specification, 12.9).
const GICD_TYPER: u64 = 0x0004;
const GICD_TYPER2: u64 = 0x000c;
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ICPENDR: u64 = 0x0280;
const GICD_ICPENDR_END: u64 = 0x0300;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ITARGETSR_END: u64 = 0x0c00;
const GICD_IDREGS: u64 = 0xffd0;
// Redistributor register offsets (12.10, 12.11): RD_base frame, then SGI_base at +64 KiB.
const GICR_IIDR: u64 = 0x0004;
/// End of GICR_TYPER (0x8, 64-bit).
const GICR_TYPER_END: u64 = 0x0010;
const SGI_BASE: u64 = 0x1_0000;
const GICR_ISPENDR0: u64 = SGI_BASE + 0x0200;
const GICR_ICPENDR0: u64 = SGI_BASE + 0x0280;
const GICR_IPRIORITYR: u64 = SGI_BASE + 0x0400;
const GICR_IPRIORITYR_END: u64 = SGI_BASE + 0x0420;
const GICR_IDREGS: u64 = 0xffd0;

/// The vGIC's 32-bit register attributes (`KVM_GET/SET_DEVICE_ATTR`), as an
/// interface so the forwarding logic is tested without /dev/kvm.
pub trait VgicAttrs: Send + Sync {
    /// Read the 32-bit register `attr` of `group`; `Err` carries the errno.
    fn get(&self, group: u32, attr: u64) -> Result<u32, i32>;
    /// Write the 32-bit register `attr` of `group`.
    fn set(&self, group: u32, attr: u64, val: u32) -> Result<(), i32>;
}

/// The `mpidr` field of a redistributor attribute: Aff3..Aff0 packed in 32 bits
/// (arm-vgic-v3.rst: `| Aff3 | Aff2 | Aff1 | Aff0 |` in bits 63:32 of `attr`).
pub fn mpidr_field(mpidr: u64) -> u64 {
    let aff3 = (mpidr >> 32) & 0xff;
    ((aff3 << 24) | (mpidr & 0xff_ffff)) << 32
}

/// Which window a [`GicRegs`] serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The distributor.
    Dist,
    /// The redistributors, one [`GIC_REDIST_SIZE`] block per vCPU in this MPIDR order.
    Redist(Vec<u64>),
}

/// A bus device that forwards accesses to a vGIC window to KVM.
pub struct GicRegs {
    frame: Frame,
    attrs: Arc<dyn VgicAttrs>,
}

impl std::fmt::Debug for GicRegs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GicRegs")
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

/// What to do with a 32-bit register write from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteKind {
    /// Forward as is.
    Plain,
    /// Read-only for the guest (TYPER, IIDR, ID registers): ignore. Through the
    /// attribute interface some of these are writable (GICD_IIDR's revision) or
    /// return EINVAL (GICD_TYPER2).
    Ignore,
    /// ISPENDR: the attribute writes the whole pending latch; the guest's write
    /// is write-one-to-set, so OR the bits into the current latch.
    SetPending,
    /// ICPENDR: RAZ/WI through the attribute interface; the guest's write is
    /// write-one-to-clear, so clear the bits in the ISPENDR latch.
    ClearPending,
}

impl GicRegs {
    /// A device for `frame` over `attrs`.
    pub fn new(frame: Frame, attrs: Arc<dyn VgicAttrs>) -> Self {
        GicRegs { frame, attrs }
    }

    /// The attribute group and the `attr` value for the 32-bit register at
    /// `offset` in the window, plus the offset inside its frame.
    fn locate(&self, offset: u64) -> Option<(u32, u64, u64)> {
        match &self.frame {
            Frame::Dist => (offset < 0x1_0000).then_some((GRP_DIST_REGS, offset, offset)),
            Frame::Redist(mpidrs) => {
                let idx = usize::try_from(offset / GIC_REDIST_SIZE).ok()?;
                let mpidr = *mpidrs.get(idx)?;
                let off = offset % GIC_REDIST_SIZE;
                Some((GRP_REDIST_REGS, mpidr_field(mpidr) | off, off))
            }
        }
    }

    fn is_dist(&self) -> bool {
        self.frame == Frame::Dist
    }

    /// The ISPENDR register that holds the latch a ICPENDR offset clears.
    fn pending_alias(&self, off: u64) -> Option<u64> {
        if self.is_dist() {
            (GICD_ICPENDR..GICD_ICPENDR_END)
                .contains(&off)
                .then(|| off - (GICD_ICPENDR - GICD_ISPENDR))
        } else {
            (off == GICR_ICPENDR0).then_some(GICR_ISPENDR0)
        }
    }

    fn write_kind(&self, off: u64) -> WriteKind {
        if self.is_dist() {
            match off {
                GICD_TYPER..=GICD_TYPER2 => WriteKind::Ignore,
                GICD_ISPENDR..GICD_ICPENDR => WriteKind::SetPending,
                GICD_ICPENDR..GICD_ICPENDR_END => WriteKind::ClearPending,
                GICD_IDREGS.. => WriteKind::Ignore,
                _ => WriteKind::Plain,
            }
        } else {
            match off {
                GICR_IIDR..GICR_TYPER_END => WriteKind::Ignore,
                GICR_ISPENDR0 => WriteKind::SetPending,
                GICR_ICPENDR0 => WriteKind::ClearPending,
                GICR_IDREGS..SGI_BASE => WriteKind::Ignore,
                _ => WriteKind::Plain,
            }
        }
    }

    /// Whether byte accesses are architecturally allowed (IPRIORITYR, ITARGETSR).
    fn byte_accessible(&self, off: u64) -> bool {
        if self.is_dist() {
            (GICD_IPRIORITYR..GICD_ITARGETSR_END).contains(&off)
        } else {
            (GICR_IPRIORITYR..GICR_IPRIORITYR_END).contains(&off)
        }
    }

    fn err(offset: u64, what: &str, errno: i32) -> DeviceError {
        DeviceError::Backend(format!(
            "vGIC register {offset:#x}: {what} failed: {}",
            std::io::Error::from_raw_os_error(errno)
        ))
    }

    /// A guest read of the 32-bit register at `offset` (4-byte aligned).
    pub fn read32(&self, offset: u64) -> Result<u32, DeviceError> {
        let (group, attr, off) = self
            .locate(offset)
            .ok_or(DeviceError::BadAccess { offset, len: 4 })?;
        // ICPENDR reads as the pending state, like ISPENDR (it is RAZ through the attributes).
        let attr = match self.pending_alias(off) {
            Some(ispendr) => attr - off + ispendr,
            None => attr,
        };
        self.attrs
            .get(group, attr)
            .map_err(|e| Self::err(offset, "KVM_GET_DEVICE_ATTR", e))
    }

    /// A guest write of the 32-bit register at `offset` (4-byte aligned).
    pub fn write32(&self, offset: u64, val: u32) -> Result<(), DeviceError> {
        let (group, attr, off) = self
            .locate(offset)
            .ok_or(DeviceError::BadAccess { offset, len: 4 })?;
        let get = |a| {
            self.attrs
                .get(group, a)
                .map_err(|e| Self::err(offset, "KVM_GET_DEVICE_ATTR", e))
        };
        let set = |a, v| {
            self.attrs
                .set(group, a, v)
                .map_err(|e| Self::err(offset, "KVM_SET_DEVICE_ATTR", e))
        };
        match self.write_kind(off) {
            WriteKind::Plain => set(attr, val),
            WriteKind::Ignore => Ok(()),
            WriteKind::SetPending => {
                let latch = get(attr)?;
                set(attr, latch | val)
            }
            WriteKind::ClearPending => {
                let Some(ispendr) = self.pending_alias(off) else {
                    return Ok(());
                };
                let a = attr - off + ispendr;
                let latch = get(a)?;
                set(a, latch & !val)
            }
        }
    }
}

impl BusDevice for GicRegs {
    fn name(&self) -> &str {
        if self.is_dist() { "gicd" } else { "gicr" }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        let len = data.len();
        let bad = DeviceError::BadAccess { offset, len };
        if !matches!(len, 1 | 2 | 4 | 8) || !offset.is_multiple_of(len as u64) {
            return Err(bad);
        }
        match len {
            8 => {
                // 64-bit registers (IROUTER, TYPER, PROPBASER...) as two words, low first.
                let lo = self.read32(offset)?;
                let hi = self.read32(offset + 4)?;
                data.copy_from_slice(&(u64::from(lo) | (u64::from(hi) << 32)).to_le_bytes());
            }
            4 => data.copy_from_slice(&self.read32(offset)?.to_le_bytes()),
            _ => {
                let off = self.locate(offset).map(|l| l.2).ok_or(bad.clone())?;
                if !self.byte_accessible(off) {
                    return Err(bad);
                }
                let word = self.read32(offset & !3)?.to_le_bytes();
                let at = (offset & 3) as usize;
                data.copy_from_slice(word.get(at..at + len).ok_or(bad)?);
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let len = data.len();
        let bad = DeviceError::BadAccess { offset, len };
        if !matches!(len, 1 | 2 | 4 | 8) || !offset.is_multiple_of(len as u64) {
            return Err(bad);
        }
        let word = |b: &[u8]| -> u32 {
            let mut w = [0u8; 4];
            for (d, s) in w.iter_mut().zip(b) {
                *d = *s;
            }
            u32::from_le_bytes(w)
        };
        match len {
            8 => {
                let (lo, hi) = data.split_at(4);
                self.write32(offset, word(lo))?;
                self.write32(offset + 4, word(hi))
            }
            4 => self.write32(offset, word(data)),
            _ => {
                // Priority bytes: read-modify-write of the containing word (the other
                // bytes are rewritten with the values just read, which is exact for
                // IPRIORITYR: plain storage, no side effects).
                let off = self.locate(offset).map(|l| l.2).ok_or(bad.clone())?;
                if !self.byte_accessible(off) {
                    return Err(bad);
                }
                let base = offset & !3;
                let mut w = self.read32(base)?.to_le_bytes();
                let at = (offset & 3) as usize;
                w.get_mut(at..at + len).ok_or(bad)?.copy_from_slice(data);
                self.write32(base, u32::from_le_bytes(w))
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use self::kvm::*;

#[cfg(target_arch = "aarch64")]
mod kvm {
    use std::sync::Arc;

    use kvm_bindings::*;
    use kvm_ioctls::{DeviceFd, VmFd};

    use super::VgicAttrs;
    use crate::layout::*;
    use crate::vcpu::VcpuControl;

    /// Create and initialise the vGICv3 for `vcpus` vCPUs (all created already).
    pub fn create_vgic(vm: &VmFd, vcpus: u64) -> Result<DeviceFd, String> {
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
            fd: 0,
            flags: 0,
        };
        let fd = vm
            .create_device(&mut dev)
            .map_err(|e| format!("KVM_CREATE_DEVICE(vgic-v3): {e}"))?;
        let dist: u64 = GIC_DIST_BASE;
        let redist: u64 = GIC_REDIST_BASE;
        let nr_irqs: u32 = GIC_NR_IRQS;
        let set = |group: u32, attr: u64, addr: u64, what: &str| {
            let a = kvm_device_attr {
                group,
                attr,
                addr,
                flags: 0,
            };
            fd.set_device_attr(&a)
                .map_err(|e| format!("vGIC {what}: {e}"))
        };
        set(
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            u64::from(KVM_VGIC_V3_ADDR_TYPE_DIST),
            &dist as *const u64 as u64,
            "distributor base",
        )?;
        set(
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            u64::from(KVM_VGIC_V3_ADDR_TYPE_REDIST),
            &redist as *const u64 as u64,
            "redistributor base",
        )?;
        set(
            KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
            0,
            &nr_irqs as *const u32 as u64,
            "number of IRQs",
        )?;
        set(
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
            0,
            "CTRL_INIT",
        )?;
        log::debug!("vGICv3: dist {dist:#x}, redist {redist:#x} x {vcpus}, {nr_irqs} IRQs");
        Ok(fd)
    }

    /// The register attributes of a KVM vGIC device. The interface fails with
    /// EBUSY while any other vCPU is inside KVM_RUN (`lock_all_vcpus()` in
    /// arch/arm64/kvm/vgic/vgic-kvm-device.c); then the other vCPUs are kicked
    /// out and held while the access is retried.
    #[derive(Debug)]
    pub struct KvmVgicAttrs {
        fd: DeviceFd,
        control: Arc<VcpuControl>,
    }

    impl KvmVgicAttrs {
        /// Wrap the vGIC device.
        pub fn new(fd: DeviceFd, control: Arc<VcpuControl>) -> Self {
            KvmVgicAttrs { fd, control }
        }

        fn access(&self, group: u32, attr: u64, val: &mut u32, write: bool) -> Result<(), i32> {
            let once = |val: &mut u32| -> Result<(), i32> {
                let mut a = kvm_device_attr {
                    group,
                    attr,
                    addr: val as *mut u32 as u64,
                    flags: 0,
                };
                let r = if write {
                    self.fd.set_device_attr(&a)
                } else {
                    // SAFETY: `a.addr` points at `val`, a live u32, which is what the vGIC
                    // register groups read or write (arm-vgic-v3.rst: "addr points to a __u32").
                    unsafe { self.fd.get_device_attr(&mut a) }
                };
                r.map_err(|e| e.errno())
            };
            match once(val) {
                Err(libc::EBUSY) => self.control.with_others_paused(|| {
                    let mut last = Err(libc::EBUSY);
                    for _ in 0..1000 {
                        last = once(val);
                        if last != Err(libc::EBUSY) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    last
                }),
                r => r,
            }
        }
    }

    impl VgicAttrs for KvmVgicAttrs {
        fn get(&self, group: u32, attr: u64) -> Result<u32, i32> {
            let mut v = 0u32;
            self.access(group, attr, &mut v, false)?;
            Ok(v)
        }
        fn set(&self, group: u32, attr: u64, mut val: u32) -> Result<(), i32> {
            self.access(group, attr, &mut val, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A model of the kernel's attribute semantics for the registers the tests
    /// touch: plain storage, except that ICPENDR is RAZ/WI and ISPENDR writes
    /// the latch (vgic-mmio-v3.c: vgic_v3_uaccess_write_pending,
    /// vgic_mmio_uaccess_write_wi), and GICD_TYPER2 refuses changes (EINVAL).
    #[derive(Default)]
    struct FakeKvm {
        regs: Mutex<HashMap<(u32, u64), u32>>,
        log: Mutex<Vec<(char, u32, u64, u32)>>,
    }

    impl VgicAttrs for FakeKvm {
        fn get(&self, group: u32, attr: u64) -> Result<u32, i32> {
            let off = attr & 0xffff_ffff;
            let v = if (group == GRP_DIST_REGS && (0x280..0x300).contains(&off))
                || (group == GRP_REDIST_REGS && off == 0x10280)
            {
                0
            } else {
                *self.regs.lock().unwrap().get(&(group, attr)).unwrap_or(&0)
            };
            self.log.lock().unwrap().push(('r', group, attr, v));
            Ok(v)
        }
        fn set(&self, group: u32, attr: u64, val: u32) -> Result<(), i32> {
            let off = attr & 0xffff_ffff;
            self.log.lock().unwrap().push(('w', group, attr, val));
            if group == GRP_DIST_REGS && off == 0xc {
                return Err(libc::EINVAL);
            }
            if (group == GRP_DIST_REGS && (0x280..0x300).contains(&off))
                || (group == GRP_REDIST_REGS && off == 0x10280)
            {
                return Ok(());
            }
            self.regs.lock().unwrap().insert((group, attr), val);
            Ok(())
        }
    }

    fn dist() -> (GicRegs, Arc<FakeKvm>) {
        let k = Arc::new(FakeKvm::default());
        (GicRegs::new(Frame::Dist, k.clone()), k)
    }

    #[test]
    fn irouter_64bit_store_is_two_words() {
        let (mut g, k) = dist();
        // GICD_IROUTER<40> = 0x6000 + 8 * 40.
        let off = 0x6000 + 8 * 40;
        g.write(off, &0x0000_0001_0000_0203u64.to_le_bytes())
            .unwrap();
        assert_eq!(
            *k.log.lock().unwrap(),
            vec![
                ('w', GRP_DIST_REGS, off, 0x0000_0203),
                ('w', GRP_DIST_REGS, off + 4, 1)
            ]
        );
        let mut b = [0u8; 8];
        g.read(off, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0x0000_0001_0000_0203);
    }

    #[test]
    fn pending_registers_keep_guest_semantics() {
        let (mut g, k) = dist();
        // ISPENDR1 (SPIs 32..63): two write-one-to-set stores accumulate.
        g.write(0x204, &0b0001u32.to_le_bytes()).unwrap();
        g.write(0x204, &0b0100u32.to_le_bytes()).unwrap();
        assert_eq!(k.get(GRP_DIST_REGS, 0x204), Ok(0b0101));
        // ICPENDR1 clears one bit; reading ICPENDR shows the pending state.
        g.write(0x284, &0b0001u32.to_le_bytes()).unwrap();
        assert_eq!(k.get(GRP_DIST_REGS, 0x204), Ok(0b0100));
        let mut b = [0u8; 4];
        g.read(0x284, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0b0100);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let (mut g, k) = dist();
        for off in [0x4u64, 0x8, 0xc, 0xffe8] {
            g.write(off, &0xffff_ffffu32.to_le_bytes()).unwrap();
        }
        assert!(
            k.log.lock().unwrap().is_empty(),
            "{:?}",
            k.log.lock().unwrap()
        );
        // GICD_CTLR is forwarded.
        g.write(0, &0x12u32.to_le_bytes()).unwrap();
        assert_eq!(k.get(GRP_DIST_REGS, 0), Ok(0x12));
    }

    #[test]
    fn byte_accesses_only_where_the_architecture_allows() {
        let (mut g, k) = dist();
        k.set(GRP_DIST_REGS, 0x420, 0x4433_2211).unwrap();
        g.write(0x422, &[0xa0]).unwrap();
        assert_eq!(k.get(GRP_DIST_REGS, 0x420), Ok(0x44a0_2211));
        let mut b = [0u8; 2];
        g.read(0x422, &mut b).unwrap();
        assert_eq!(b, [0xa0, 0x44]);
        // A byte store to ISENABLER is not allowed; misaligned or odd sizes neither.
        assert!(g.write(0x100, &[1]).is_err());
        assert!(g.write(0x102, &[0; 4]).is_err());
        assert!(g.write(0x100, &[0; 3]).is_err());
        assert!(
            g.read(0x10000, &mut [0; 4]).is_err(),
            "beyond the distributor"
        );
    }

    #[test]
    fn redistributor_attrs_carry_the_mpidr() {
        let k = Arc::new(FakeKvm::default());
        let mpidrs = vec![0x8000_0000, 0x8000_0001, 0x80_8000_0102];
        let mut g = GicRegs::new(Frame::Redist(mpidrs), k.clone());
        assert_eq!(g.name(), "gicr");
        // vCPU 1's GICR_ISENABLER0 (SGI_base + 0x100).
        g.write(GIC_REDIST_SIZE + 0x1_0100, &1u32.to_le_bytes())
            .unwrap();
        // vCPU 2's GICR_IPRIORITYR (byte), Aff3 = 0x80, Aff1 = 1, Aff0 = 2.
        g.write(2 * GIC_REDIST_SIZE + 0x1_0401, &[0x80]).unwrap();
        let log = k.log.lock().unwrap().clone();
        assert_eq!(log[0], ('w', GRP_REDIST_REGS, (1u64 << 32) | 0x1_0100, 1));
        assert_eq!(log.last().unwrap().2, (0x8000_0102u64 << 32) | 0x1_0400);
        assert_eq!(log.last().unwrap().3, 0x8000);
        // GICR_ICPENDR0 clears through ISPENDR0.
        k.set(GRP_REDIST_REGS, 0x1_0200, 0xff).unwrap();
        g.write(0x1_0280, &0x0fu32.to_le_bytes()).unwrap();
        assert_eq!(k.get(GRP_REDIST_REGS, 0x1_0200), Ok(0xf0));
        // No fourth redistributor.
        assert!(g.read(3 * GIC_REDIST_SIZE, &mut [0; 4]).is_err());
        assert_eq!(mpidr_field(0xff_8000_0000 | 0x0a_0b0c), 0xff0a_0b0c << 32);
    }
}
