// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The ESR_EL2 ISS bits that KVM passes to userspace in `esr_iss`.
//!
//! # What the kernel passes
//!
//! On a data abort without a valid instruction syndrome, `io_mem_abort()` in
//! `arch/arm64/kvm/mmio.c` (Linux 5.5 to at least 6.12) fills
//! `run->arm_nisv.esr_iss` with `kvm_vcpu_dabt_iss_nisv_sanitized(vcpu)`, which
//! `arch/arm64/include/asm/kvm_emulate.h` defines as
//!
//! ```c
//! kvm_vcpu_get_esr(vcpu) & (ESR_ELx_CM | ESR_ELx_WNR | ESR_ELx_FSC)
//! ```
//!
//! so exactly three fields survive: **CM** (bit 8, cache maintenance),
//! **WnR** (bit 6, write not read) and **DFSC** (bits 5:0, the fault status
//! code). Everything else (ISV, SAS, SRT, EA, S1PTW, FnV, SET, VNCR...) is
//! cleared by the kernel; [`NisvIss`] exposes only the three fields so that no
//! caller reads meaning into a zero. [`DataAbortIss`] decodes a complete
//! data-abort ISS (for example ESR_EL1 as the guest sees it after an injected
//! abort), and [`Esr`] a complete ESR_ELx value.
//!
//! Field names follow the Arm ARM's ESR_ELx description, "ISS encoding for an
//! exception from a Data Abort" (D24.2.40 in DDI 0487K).

use core::fmt;

/// The ISS bits the kernel keeps in `kvm_run.arm_nisv.esr_iss`
/// (`ESR_ELx_CM | ESR_ELx_WNR | ESR_ELx_FSC`).
pub const NISV_ISS_MASK: u64 = DataAbortIss::CM | DataAbortIss::WNR | DataAbortIss::DFSC_MASK;

/// A data fault status code (ESR_ELx.ISS.DFSC, bits 5:0) with its level.
///
/// `level` is the translation table level (-1 to 3; -1 only with FEAT_LPA2
/// or FEAT_D128) at which the fault was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dfsc {
    /// Address size fault (0b0000LL, level -1: 0b101001).
    AddressSize {
        /// Translation table level.
        level: i8,
    },
    /// Translation fault (0b0001LL, level -1: 0b101011). What a stage-2 miss
    /// on an IPA without a memslot reports, so the usual value in a NISV exit.
    Translation {
        /// Translation table level.
        level: i8,
    },
    /// Access flag fault (0b0010LL).
    AccessFlag {
        /// Translation table level.
        level: i8,
    },
    /// Permission fault (0b0011LL).
    Permission {
        /// Translation table level.
        level: i8,
    },
    /// Synchronous External abort, not on a translation table walk (0b010000).
    /// What an abort injected with `ext_dabt_pending` reports.
    SyncExternal,
    /// Synchronous Tag Check Fault (FEAT_MTE2, 0b010001).
    TagCheck,
    /// Synchronous External abort on a translation table walk
    /// (0b0101LL, level -1: 0b010011).
    SyncExternalOnWalk {
        /// Translation table level.
        level: i8,
    },
    /// Synchronous parity or ECC error on a memory access, not on a walk (0b011000).
    SyncParity,
    /// Synchronous parity or ECC error on a translation table walk
    /// (0b0111LL, level -1: 0b011011).
    SyncParityOnWalk {
        /// Translation table level.
        level: i8,
    },
    /// Alignment fault (0b100001).
    Alignment,
    /// Granule Protection Fault on a translation table walk
    /// (FEAT_RME, 0b1001LL, level -1: 0b100011).
    GranuleProtectionOnWalk {
        /// Translation table level.
        level: i8,
    },
    /// Granule Protection Fault, not on a translation table walk (0b101000).
    GranuleProtection,
    /// TLB conflict abort (0b110000).
    TlbConflict,
    /// Unsupported atomic hardware update fault (FEAT_HAFDBS, 0b110001).
    UnsupportedAtomicUpdate,
    /// IMPLEMENTATION DEFINED fault, Lockdown (0b110100).
    ImpDefLockdown,
    /// IMPLEMENTATION DEFINED fault, Unsupported Exclusive or Atomic access (0b110101).
    ImpDefUnsupportedExclusiveOrAtomic,
    /// A reserved or unknown code (the raw 6-bit value).
    Other(u8),
}

impl Dfsc {
    /// Decode the low 6 bits of `code`.
    pub const fn from_bits(code: u8) -> Dfsc {
        let code = code & 0x3f;
        let level = (code & 3) as i8;
        match code {
            0x00..=0x03 => Dfsc::AddressSize { level },
            0x29 => Dfsc::AddressSize { level: -1 },
            0x04..=0x07 => Dfsc::Translation { level },
            0x2b => Dfsc::Translation { level: -1 },
            0x08..=0x0b => Dfsc::AccessFlag { level },
            0x0c..=0x0f => Dfsc::Permission { level },
            0x10 => Dfsc::SyncExternal,
            0x11 => Dfsc::TagCheck,
            0x13 => Dfsc::SyncExternalOnWalk { level: -1 },
            0x14..=0x17 => Dfsc::SyncExternalOnWalk { level },
            0x18 => Dfsc::SyncParity,
            0x1b => Dfsc::SyncParityOnWalk { level: -1 },
            0x1c..=0x1f => Dfsc::SyncParityOnWalk { level },
            0x21 => Dfsc::Alignment,
            0x23 => Dfsc::GranuleProtectionOnWalk { level: -1 },
            0x24..=0x27 => Dfsc::GranuleProtectionOnWalk { level },
            0x28 => Dfsc::GranuleProtection,
            0x30 => Dfsc::TlbConflict,
            0x31 => Dfsc::UnsupportedAtomicUpdate,
            0x34 => Dfsc::ImpDefLockdown,
            0x35 => Dfsc::ImpDefUnsupportedExclusiveOrAtomic,
            other => Dfsc::Other(other),
        }
    }

    /// The 6-bit encoding (the inverse of [`Dfsc::from_bits`] for every
    /// value it produces; levels outside the encodable range give
    /// [`Dfsc::Other`]'s meaning of "reserved" as 0x3f).
    pub const fn bits(self) -> u8 {
        const fn lvl(base: u8, minus_one: u8, level: i8) -> u8 {
            match level {
                -1 => minus_one,
                0..=3 => base + level as u8,
                _ => 0x3f,
            }
        }
        match self {
            Dfsc::AddressSize { level } => lvl(0x00, 0x29, level),
            Dfsc::Translation { level } => lvl(0x04, 0x2b, level),
            Dfsc::AccessFlag { level } => lvl(0x08, 0x3f, level),
            Dfsc::Permission { level } => lvl(0x0c, 0x3f, level),
            Dfsc::SyncExternal => 0x10,
            Dfsc::TagCheck => 0x11,
            Dfsc::SyncExternalOnWalk { level } => lvl(0x14, 0x13, level),
            Dfsc::SyncParity => 0x18,
            Dfsc::SyncParityOnWalk { level } => lvl(0x1c, 0x1b, level),
            Dfsc::Alignment => 0x21,
            Dfsc::GranuleProtectionOnWalk { level } => lvl(0x24, 0x23, level),
            Dfsc::GranuleProtection => 0x28,
            Dfsc::TlbConflict => 0x30,
            Dfsc::UnsupportedAtomicUpdate => 0x31,
            Dfsc::ImpDefLockdown => 0x34,
            Dfsc::ImpDefUnsupportedExclusiveOrAtomic => 0x35,
            Dfsc::Other(c) => c & 0x3f,
        }
    }

    /// The translation table level, for the codes that have one.
    pub const fn level(self) -> Option<i8> {
        match self {
            Dfsc::AddressSize { level }
            | Dfsc::Translation { level }
            | Dfsc::AccessFlag { level }
            | Dfsc::Permission { level }
            | Dfsc::SyncExternalOnWalk { level }
            | Dfsc::SyncParityOnWalk { level }
            | Dfsc::GranuleProtectionOnWalk { level } => Some(level),
            _ => None,
        }
    }

    /// Whether this is a synchronous external abort (on a walk or not).
    pub const fn is_external(self) -> bool {
        matches!(self, Dfsc::SyncExternal | Dfsc::SyncExternalOnWalk { .. })
    }
}

impl fmt::Display for Dfsc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dfsc::AddressSize { .. } => "address size fault",
            Dfsc::Translation { .. } => "translation fault",
            Dfsc::AccessFlag { .. } => "access flag fault",
            Dfsc::Permission { .. } => "permission fault",
            Dfsc::SyncExternal => "synchronous external abort",
            Dfsc::TagCheck => "synchronous tag check fault",
            Dfsc::SyncExternalOnWalk { .. } => {
                "synchronous external abort on translation table walk"
            }
            Dfsc::SyncParity => "synchronous parity/ECC error",
            Dfsc::SyncParityOnWalk { .. } => {
                "synchronous parity/ECC error on translation table walk"
            }
            Dfsc::Alignment => "alignment fault",
            Dfsc::GranuleProtectionOnWalk { .. } => {
                "granule protection fault on translation table walk"
            }
            Dfsc::GranuleProtection => "granule protection fault",
            Dfsc::TlbConflict => "TLB conflict abort",
            Dfsc::UnsupportedAtomicUpdate => "unsupported atomic hardware update fault",
            Dfsc::ImpDefLockdown => "IMPLEMENTATION DEFINED fault (lockdown)",
            Dfsc::ImpDefUnsupportedExclusiveOrAtomic => {
                "IMPLEMENTATION DEFINED fault (unsupported exclusive or atomic)"
            }
            Dfsc::Other(c) => return write!(f, "reserved fault status code {c:#04x}"),
        };
        match self.level() {
            Some(l) => write!(f, "{name}, level {l} (DFSC {:#04x})", self.bits()),
            None => write!(f, "{name} (DFSC {:#04x})", self.bits()),
        }
    }
}

/// The syndrome of a `KVM_EXIT_ARM_NISV` exit: the three ISS fields the kernel
/// keeps (see the module docs). Constructed from `esr_iss`; other bits are
/// ignored, so a future kernel passing more bits cannot confuse it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NisvIss(u64);

impl NisvIss {
    /// Wrap a raw `esr_iss` value (bits outside [`NISV_ISS_MASK`] are dropped).
    pub const fn new(esr_iss: u64) -> Self {
        NisvIss(esr_iss & NISV_ISS_MASK)
    }

    /// The value as the kernel passed it, masked with [`NISV_ISS_MASK`].
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// WnR: the access was a write. Arm ARM: for cache maintenance and
    /// address translation instructions WnR is 1; for atomic read-modify-write
    /// instructions that faulted on the write it is 1, otherwise 0.
    pub const fn is_write(self) -> bool {
        self.0 & DataAbortIss::WNR != 0
    }

    /// CM: the abort came from a cache maintenance or address translation
    /// instruction (for example `DC CIVAC`), not a load or store.
    pub const fn is_cache_maintenance(self) -> bool {
        self.0 & DataAbortIss::CM != 0
    }

    /// The data fault status code.
    pub const fn dfsc(self) -> Dfsc {
        Dfsc::from_bits((self.0 & DataAbortIss::DFSC_MASK) as u8)
    }
}

impl fmt::Debug for NisvIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NisvIss")
            .field("bits", &format_args!("{:#x}", self.0))
            .field("is_write", &self.is_write())
            .field("is_cache_maintenance", &self.is_cache_maintenance())
            .field("dfsc", &self.dfsc())
            .finish()
    }
}

impl fmt::Display for NisvIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match (self.is_cache_maintenance(), self.is_write()) {
            (true, _) => "cache maintenance",
            (false, true) => "write",
            (false, false) => "read",
        };
        write!(f, "{kind}, {}", self.dfsc())
    }
}

/// A complete data-abort ISS (ESR_ELx bits 24:0 for EC 0x24/0x25).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataAbortIss(pub u32);

impl DataAbortIss {
    /// ISV, bit 24: bits 23:14 hold a valid instruction syndrome.
    pub const ISV: u64 = 1 << 24;
    /// FnV, bit 10: FAR is not valid.
    pub const FNV: u64 = 1 << 10;
    /// EA, bit 9: External abort type (IMPLEMENTATION DEFINED classification).
    pub const EA: u64 = 1 << 9;
    /// CM, bit 8: cache maintenance.
    pub const CM: u64 = 1 << 8;
    /// S1PTW, bit 7: stage-2 fault on a stage-1 translation table walk.
    pub const S1PTW: u64 = 1 << 7;
    /// WnR, bit 6: write not read.
    pub const WNR: u64 = 1 << 6;
    /// DFSC, bits 5:0.
    pub const DFSC_MASK: u64 = 0x3f;

    const fn bit(self, b: u64) -> bool {
        (self.0 as u64) & b != 0
    }

    /// ISV: the syndrome fields SAS/SSE/SRT/SF/AR are valid.
    pub const fn isv(self) -> bool {
        self.bit(Self::ISV)
    }
    /// SAS (valid only with ISV): access size in bytes (1, 2, 4 or 8).
    pub const fn access_size(self) -> u8 {
        1 << ((self.0 >> 22) & 3)
    }
    /// SSE (valid only with ISV): the load sign-extends.
    pub const fn sign_extend(self) -> bool {
        self.0 & (1 << 21) != 0
    }
    /// SRT (valid only with ISV): the transfer register number.
    pub const fn srt(self) -> u8 {
        ((self.0 >> 16) & 0x1f) as u8
    }
    /// SF (valid only with ISV): the register is 64-bit.
    pub const fn sixty_four(self) -> bool {
        self.0 & (1 << 15) != 0
    }
    /// AR (valid only with ISV): acquire/release semantics.
    pub const fn acquire_release(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    /// FnV: the FAR is not valid.
    pub const fn far_not_valid(self) -> bool {
        self.bit(Self::FNV)
    }
    /// EA: external abort type.
    pub const fn external_abort_type(self) -> bool {
        self.bit(Self::EA)
    }
    /// CM: cache maintenance instruction.
    pub const fn is_cache_maintenance(self) -> bool {
        self.bit(Self::CM)
    }
    /// S1PTW: fault on the stage-1 translation table walk.
    pub const fn s1ptw(self) -> bool {
        self.bit(Self::S1PTW)
    }
    /// WnR: write not read.
    pub const fn is_write(self) -> bool {
        self.bit(Self::WNR)
    }
    /// DFSC.
    pub const fn dfsc(self) -> Dfsc {
        Dfsc::from_bits((self.0 & 0x3f) as u8)
    }
}

/// Exception classes of ESR_ELx.EC that matter here.
///
/// Classes without a variant of their own are [`ExceptionClass::Other`];
/// later versions may name more of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExceptionClass {
    /// 0x24: Data Abort from a lower Exception level.
    DataAbortLowerEl,
    /// 0x25: Data Abort taken without a change in Exception level.
    DataAbortSameEl,
    /// 0x20: Instruction Abort from a lower Exception level.
    InstructionAbortLowerEl,
    /// 0x21: Instruction Abort taken without a change in Exception level.
    InstructionAbortSameEl,
    /// 0x16: HVC instruction execution in AArch64 state.
    Hvc64,
    /// 0x00: Unknown reason.
    Unknown,
    /// Any other class (the raw 6-bit value).
    Other(u8),
}

impl ExceptionClass {
    /// Decode a 6-bit EC.
    pub const fn from_bits(ec: u8) -> Self {
        match ec & 0x3f {
            0x24 => ExceptionClass::DataAbortLowerEl,
            0x25 => ExceptionClass::DataAbortSameEl,
            0x20 => ExceptionClass::InstructionAbortLowerEl,
            0x21 => ExceptionClass::InstructionAbortSameEl,
            0x16 => ExceptionClass::Hvc64,
            0x00 => ExceptionClass::Unknown,
            other => ExceptionClass::Other(other),
        }
    }
}

/// A complete ESR_ELx value (for example ESR_EL1 read from a guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Esr(pub u64);

impl Esr {
    /// EC, bits 31:26, raw.
    pub const fn ec_bits(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }
    /// EC, bits 31:26.
    pub const fn ec(self) -> ExceptionClass {
        ExceptionClass::from_bits(self.ec_bits())
    }
    /// IL, bit 25: 32-bit instruction.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }
    /// ISS, bits 24:0.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x01ff_ffff) as u32
    }
    /// The ISS as a data abort, if EC is 0x24 or 0x25.
    pub const fn data_abort(self) -> Option<DataAbortIss> {
        match self.ec() {
            ExceptionClass::DataAbortLowerEl | ExceptionClass::DataAbortSameEl => {
                Some(DataAbortIss(self.iss()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nisv_iss_as_seen_on_6_1_and_6_12() {
        // `str x0, [x1], #8` to an IPA without a memslot: esr_iss = 0x45 on
        // both kernels (docs: /work/shared/arm64-host.md; asserted live by
        // tests/kvm_nisv.rs).
        let iss = NisvIss::new(0x45);
        assert!(iss.is_write());
        assert!(!iss.is_cache_maintenance());
        assert_eq!(iss.dfsc(), Dfsc::Translation { level: 1 });
        assert_eq!(iss.dfsc().level(), Some(1));
        assert_eq!(
            iss.to_string(),
            "write, translation fault, level 1 (DFSC 0x05)"
        );
        // `ldp x2, x3, [x1]`: 0x5.
        let iss = NisvIss::new(0x5);
        assert!(!iss.is_write());
        assert_eq!(
            iss.to_string(),
            "read, translation fault, level 1 (DFSC 0x05)"
        );
    }

    #[test]
    fn nisv_iss_drops_bits_the_kernel_does_not_pass() {
        // ISV, SAS, SRT, EA, S1PTW, FnV set: only CM/WnR/DFSC survive.
        let raw = (1 << 24)
            | (3 << 22)
            | (5 << 16)
            | (1 << 10)
            | (1 << 9)
            | (1 << 8)
            | (1 << 7)
            | (1 << 6)
            | 0x07;
        let iss = NisvIss::new(raw);
        assert_eq!(iss.bits(), (1 << 8) | (1 << 6) | 0x07);
        assert_eq!(NISV_ISS_MASK, 0x17f);
        assert!(iss.is_cache_maintenance());
        assert_eq!(
            iss.to_string(),
            "cache maintenance, translation fault, level 3 (DFSC 0x07)"
        );
    }

    #[test]
    fn dfsc_table_round_trips() {
        // Every 6-bit value decodes; every non-reserved decode re-encodes to
        // the same bits.
        let mut known = 0;
        for code in 0u8..64 {
            let d = Dfsc::from_bits(code);
            assert_eq!(d.bits(), code, "{code:#x} -> {d:?}");
            if !matches!(d, Dfsc::Other(_)) {
                known += 1;
            }
        }
        // 4 levels x 7 walk kinds (AS, T, AF, P, SEA-walk, parity-walk, GPF-walk)
        // + 5 level -1 codes + 9 single codes.
        assert_eq!(known, 4 * 7 + 5 + 9);
        assert_eq!(Dfsc::from_bits(0x2b), Dfsc::Translation { level: -1 });
        assert_eq!(Dfsc::from_bits(0x10), Dfsc::SyncExternal);
        assert!(Dfsc::from_bits(0x10).is_external());
        assert!(Dfsc::from_bits(0x15).is_external());
        assert!(!Dfsc::from_bits(0x05).is_external());
        assert_eq!(Dfsc::from_bits(0x0e), Dfsc::Permission { level: 2 });
        assert_eq!(Dfsc::from_bits(0x09), Dfsc::AccessFlag { level: 1 });
        assert_eq!(Dfsc::from_bits(0x21), Dfsc::Alignment);
        assert_eq!(Dfsc::from_bits(0x3f), Dfsc::Other(0x3f));
        // Levels that cannot be encoded.
        assert_eq!(Dfsc::AccessFlag { level: -1 }.bits(), 0x3f);
        assert_eq!(Dfsc::Translation { level: 9 }.bits(), 0x3f);
    }

    #[test]
    fn full_esr_of_an_injected_external_abort() {
        // What a guest at EL1 reads from ESR_EL1 after KVM injects an
        // external data abort for a write: EC 0x25, IL 1, EA 0, WnR... KVM
        // (arch/arm64/kvm/inject_fault.c inject_abt64) sets EC, IL and
        // FSC = 0x10 only; the value below is 0x96000010.
        let esr = Esr(0x9600_0010);
        assert_eq!(esr.ec(), ExceptionClass::DataAbortSameEl);
        assert!(esr.il());
        let da = esr.data_abort().unwrap();
        assert_eq!(da.dfsc(), Dfsc::SyncExternal);
        assert!(!da.far_not_valid());
        assert!(!da.isv());
        assert_eq!(Esr(0x5a00_0000).ec(), ExceptionClass::Hvc64);
        assert_eq!(Esr(0x5a00_0000).data_abort(), None);
        // An ISV=1 syndrome: `str w3, [x1]` -> SAS=2 (4 bytes), SRT=3, WnR.
        let da = DataAbortIss((1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0x05);
        assert!(da.isv());
        assert_eq!(da.access_size(), 4);
        assert_eq!(da.srt(), 3);
        assert!(da.is_write());
        assert!(!da.sixty_four());
    }
}
