// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Typed parsing of KVM_EXIT_ARM_NISV from `kvm_run`.
//!
//! `io_mem_abort()` (`arch/arm64/kvm/mmio.c`) fills, for a data abort outside
//! every memslot whose syndrome has ISV = 0, on a VM with
//! `KVM_CAP_ARM_NISV_TO_USER` enabled:
//!
//! * `exit_reason = KVM_EXIT_ARM_NISV` (28);
//! * `arm_nisv.esr_iss`: ESR_EL2 masked to CM | WnR | DFSC ([`NisvIss`]);
//! * `arm_nisv.fault_ipa`: the faulting IPA. `kvm_handle_guest_abort()`
//!   (`arch/arm64/kvm/mmu.c`) builds it from HPFAR_EL2 (page-aligned) ORed with
//!   `FAR_EL2 & GENMASK(11, 0)`, so it includes the offset within a 4 KiB page
//!   (tests/kvm_nisv.rs checks this on the live kernels).
//!
//! The PC is not advanced: the vCPU re-executes the instruction on the next
//! `KVM_RUN` unless userspace emulates it (and moves the PC) or injects an
//! abort ([`crate::inject`]).
//!
//! kvm-ioctls (0.25) has no variant for this exit and reports it as
//! `VcpuExit::Unsupported(28)`; `NisvExit::from_vcpu` (feature `kvm-ioctls`,
//! in `kvm_ioctls`) reads the payload from the vCPU's mapped
//! `kvm_run`. Without the capability the same abort makes `KVM_RUN` fail with
//! `ENOSYS`; `RunError::from_errno` (feature `kvm`) names the cause.
//!
//! Linux 7.2 added two more arm64 abort exits, parsed by [`ArmAbortExit`] from
//! any [`KvmRunView`] (no kvm-ioctls needed):
//!
//! * `KVM_EXIT_ARM_LDST64B` (42): `io_mem_abort()` (`arch/arm64/kvm/mmio.c`, 7.2)
//!   returns it for an abort WITH a valid syndrome outside every memslot whose
//!   DFSC is a translation, access flag or permission fault (0b000100..=0b001111,
//!   or 0b101010..=0b101011) and whose ESR_EL2.LST (bits 12:11) is non-zero, i.e.
//!   an `LD64B`/`ST64B`/`ST64BV`/`ST64BV0` (FEAT_LS64) that userspace must emulate.
//!   Same `arm_nisv` payload as NISV, but `esr_iss = ESR_EL2 & !ESR_ELx_FSC`: the
//!   WHOLE 64-bit syndrome (EC, IL, ISV, SAS/SRT/..., LST, ISS2 with the `Xs`
//!   register of `ST64BV*`) with only DFSC (bits 5:0) cleared, not the NISV mask
//!   ([`Ldst64bExit`]).
//! * `KVM_EXIT_ARM_SEA` (41): `kvm_handle_guest_sea()` (`arch/arm64/kvm/mmu.c`, 7.2)
//!   returns it for a synchronous external abort taken from the guest when the VM
//!   enabled `KVM_CAP_ARM_SEA_TO_USER` (245), the host has FEAT_RAS, APEI did not
//!   claim the error and the host does not own it (`host_owns_sea()`). Its own
//!   `arm_sea` payload ([`SeaExit`]): `esr = ESR_EL2 & (EC | IL | FnV | EA | CM |
//!   WnR | FSC, plus SET if the VM has RAS)`, `gva` = FAR_EL2 unless FnV, `gpa` =
//!   HPFAR_EL2's page-aligned IPA with `KVM_EXIT_ARM_SEA_FLAG_GPA_VALID` when the
//!   kernel has one.

use core::fmt;

#[cfg(feature = "kvm")]
use thiserror::Error;

#[cfg(feature = "kvm")]
use crate::errno::Errno;
use crate::esr::NisvIss;

/// `KVM_EXIT_ARM_NISV`.
pub const KVM_EXIT_ARM_NISV: u32 = kvm_nisv_sys::KVM_EXIT_ARM_NISV;

/// `KVM_EXIT_ARM_SEA` (41, Linux 7.2+), from the generated bindings.
pub const KVM_EXIT_ARM_SEA: u32 = kvm_nisv_sys::KVM_EXIT_ARM_SEA;

/// `KVM_EXIT_ARM_LDST64B` (42, Linux 7.2+), from the generated bindings.
pub const KVM_EXIT_ARM_LDST64B: u32 = kvm_nisv_sys::KVM_EXIT_ARM_LDST64B;

/// `KVM_EXIT_ARM_SEA_FLAG_GPA_VALID`: `arm_sea.gpa` holds the faulting IPA.
pub const KVM_EXIT_ARM_SEA_FLAG_GPA_VALID: u64 =
    kvm_nisv_sys::KVM_EXIT_ARM_SEA_FLAG_GPA_VALID as u64;

/// Read access to the parts of a `struct kvm_run` this module needs.
///
/// Implemented for `kvm_nisv_sys::kvm_run` and for kvm-bindings' `kvm_run`
/// (feature `kvm-ioctls`, in `kvm_ioctls`). Any other binding of the kernel's `struct kvm_run`
/// can implement it.
pub trait KvmRunView {
    /// `kvm_run.exit_reason`.
    fn exit_reason(&self) -> u32;
    /// `kvm_run.arm_nisv.{esr_iss, fault_ipa}`, read without checking the exit
    /// reason (the union member is plain integers, so any content is a valid
    /// value; it is only meaningful when `exit_reason` is 28).
    fn arm_nisv_raw(&self) -> (u64, u64);
    /// `kvm_run.arm_sea.{flags, esr, gva, gpa}` (the first four `u64`s of the exit
    /// union), read without checking the exit reason; meaningful when
    /// `exit_reason` is 41. `None` (the default) if the binding cannot express it;
    /// [`ArmAbortExit::from_kvm_run`] then reports the exit as
    /// [`ArmAbortExit::SeaUnreadable`].
    fn arm_sea_raw(&self) -> Option<[u64; 4]> {
        None
    }
}

impl KvmRunView for kvm_nisv_sys::kvm_run {
    fn exit_reason(&self) -> u32 {
        self.exit_reason
    }

    fn arm_nisv_raw(&self) -> (u64, u64) {
        // SAFETY: `arm_nisv` is a member of the exit union made of two u64s;
        // every bit pattern is a valid value, so reading it cannot be UB even
        // when another member was written last.
        let n = unsafe { self.__bindgen_anon_1.arm_nisv };
        (n.esr_iss, n.fault_ipa)
    }

    fn arm_sea_raw(&self) -> Option<[u64; 4]> {
        // SAFETY: `arm_sea` is a member of the exit union made of four u64s;
        // every bit pattern is a valid value.
        let s = unsafe { self.__bindgen_anon_1.arm_sea };
        Some([s.flags, s.esr, s.gva, s.gpa])
    }
}

/// A parsed `KVM_EXIT_ARM_NISV` exit.
///
/// Built by [`NisvExit::from_kvm_run`], `NisvExit::from_vcpu` (kvm-ioctls) or
/// [`NisvExit::new`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NisvExit {
    /// The syndrome bits the kernel passes.
    pub iss: NisvIss,
    /// The faulting IPA, including the offset within the 4 KiB page.
    pub fault_ipa: u64,
}

impl NisvExit {
    /// Build from the raw `arm_nisv` payload.
    pub const fn new(esr_iss: u64, fault_ipa: u64) -> Self {
        NisvExit {
            iss: NisvIss::new(esr_iss),
            fault_ipa,
        }
    }

    /// The exit, if `run` holds a `KVM_EXIT_ARM_NISV` exit.
    pub fn from_kvm_run<R: KvmRunView + ?Sized>(run: &R) -> Option<Self> {
        if run.exit_reason() != KVM_EXIT_ARM_NISV {
            return None;
        }
        let (esr_iss, fault_ipa) = run.arm_nisv_raw();
        Some(Self::new(esr_iss, fault_ipa))
    }

    /// Whether the access was a write (WnR).
    pub const fn is_write(&self) -> bool {
        self.iss.is_write()
    }
}

impl fmt::Debug for NisvExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NisvExit")
            .field("iss", &self.iss)
            .field("fault_ipa", &format_args!("{:#x}", self.fault_ipa))
            .finish()
    }
}

impl fmt::Display for NisvExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data abort without valid syndrome at IPA {:#x}: {}",
            self.fault_ipa, self.iss
        )
    }
}

/// A parsed `KVM_EXIT_ARM_LDST64B` exit (Linux 7.2+): a FEAT_LS64 single-copy
/// atomic 64-byte access (`LD64B`, `ST64B`, `ST64BV`, `ST64BV0`) outside every
/// memslot, which userspace must emulate in full.
///
/// The payload is `arm_nisv`, but the kernel fills `esr_iss` with ESR_EL2 minus
/// its DFSC bits (`esr & ~ESR_ELx_FSC`, `io_mem_abort()`, `arch/arm64/kvm/mmio.c`),
/// so unlike [`NisvExit`] the syndrome is complete: ISV is 1, SRT names the data
/// register (`Xt`, the first of eight), LST (bits 12:11) the instruction and ISS2
/// bits 36:32 the status register `Xs` of `ST64BV`/`ST64BV0`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ldst64bExit {
    /// ESR_EL2 with bits 5:0 (DFSC) cleared, as the kernel passes it.
    pub esr: u64,
    /// The faulting IPA (HPFAR_EL2 | FAR_EL2\[11:0\], as for NISV).
    pub fault_ipa: u64,
}

/// ESR_ELx.LST (bits 12:11) of a data abort: which FEAT_LS64 instruction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ls64Type {
    /// 0b01: `ST64BV` (store, status result in `Xs`).
    St64bv,
    /// 0b10: `LD64B` or `ST64B` (WnR tells which).
    Ld64bOrSt64b,
    /// 0b11: `ST64BV0` (store with ACCDATA_EL1, status in `Xs`).
    St64bv0,
}

impl Ldst64bExit {
    /// Build from the raw `arm_nisv` payload of exit 42.
    pub const fn new(esr_iss: u64, fault_ipa: u64) -> Self {
        Ldst64bExit {
            esr: esr_iss,
            fault_ipa,
        }
    }

    /// The syndrome as an [`Esr`](crate::esr::Esr) (DFSC reads as 0).
    pub const fn esr(&self) -> crate::esr::Esr {
        crate::esr::Esr(self.esr)
    }

    /// LST, ESR bits 12:11; `None` for 0b00 (the kernel never sends that).
    pub const fn ls64_type(&self) -> Option<Ls64Type> {
        match (self.esr >> 11) & 0b11 {
            0b01 => Some(Ls64Type::St64bv),
            0b10 => Some(Ls64Type::Ld64bOrSt64b),
            0b11 => Some(Ls64Type::St64bv0),
            _ => None,
        }
    }

    /// WnR (bit 6): a store.
    pub const fn is_write(&self) -> bool {
        self.esr & (1 << 6) != 0
    }

    /// SRT (bits 20:16): the first of the eight data registers.
    pub const fn srt(&self) -> u8 {
        ((self.esr >> 16) & 0x1f) as u8
    }

    /// ISS2.Xs (bits 36:32): the status register of `ST64BV`/`ST64BV0`.
    pub const fn xs(&self) -> u8 {
        ((self.esr >> 32) & 0x1f) as u8
    }
}

impl fmt::Debug for Ldst64bExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ldst64bExit")
            .field("esr", &format_args!("{:#x}", self.esr))
            .field("fault_ipa", &format_args!("{:#x}", self.fault_ipa))
            .finish()
    }
}

/// A parsed `KVM_EXIT_ARM_SEA` exit (Linux 7.2+, `KVM_CAP_ARM_SEA_TO_USER`
/// enabled): the guest took a synchronous external abort that the host does not
/// handle itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeaExit {
    /// `arm_sea.flags` (bit 0: [`KVM_EXIT_ARM_SEA_FLAG_GPA_VALID`]; other bits are
    /// kept as the kernel wrote them).
    pub flags: u64,
    /// `arm_sea.esr`: ESR_EL2 masked to EC, IL, FnV, EA, CM, WnR, DFSC (and SET
    /// if the VM has FEAT_RAS).
    pub esr: u64,
    /// `arm_sea.gva`: FAR_EL2, the faulting virtual address (0 when FnV is set).
    pub gva: u64,
    /// `arm_sea.gpa`: the faulting IPA, page-aligned (HPFAR_EL2); only
    /// meaningful when [`SeaExit::gpa`] returns `Some`.
    pub raw_gpa: u64,
}

impl SeaExit {
    /// Build from the raw `arm_sea` payload.
    pub const fn new(flags: u64, esr: u64, gva: u64, gpa: u64) -> Self {
        SeaExit {
            flags,
            esr,
            gva,
            raw_gpa: gpa,
        }
    }

    /// The syndrome as an [`Esr`](crate::esr::Esr).
    pub const fn esr(&self) -> crate::esr::Esr {
        crate::esr::Esr(self.esr)
    }

    /// The faulting IPA, if the kernel set `KVM_EXIT_ARM_SEA_FLAG_GPA_VALID`.
    pub const fn gpa(&self) -> Option<u64> {
        if self.flags & KVM_EXIT_ARM_SEA_FLAG_GPA_VALID != 0 {
            Some(self.raw_gpa)
        } else {
            None
        }
    }

    /// The faulting virtual address, unless FnV (ESR bit 10) says FAR is not valid.
    pub const fn gva(&self) -> Option<u64> {
        if self.esr & (1 << 10) != 0 {
            None
        } else {
            Some(self.gva)
        }
    }
}

impl fmt::Debug for SeaExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeaExit")
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("esr", &format_args!("{:#x}", self.esr))
            .field("gva", &format_args!("{:#x}", self.gva))
            .field("gpa", &format_args!("{:#x}", self.raw_gpa))
            .finish()
    }
}

impl fmt::Display for SeaExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "synchronous external abort (ESR {:#x})", self.esr)?;
        if let Some(va) = self.gva() {
            write!(f, " at VA {va:#x}")?;
        }
        if let Some(ipa) = self.gpa() {
            write!(f, ", IPA {ipa:#x}")?;
        }
        Ok(())
    }
}

/// The arm64 abort exits a VMM may have to handle after `KVM_RUN` returned 0.
///
/// `#[non_exhaustive]`: later kernels may add abort exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArmAbortExit {
    /// `KVM_EXIT_ARM_NISV` (28): a data abort without a valid syndrome.
    Nisv(NisvExit),
    /// `KVM_EXIT_ARM_LDST64B` (42): a FEAT_LS64 64-byte access to emulate.
    Ldst64b(Ldst64bExit),
    /// `KVM_EXIT_ARM_SEA` (41): a synchronous external abort.
    Sea(SeaExit),
    /// `KVM_EXIT_ARM_SEA` from a [`KvmRunView`] that cannot read `arm_sea`.
    SeaUnreadable,
}

impl ArmAbortExit {
    /// The exit, if `run` holds one of the arm64 abort exits (`None` for every
    /// other exit reason).
    pub fn from_kvm_run<R: KvmRunView + ?Sized>(run: &R) -> Option<Self> {
        match run.exit_reason() {
            KVM_EXIT_ARM_NISV => {
                let (esr_iss, fault_ipa) = run.arm_nisv_raw();
                Some(ArmAbortExit::Nisv(NisvExit::new(esr_iss, fault_ipa)))
            }
            KVM_EXIT_ARM_LDST64B => {
                let (esr_iss, fault_ipa) = run.arm_nisv_raw();
                Some(ArmAbortExit::Ldst64b(Ldst64bExit::new(esr_iss, fault_ipa)))
            }
            KVM_EXIT_ARM_SEA => Some(match run.arm_sea_raw() {
                Some([flags, esr, gva, gpa]) => {
                    ArmAbortExit::Sea(SeaExit::new(flags, esr, gva, gpa))
                }
                None => ArmAbortExit::SeaUnreadable,
            }),
            _ => None,
        }
    }

    /// The exit reason number.
    pub const fn exit_reason(&self) -> u32 {
        match self {
            ArmAbortExit::Nisv(_) => KVM_EXIT_ARM_NISV,
            ArmAbortExit::Ldst64b(_) => KVM_EXIT_ARM_LDST64B,
            ArmAbortExit::Sea(_) | ArmAbortExit::SeaUnreadable => KVM_EXIT_ARM_SEA,
        }
    }
}

/// A `KVM_RUN` failure, with the NISV case explained.
#[cfg(feature = "kvm")]
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// `ENOSYS`: on arm64 this is what `io_mem_abort()` returns for a data
    /// abort outside guest RAM without a valid syndrome when the VM has not
    /// enabled `KVM_CAP_ARM_NISV_TO_USER` (Linux 6.1 also logs "Data abort
    /// outside memslots with no valid syndrome info").
    #[error(
        "KVM_RUN failed with ENOSYS: the guest accessed an address outside guest RAM with an \
         instruction KVM cannot decode (data abort without a valid instruction syndrome, e.g. a \
         load/store with writeback or a load/store pair), and KVM_CAP_ARM_NISV_TO_USER (177, \
         Linux 5.5+) is not enabled on this VM; enable it (kvm_nisv::kvm_ioctls::VmFdNisvExt::enable_nisv_to_user) \
         to receive KVM_EXIT_ARM_NISV and emulate the access"
    )]
    NisvNotEnabled,
    /// Any other errno.
    #[error("KVM_RUN failed: {source}")]
    Other {
        /// The errno of `KVM_RUN`.
        #[source]
        source: Errno,
    },
}

#[cfg(feature = "kvm")]
impl RunError {
    /// Classify the errno of a failed `KVM_RUN` (kvm-ioctls' `VcpuFd::run`
    /// error, or [`Errno`]).
    pub fn from_errno(e: impl Into<Errno>) -> Self {
        let e = e.into();
        if e.errno() == libc::ENOSYS {
            RunError::NisvNotEnabled
        } else {
            RunError::Other { source: e }
        }
    }
}

#[cfg(feature = "kvm")]
impl From<vmm_sys_util::errno::Error> for RunError {
    fn from(e: vmm_sys_util::errno::Error) -> Self {
        Self::from_errno(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::Dfsc;

    /// A minimal stand-in for a `kvm_run` binding.
    struct FakeRun(u32, u64, u64);
    impl KvmRunView for FakeRun {
        fn exit_reason(&self) -> u32 {
            self.0
        }
        fn arm_nisv_raw(&self) -> (u64, u64) {
            (self.1, self.2)
        }
    }

    #[test]
    fn newer_exit_numbers_come_from_the_headers() {
        assert_eq!(KVM_EXIT_ARM_SEA, 41);
        assert_eq!(KVM_EXIT_ARM_LDST64B, 42);
        assert_eq!(KVM_EXIT_ARM_SEA_FLAG_GPA_VALID, 1);
    }

    #[test]
    fn arm_abort_exit_kinds_from_a_sys_kvm_run() {
        let mut run = kvm_nisv_sys::kvm_run {
            exit_reason: KVM_EXIT_ARM_NISV,
            ..Default::default()
        };
        run.__bindgen_anon_1.arm_nisv.esr_iss = 0x46;
        run.__bindgen_anon_1.arm_nisv.fault_ipa = 0x1000_0008;
        let e = ArmAbortExit::from_kvm_run(&run).unwrap();
        assert_eq!(e, ArmAbortExit::Nisv(NisvExit::new(0x46, 0x1000_0008)));
        assert_eq!(e.exit_reason(), 28);

        // LDST64B: what io_mem_abort() writes for an ST64BV (LST 0b01) storing
        // X4..X11 with status in X2: EC 0x24, IL, ISV, SAS 0b11, SRT 4, SF, WnR,
        // DFSC cleared, ISS2.Xs = 2.
        let esr: u64 = (0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (0b11 << 22)
            | (4 << 16)
            | (1 << 15)
            | (0b01 << 11)
            | (1 << 6)
            | (2 << 32);
        run.exit_reason = KVM_EXIT_ARM_LDST64B;
        run.__bindgen_anon_1.arm_nisv.esr_iss = esr;
        let ArmAbortExit::Ldst64b(l) = ArmAbortExit::from_kvm_run(&run).unwrap() else {
            panic!("not LDST64B");
        };
        assert_eq!(l.ls64_type(), Some(Ls64Type::St64bv));
        assert!(l.is_write());
        assert_eq!(l.srt(), 4);
        assert_eq!(l.xs(), 2);
        assert_eq!(l.fault_ipa, 0x1000_0008);
        assert_eq!(l.esr().ec_bits(), 0x24);
        assert_eq!(
            Ldst64bExit::new(0b10 << 11, 0).ls64_type(),
            Some(Ls64Type::Ld64bOrSt64b)
        );
        assert_eq!(
            Ldst64bExit::new(0b11 << 11, 0).ls64_type(),
            Some(Ls64Type::St64bv0)
        );
        assert_eq!(Ldst64bExit::new(0, 0).ls64_type(), None);

        // SEA with and without a valid GPA / FAR.
        run.exit_reason = KVM_EXIT_ARM_SEA;
        let sea_esr: u64 = (0x24 << 26) | (1 << 25) | 0x10;
        run.__bindgen_anon_1.arm_sea.flags = KVM_EXIT_ARM_SEA_FLAG_GPA_VALID;
        run.__bindgen_anon_1.arm_sea.esr = sea_esr;
        run.__bindgen_anon_1.arm_sea.gva = 0xffff_0000_0000_1008;
        run.__bindgen_anon_1.arm_sea.gpa = 0x4000_1000;
        let ArmAbortExit::Sea(sea) = ArmAbortExit::from_kvm_run(&run).unwrap() else {
            panic!("not SEA");
        };
        assert_eq!(sea.gpa(), Some(0x4000_1000));
        assert_eq!(sea.gva(), Some(0xffff_0000_0000_1008));
        assert_eq!(sea.esr().ec_bits(), 0x24);
        assert_eq!(
            sea.to_string(),
            "synchronous external abort (ESR 0x92000010) at VA 0xffff000000001008, IPA 0x40001000"
        );
        run.__bindgen_anon_1.arm_sea.flags = 0;
        run.__bindgen_anon_1.arm_sea.esr = sea_esr | (1 << 10); // FnV
        let ArmAbortExit::Sea(sea) = ArmAbortExit::from_kvm_run(&run).unwrap() else {
            panic!("not SEA");
        };
        assert_eq!((sea.gpa(), sea.gva()), (None, None));
        run.exit_reason = kvm_nisv_sys::KVM_EXIT_MMIO;
        assert_eq!(ArmAbortExit::from_kvm_run(&run), None);
        // A view without arm_sea support says so instead of inventing values.
        assert_eq!(
            ArmAbortExit::from_kvm_run(&FakeRun(41, 0, 0)),
            Some(ArmAbortExit::SeaUnreadable)
        );
    }

    #[cfg(feature = "kvm-ioctls")]
    #[test]
    fn arm_sea_from_a_kvm_bindings_kvm_run_reads_the_kernel_offsets() {
        // kvm-bindings has no arm_sea member: write the words where the kernel
        // puts them (union offset 0..32, i.e. kvm_run offsets 32..64).
        let mut run = kvm_bindings::kvm_run {
            exit_reason: 41,
            ..Default::default()
        };
        let words = [1u64, 0x9200_0010, 0x1234, 0x4000_0000];
        let mut padding = [0; 256];
        for (i, w) in words.iter().enumerate() {
            for (j, b) in w.to_ne_bytes().iter().enumerate() {
                padding[i * 8 + j] = *b as _;
            }
        }
        run.__bindgen_anon_1.padding = padding;
        let e = ArmAbortExit::from_kvm_run(&run).unwrap();
        assert_eq!(
            e,
            ArmAbortExit::Sea(SeaExit::new(1, 0x9200_0010, 0x1234, 0x4000_0000))
        );
    }

    #[test]
    fn parses_only_exit_28() {
        let e = NisvExit::from_kvm_run(&FakeRun(28, 0x45, 0x1000_0010)).unwrap();
        assert!(e.is_write());
        assert_eq!(e.fault_ipa, 0x1000_0010);
        assert_eq!(e.iss.dfsc(), Dfsc::Translation { level: 1 });
        assert_eq!(
            e.to_string(),
            "data abort without valid syndrome at IPA 0x10000010: write, translation fault, level 1 (DFSC 0x05)"
        );
        assert_eq!(NisvExit::from_kvm_run(&FakeRun(6, 0x45, 1)), None);
        assert_eq!(NisvExit::from_kvm_run(&FakeRun(0, 0, 0)), None);
    }

    #[test]
    fn parses_a_hand_built_sys_kvm_run() {
        let mut run = kvm_nisv_sys::kvm_run {
            exit_reason: kvm_nisv_sys::KVM_EXIT_ARM_NISV,
            ..Default::default()
        };
        run.__bindgen_anon_1.arm_nisv.esr_iss = 0x145;
        run.__bindgen_anon_1.arm_nisv.fault_ipa = 0x0900_0ff8;
        let e = NisvExit::from_kvm_run(&run).unwrap();
        assert!(e.is_write());
        assert!(e.iss.is_cache_maintenance());
        assert_eq!(e.fault_ipa, 0x0900_0ff8);
        run.exit_reason = kvm_nisv_sys::KVM_EXIT_MMIO;
        assert_eq!(NisvExit::from_kvm_run(&run), None);
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn enosys_is_explained() {
        use vmm_sys_util::errno;
        let e = RunError::from_errno(errno::Error::new(libc::ENOSYS));
        assert!(matches!(e, RunError::NisvNotEnabled));
        let msg = e.to_string();
        assert!(msg.contains("KVM_CAP_ARM_NISV_TO_USER"), "{msg}");
        assert!(msg.contains("ENOSYS"), "{msg}");
        assert!(msg.contains("Linux 5.5"), "{msg}");
        let e = RunError::from(errno::Error::new(libc::EINTR));
        assert!(matches!(e, RunError::Other { source } if source.errno() == libc::EINTR));
        assert!(e.to_string().starts_with("KVM_RUN failed: "), "{e}");
    }
}
