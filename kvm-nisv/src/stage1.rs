// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The stage-1 translation table walker for the EL1&0 regime.
//!
//! [`translate`] turns a guest virtual address into an intermediate physical
//! address (IPA) the way the guest's MMU would, from SCTLR_EL1, TCR_EL1,
//! TTBR0_EL1, TTBR1_EL1, MAIR_EL1 and ID_AA64MMFR0_EL1 ([`Stage1Regs`]), reading
//! descriptors through [`GuestRam`]. It follows the VMSAv8-64 rules of the Arm
//! ARM (chapter D8, pseudocode `AArch64.S1Translate`, `AArch64.S1Walk`,
//! `AArch64.S1DisabledOutput`, `AArch64.S1CheckPermissions`; older releases:
//! `AArch64.TranslationTableWalk`, `AArch64.CheckPermission`).
//!
//! Everything read here is guest-controlled: the walk takes at most five
//! descriptor reads (levels -1..=3), every descriptor read is bounds-checked by
//! [`GuestRam`], and a table that is not RAM gives a translation fault at the
//! level of the read (see `docs/emulator.md` for why not an external abort).
//!
//! Choices where the architecture leaves freedom (documented in
//! `docs/emulator.md`):
//! - reserved TG0/TG1 encodings are treated as the 4K granule (as QEMU does);
//! - a T0SZ/T1SZ outside the legal range gives a level 0 translation fault;
//! - FEAT_TTST (TxSZ up to 48/47), FEAT_LVA (64K, TxSZ down to 12) and
//!   FEAT_LPA2 (TCR_EL1.DS) are accepted when the guest programs them; FEAT_LPA
//!   (52-bit OA with 64K pages, level 1 blocks) is taken as implemented when
//!   ID_AA64MMFR0_EL1.PARange says 52 bits;
//! - a MAIR_EL1 attribute with a zero upper nibble is Device memory (the
//!   reserved `0b0000xx1x`/`0b0000xxx1` encodings included).

use crate::mem::GuestRam;
use crate::regs::{Reg, RegError, SysReg, VcpuRegs};

/// SCTLR_EL1.M: stage-1 MMU enable.
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR_EL1.A: alignment check enable.
pub const SCTLR_A: u64 = 1 << 1;
/// SCTLR_EL1.C: data cacheability.
pub const SCTLR_C: u64 = 1 << 2;
/// SCTLR_EL1.I: instruction cacheability.
pub const SCTLR_I: u64 = 1 << 12;
/// SCTLR_EL1.DZE: EL0 may execute DC ZVA.
pub const SCTLR_DZE: u64 = 1 << 14;
/// SCTLR_EL1.WXN: write permission implies execute-never.
pub const SCTLR_WXN: u64 = 1 << 19;
/// SCTLR_EL1.E0E: EL0 data accesses are big-endian.
pub const SCTLR_E0E: u64 = 1 << 24;
/// SCTLR_EL1.EE: EL1 data accesses and stage-1 table walks are big-endian.
pub const SCTLR_EE: u64 = 1 << 25;

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write (also read-modify-write accesses and DC ZVA, which need
    /// write permission).
    Write,
    /// An instruction fetch.
    Fetch,
}

/// The exception level the access is made from (or checked as).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum El {
    /// EL0 (also LDTR/STTR executed at EL1).
    El0,
    /// EL1.
    El1,
}

/// Device memory ordering attributes (MAIR_EL1 `0b0000dd00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// Device-nGnRnE.
    NGnRnE,
    /// Device-nGnRE.
    NGnRE,
    /// Device-nGRE.
    NGRE,
    /// Device-GRE.
    GRE,
}

/// The memory type of a translated address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemType {
    /// Device memory: every unaligned data access takes an alignment fault.
    Device(DeviceKind),
    /// Normal memory, with the raw MAIR inner and outer nibbles (0 = not used:
    /// MMU-off instruction fetches use 0b0100, Non-cacheable, or 0b1010,
    /// Write-Through, per SCTLR_EL1.I).
    Normal {
        /// Inner attribute nibble (MAIR `Attr<n>\[3:0\]`).
        inner: u8,
        /// Outer attribute nibble (MAIR `Attr<n>\[7:4\]`).
        outer: u8,
    },
}

impl MemType {
    /// Whether this is any kind of Device memory.
    pub fn is_device(&self) -> bool {
        matches!(self, MemType::Device(_))
    }

    /// Decode one MAIR_EL1 attribute byte (Arm ARM, MAIR_EL1 `Attr<n>`).
    pub fn from_mair_attr(attr: u8) -> MemType {
        if attr & 0xf0 == 0 {
            MemType::Device(match (attr >> 2) & 3 {
                0 => DeviceKind::NGnRnE,
                1 => DeviceKind::NGnRE,
                2 => DeviceKind::NGRE,
                _ => DeviceKind::GRE,
            })
        } else {
            MemType::Normal {
                inner: attr & 0xf,
                outer: attr >> 4,
            }
        }
    }
}

/// A stage-1 fault kind. The walker returns the first four; the emulator adds
/// [`FaultKind::Alignment`] and [`FaultKind::ExternalAbort`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// An address (table base or output) beyond the output address size.
    AddressSize,
    /// No valid mapping (invalid or reserved descriptor, VA out of range,
    /// disabled walk, table not in RAM).
    Translation,
    /// The descriptor's access flag is 0 and the hardware does not manage it.
    AccessFlag,
    /// The mapping does not permit this access.
    Permission,
    /// An alignment fault (emulator only).
    Alignment,
    /// A synchronous external abort, not on a translation table walk: the
    /// access reached neither RAM nor a device (emulator only; DFSC 0x10).
    ExternalAbort,
}

/// A stage-1 fault: what the guest's MMU would report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("stage-1 {kind:?} fault at level {level} (DFSC {dfsc:#04x})", dfsc = self.dfsc())]
#[non_exhaustive]
pub struct Stage1Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// Lookup level, -1..=3 (0 for alignment faults and faults before the walk).
    pub level: i8,
}

impl Stage1Fault {
    /// A fault of `kind` at lookup `level`.
    pub const fn new(kind: FaultKind, level: i8) -> Self {
        Stage1Fault { kind, level }
    }

    /// The data/instruction fault status code (ESR_ELx.ISS.DFSC) the guest
    /// should see (Arm ARM, ESR_EL1 ISS encoding for a Data Abort).
    pub fn dfsc(&self) -> u8 {
        // Levels 0..=3 are encoded in the low two bits; level -1 has its own codes.
        let l = (self.level.clamp(0, 3)) as u8;
        match (self.kind, self.level) {
            (FaultKind::AddressSize, -1) => 0b10_1001,
            (FaultKind::Translation, -1) => 0b10_1011,
            (FaultKind::AddressSize, _) => l,
            (FaultKind::Translation, _) => 0b00_0100 | l,
            (FaultKind::AccessFlag, _) => 0b00_1000 | l,
            (FaultKind::Permission, _) => 0b00_1100 | l,
            (FaultKind::Alignment, _) => 0b10_0001,
            (FaultKind::ExternalAbort, _) => 0b01_0000,
        }
    }

    fn translation(level: i8) -> Self {
        Stage1Fault {
            kind: FaultKind::Translation,
            level,
        }
    }

    fn address_size(level: i8) -> Self {
        Stage1Fault {
            kind: FaultKind::AddressSize,
            level,
        }
    }
}

/// A descriptor update the hardware would make (FEAT_HAFDBS: set AF when
/// TCR_EL1.HA = 1; clear AP\[2\] for a write to a dirty-bit-managed page when
/// TCR_EL1.HD = 1). The walker is pure; the emulator applies the update when it
/// performs the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DescUpdate {
    /// IPA of the descriptor.
    pub ipa: u64,
    /// The descriptor value read during the walk.
    pub old: u64,
    /// The value to write.
    pub new: u64,
    /// Whether the table is big-endian (SCTLR_EL1.EE).
    pub big_endian: bool,
}

impl DescUpdate {
    /// Apply the update if the descriptor still holds `old` (a plain
    /// compare-then-write; the guest's other vCPUs may race, as they may with the
    /// hardware's own non-atomic view from userspace). Returns whether it wrote.
    pub fn apply<M: GuestRam + ?Sized>(&self, ram: &M) -> bool {
        let mut b = [0u8; 8];
        if ram.read(self.ipa, &mut b).is_err() {
            return false;
        }
        let cur = if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        };
        if cur != self.old {
            return false;
        }
        let nb = if self.big_endian {
            self.new.to_be_bytes()
        } else {
            self.new.to_le_bytes()
        };
        ram.write(self.ipa, &nb).is_ok()
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Translation {
    /// The output address.
    pub ipa: u64,
    /// Memory type of the output address.
    pub mem: MemType,
    /// Level of the final descriptor (3 for a page; 0 with the MMU off).
    pub level: i8,
    /// Size in bytes of the region the final descriptor maps (page or block;
    /// with the MMU off, 4 KiB so callers can split accesses uniformly). The
    /// translation is valid for `[va, (va | (size - 1)) + 1)`.
    pub size: u64,
    /// A hardware-managed descriptor update to apply with the access.
    pub update: Option<DescUpdate>,
}

/// The registers that control EL1&0 stage-1 translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stage1Regs {
    /// SCTLR_EL1.
    pub sctlr: u64,
    /// TCR_EL1 (ignored when SCTLR_EL1.M = 0).
    pub tcr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
    /// MAIR_EL1.
    pub mair: u64,
    /// Implemented physical address size in bits, from ID_AA64MMFR0_EL1.PARange.
    pub pa_bits: u8,
    /// PSTATE.PAN: EL1 data accesses to EL0-accessible pages fault.
    pub pan: bool,
}

/// Decode ID_AA64MMFR0_EL1.PARange (bits \[3:0\]) to a number of bits. Reserved
/// values are treated as 48 bits.
pub fn parange_bits(mmfr0: u64) -> u8 {
    match mmfr0 & 0xf {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        6 => 52,
        _ => 48,
    }
}

impl Stage1Regs {
    /// Read what translation needs: SCTLR_EL1 only when the MMU is off,
    /// otherwise also TCR_EL1, TTBR0_EL1, TTBR1_EL1, MAIR_EL1 and
    /// ID_AA64MMFR0_EL1 (six reads). PAN is left clear: it is PSTATE, set it
    /// from there.
    pub fn read<R: VcpuRegs + ?Sized>(regs: &mut R) -> Result<Self, RegError> {
        let mut pa = None;
        Self::read_with(regs, &mut pa)
    }

    /// Like [`Stage1Regs::read`], but with a cached PARange (`pa_bits`): when
    /// `Some`, ID_AA64MMFR0_EL1 is not read; when `None` and the MMU is on, it is
    /// read and stored (an ID register does not change while the vCPU runs).
    pub fn read_with<R: VcpuRegs + ?Sized>(
        regs: &mut R,
        pa_bits: &mut Option<u8>,
    ) -> Result<Self, RegError> {
        // SCTLR_EL1, TCR_EL1 and ID_AA64MMFR0_EL1 as LazyStage1 reads them,
        // then both TTBRs and MAIR_EL1.
        let mut l = LazyStage1::read(regs, pa_bits)?;
        if l.regs().mmu_on() {
            l.for_va(regs, 0, true)?;
            l.for_va(regs, 1 << 55, false)?;
        }
        Ok(*l.regs())
    }

    /// Whether the stage-1 MMU is on (SCTLR_EL1.M).
    pub fn mmu_on(&self) -> bool {
        self.sctlr & SCTLR_M != 0
    }

    /// Whether data accesses made at `el` are big-endian (SCTLR_EL1.EE for EL1,
    /// E0E for EL0; pseudocode `BigEndian()`).
    pub fn big_endian(&self, el: El) -> bool {
        match el {
            El::El0 => self.sctlr & SCTLR_E0E != 0,
            El::El1 => self.sctlr & SCTLR_EE != 0,
        }
    }

    /// The address bit that holds the top of the address for `va`'s half after
    /// top-byte-ignore: 55 when TBI applies (TBI0/TBI1 for data; for
    /// instruction fetches only when TBID0/TBID1 is 0), else 63. Pseudocode
    /// `AddrTop()`. With the MMU off TCR_EL1 is not read and TBI is taken as 0.
    pub fn addr_top(&self, va: u64, fetch: bool) -> u32 {
        let upper = va & (1 << 55) != 0;
        let (tbi, tbid) = if upper {
            (self.tcr & (1 << 38) != 0, self.tcr & (1 << 52) != 0)
        } else {
            (self.tcr & (1 << 37) != 0, self.tcr & (1 << 51) != 0)
        };
        if tbi && !(fetch && tbid) { 55 } else { 63 }
    }
}

/// [`Stage1Regs`] read on demand, so that an exit reads only the registers
/// the architecture forces it to (docs/performance.md, "The per-exit floor").
///
/// [`LazyStage1::read`] reads SCTLR_EL1 and, with the MMU on, TCR_EL1 (and
/// ID_AA64MMFR0_EL1 once, through the same `pa_bits` cache as
/// [`Stage1Regs::read_with`]). [`LazyStage1::for_va`] then reads the one TTBR
/// that selects `va`'s half of the address space (bit 55), and MAIR_EL1 only
/// when the caller says the memory type matters. Until MAIR_EL1 is read, every
/// translation reports Device-nGnRnE, the strictest type: only ask for a
/// translation without the memory type when no outcome depends on it (an
/// aligned data access, an instruction fetch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LazyStage1 {
    regs: Stage1Regs,
    /// Bit 0: TTBR0_EL1 read; bit 1: TTBR1_EL1; bit 2: MAIR_EL1.
    loaded: u8,
}

impl LazyStage1 {
    /// Read SCTLR_EL1, and TCR_EL1 (plus ID_AA64MMFR0_EL1 when `pa_bits` is
    /// `None`) when the MMU is on. PAN is left clear.
    pub fn read<R: VcpuRegs + ?Sized>(
        regs: &mut R,
        pa_bits: &mut Option<u8>,
    ) -> Result<Self, RegError> {
        let sctlr = regs.get(Reg::Sys(SysReg::SctlrEl1))?;
        let mut s = Stage1Regs {
            sctlr,
            pa_bits: pa_bits.unwrap_or(52),
            ..Default::default()
        };
        if sctlr & SCTLR_M != 0 {
            s.tcr = regs.get(Reg::Sys(SysReg::TcrEl1))?;
            s.pa_bits = match *pa_bits {
                Some(b) => b,
                None => {
                    let b = parange_bits(regs.get(Reg::Sys(SysReg::IdAa64mmfr0El1))?);
                    *pa_bits = Some(b);
                    b
                }
            };
        }
        Ok(LazyStage1 { regs: s, loaded: 0 })
    }

    /// Set PSTATE.PAN for data accesses.
    pub fn set_pan(&mut self, pan: bool) {
        self.regs.pan = pan;
    }

    /// The registers read so far (TTBRs and MAIR not yet read are 0).
    pub fn regs(&self) -> &Stage1Regs {
        &self.regs
    }

    /// The registers needed to translate `va`: with the MMU on, the TTBR of
    /// `va`'s half, and MAIR_EL1 if `mem_type`. Each is read at most once.
    pub fn for_va<R: VcpuRegs + ?Sized>(
        &mut self,
        regs: &mut R,
        va: u64,
        mem_type: bool,
    ) -> Result<&Stage1Regs, RegError> {
        if self.regs.mmu_on() {
            if va & (1 << 55) == 0 {
                if self.loaded & 1 == 0 {
                    self.regs.ttbr0 = regs.get(Reg::Sys(SysReg::Ttbr0El1))?;
                    self.loaded |= 1;
                }
            } else if self.loaded & 2 == 0 {
                self.regs.ttbr1 = regs.get(Reg::Sys(SysReg::Ttbr1El1))?;
                self.loaded |= 2;
            }
            if mem_type && self.loaded & 4 == 0 {
                self.regs.mair = regs.get(Reg::Sys(SysReg::MairEl1))?;
                self.loaded |= 4;
            }
        }
        Ok(&self.regs)
    }
}

/// Translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    /// log2 of the granule size.
    fn bits(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }
}

/// Translation-regime parameters for one half of the VA space.
struct Params {
    granule: Granule,
    txsz: u32,
    epd: bool,
    hpd: bool,
    e0pd: bool,
    ttbr: u64,
    ds: bool,
}

fn params(regs: &Stage1Regs, upper: bool) -> Params {
    let tcr = regs.tcr;
    let bit = |n: u32| tcr & (1u64 << n) != 0;
    if upper {
        Params {
            // TCR_EL1.TG1: 0b01 16K, 0b10 4K, 0b11 64K; 0b00 reserved (4K here).
            granule: match (tcr >> 30) & 3 {
                1 => Granule::K16,
                3 => Granule::K64,
                _ => Granule::K4,
            },
            txsz: ((tcr >> 16) & 0x3f) as u32,
            epd: bit(23),
            hpd: bit(42),
            e0pd: bit(56),
            ttbr: regs.ttbr1,
            ds: bit(59),
        }
    } else {
        Params {
            // TCR_EL1.TG0: 0b00 4K, 0b01 64K, 0b10 16K; 0b11 reserved (4K here).
            granule: match (tcr >> 14) & 3 {
                1 => Granule::K64,
                2 => Granule::K16,
                _ => Granule::K4,
            },
            txsz: (tcr & 0x3f) as u32,
            epd: bit(7),
            hpd: bit(41),
            e0pd: bit(55),
            ttbr: regs.ttbr0,
            ds: bit(59),
        }
    }
}

/// Sign-extend `va` from bit `top` (55 with TBI: the tag byte is replaced by
/// copies of bit 55).
fn strip_tag(va: u64, top: u32) -> u64 {
    if top == 63 {
        va
    } else if va & (1 << 55) != 0 {
        va | 0xff00_0000_0000_0000
    } else {
        va & 0x00ff_ffff_ffff_ffff
    }
}

/// Translate `va` for an `access` made at (or checked as) `el`.
///
/// With SCTLR_EL1.M = 0 the output is the VA (flat mapping; TCR_EL1 is not read
/// so TBI and the PA-size check do not apply, see `docs/emulator.md`): data
/// accesses are Device-nGnRnE, instruction fetches Normal (Non-cacheable, or
/// Write-Through when SCTLR_EL1.I = 1) per `AArch64.S1DisabledOutput`; SCTLR_EL1.C
/// does not change the data type (it only makes Normal memory Non-cacheable
/// when the MMU is on).
pub fn translate<M: GuestRam + ?Sized>(
    regs: &Stage1Regs,
    va: u64,
    access: AccessKind,
    el: El,
    ram: &M,
) -> Result<Translation, Stage1Fault> {
    match translate_deferred(regs, va, access, el, ram)? {
        (t, None) => Ok(t),
        (_, Some(f)) => Err(f),
    }
}

/// Like [`translate`], but a permission fault is returned next to the
/// translation instead of replacing it.
///
/// An alignment fault caused by the memory type (an unaligned access to Device
/// memory, DC ZVA to Device memory) has priority over a permission fault
/// (pseudocode `AArch64.S1Translate`: the alignment check on `memattrs` comes
/// before `AArch64.S1CheckPermissions`' fault is reported), so the emulator needs
/// the memory type of a mapping it may not access. When the permission fault is
/// `Some`, [`Translation::update`] is `None`.
pub fn translate_deferred<M: GuestRam + ?Sized>(
    regs: &Stage1Regs,
    va: u64,
    access: AccessKind,
    el: El,
    ram: &M,
) -> Result<(Translation, Option<Stage1Fault>), Stage1Fault> {
    if !regs.mmu_on() {
        let mem = if access == AccessKind::Fetch {
            if regs.sctlr & SCTLR_I != 0 {
                MemType::Normal {
                    inner: 0b1010,
                    outer: 0b1010,
                }
            } else {
                MemType::Normal {
                    inner: 0b0100,
                    outer: 0b0100,
                }
            }
        } else {
            MemType::Device(DeviceKind::NGnRnE)
        };
        return Ok((
            Translation {
                ipa: va,
                mem,
                level: 0,
                size: 4096,
                update: None,
            },
            None,
        ));
    }

    let fetch = access == AccessKind::Fetch;
    let top = regs.addr_top(va, fetch);
    let upper = va & (1 << 55) != 0;
    let p = params(regs, upper);
    let g = p.granule.bits();
    let stride = g - 3;
    // FEAT_LPA2 (TCR_EL1.DS) only applies to the 4K and 16K granules.
    let ds = p.ds && p.granule != Granule::K64;
    // FEAT_LPA: 52-bit output with 64K pages, when the CPU implements 52 bits.
    let lpa = p.granule == Granule::K64 && regs.pa_bits >= 52;

    // Legal TxSZ range (Arm ARM D8.1.6 / pseudocode `AArch64.S1MinTxSZ`,
    // `AArch64.MaxTxSZ`, with FEAT_TTST and FEAT_LVA as described above).
    let min_txsz = if ds || p.granule == Granule::K64 {
        12
    } else {
        16
    };
    let max_txsz = if p.granule == Granule::K64 { 47 } else { 48 };
    if p.txsz < min_txsz || p.txsz > max_txsz {
        return Err(Stage1Fault::translation(0));
    }
    let inputsize = 64 - p.txsz;

    // VA range check (`AArch64.VAIsOutOfRange`): bits [top:inputsize] must all
    // equal bit 55 (0 for TTBR0, 1 for TTBR1).
    let width = top + 1 - inputsize;
    let field = (va >> inputsize) & ((1u64 << width) - 1);
    let expect = if upper { (1u64 << width) - 1 } else { 0 };
    if field != expect {
        return Err(Stage1Fault::translation(0));
    }
    if p.epd {
        return Err(Stage1Fault::translation(0));
    }
    // FEAT_E0PD: EL0 accesses to this half fault as level 0 translation faults.
    if el == El::El0 && p.e0pd {
        return Err(Stage1Fault::translation(0));
    }

    // Effective output address size: min(TCR_EL1.IPS, PARange), and 48 bits
    // unless a 52-bit form is enabled (`AArch64.PAMax`, `AArch64.S1OAOutOfRange`).
    let ips = match (regs.tcr >> 32) & 7 {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    };
    let mut oa_bits = ips.min(u32::from(regs.pa_bits)).min(52);
    if oa_bits == 52 && !(ds || lpa) {
        oa_bits = 48;
    }
    let oa_limit = 1u64 << oa_bits;

    // Start level (`AArch64.S1StartLevel`): enough levels of `stride` bits above
    // the page offset to cover `inputsize`.
    let levels = (inputsize - g).div_ceil(stride);
    let start = 4 - levels as i8;

    // Table base: BADDR[47:1], plus BADDR[51:48] in TTBR[5:2] for 52-bit
    // forms. Bits below the table size are masked (pseudocode: RES0; QEMU does
    // the same), which also clears CnP.
    let start_lsb = g + (3 - start as i32) as u32 * stride;
    let start_entries_bits = inputsize - start_lsb;
    let table_bytes = 8u64 << start_entries_bits;
    let mut base = if oa_bits == 52 {
        let align = table_bytes.max(64);
        ((p.ttbr & 0x0000_ffff_ffff_ffc0) | (((p.ttbr >> 2) & 0xf) << 48)) & !(align - 1)
    } else {
        p.ttbr & 0x0000_ffff_ffff_fffe & !(table_bytes - 1)
    };
    if base >= oa_limit {
        return Err(Stage1Fault::address_size(0));
    }

    let ee = regs.sctlr & SCTLR_EE != 0;
    let hpd = p.hpd;
    let mut ap_table: u64 = 0; // bit 0: no EL0, bit 1: read-only
    let mut uxn_table = false;
    let mut pxn_table = false;
    let addr_va = strip_tag(va, top);

    let mut level = start;
    // At most five iterations: levels -1..=3; every path below either returns
    // or increments `level`.
    let (desc, desc_ipa) = loop {
        let lsb = g + (3 - i32::from(level)) as u32 * stride;
        let bits = if level == start {
            start_entries_bits
        } else {
            stride
        };
        let idx = (addr_va >> lsb) & ((1u64 << bits) - 1);
        let desc_ipa = base.wrapping_add(idx * 8);
        let mut b = [0u8; 8];
        if ram.read(desc_ipa, &mut b).is_err() {
            return Err(Stage1Fault::translation(level));
        }
        let desc = if ee {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        };
        if desc & 1 == 0 {
            return Err(Stage1Fault::translation(level));
        }
        let is_table_or_page = desc & 2 != 0;
        if level == 3 {
            if !is_table_or_page {
                // Reserved level 3 encoding.
                return Err(Stage1Fault::translation(level));
            }
            break (desc, desc_ipa);
        }
        if is_table_or_page {
            let next = output_address(desc, g, ds, lpa) & !((1u64 << g) - 1);
            if next >= oa_limit {
                return Err(Stage1Fault::address_size(level));
            }
            if !hpd {
                ap_table |= (desc >> 61) & 3;
                uxn_table |= desc & (1 << 60) != 0;
                pxn_table |= desc & (1 << 59) != 0;
            }
            base = next;
            level += 1;
            continue;
        }
        // Block descriptor: legal levels per granule.
        let ok = match p.granule {
            Granule::K4 => level == 1 || level == 2 || (level == 0 && ds),
            Granule::K16 => level == 2 || (level == 1 && ds),
            Granule::K64 => level == 2 || (level == 1 && lpa),
        };
        if !ok {
            return Err(Stage1Fault::translation(level));
        }
        break (desc, desc_ipa);
    };

    let lsb = g + (3 - i32::from(level)) as u32 * stride;
    let size = 1u64 << lsb;
    let oa = output_address(desc, g, ds, lpa) & !(size - 1);
    if oa >= oa_limit {
        return Err(Stage1Fault::address_size(level));
    }
    let ipa = oa | (addr_va & (size - 1));

    // Access flag (`AArch64.S1HasAlignmentFault` ... `AccessFlagFault`): with
    // TCR_EL1.HA = 1 the hardware sets it instead.
    let ha = regs.tcr & (1 << 39) != 0;
    let hd = regs.tcr & (1 << 40) != 0;
    let mut new_desc = desc;
    if desc & (1 << 10) == 0 {
        if !ha {
            return Err(Stage1Fault {
                kind: FaultKind::AccessFlag,
                level,
            });
        }
        new_desc |= 1 << 10;
    }
    // Dirty state (FEAT_HAFDBS): DBM = 1 and AP[2] = 1 means writable-clean.
    let dbm = desc & (1 << 51) != 0;
    if access == AccessKind::Write && ha && hd && dbm && desc & (1 << 7) != 0 {
        new_desc &= !(1 << 7);
    }

    // Permissions (`AArch64.S1CheckPermissions`), AP[2:1] in bits [7:6].
    let mut ap1 = new_desc & (1 << 6) != 0; // EL0 access
    let mut ap2 = new_desc & (1 << 7) != 0; // read-only
    if ap_table & 1 != 0 {
        ap1 = false;
    }
    if ap_table & 2 != 0 {
        ap2 = true;
    }
    let el0_write = ap1 && !ap2;
    let wxn = regs.sctlr & SCTLR_WXN != 0;
    let allowed = match (access, el) {
        (AccessKind::Read, El::El0) => ap1,
        (AccessKind::Write, El::El0) => el0_write,
        (AccessKind::Read, El::El1) => !(regs.pan && ap1),
        (AccessKind::Write, El::El1) => !(ap2 || (regs.pan && ap1)),
        (AccessKind::Fetch, El::El0) => !(desc & (1 << 54) != 0 || uxn_table || (wxn && el0_write)),
        (AccessKind::Fetch, El::El1) => {
            // Memory writable at EL0 is never executable at EL1.
            !(desc & (1 << 53) != 0 || pxn_table || el0_write || (wxn && !ap2))
        }
    };
    let perm = (!allowed).then_some(Stage1Fault {
        kind: FaultKind::Permission,
        level,
    });

    let attr_idx = (desc >> 2) & 7;
    let attr = (regs.mair >> (8 * attr_idx)) as u8;
    let update = (allowed && new_desc != desc).then_some(DescUpdate {
        ipa: desc_ipa,
        old: desc,
        new: new_desc,
        big_endian: ee,
    });
    Ok((
        Translation {
            ipa,
            mem: MemType::from_mair_attr(attr),
            level,
            size,
            update,
        },
        perm,
    ))
}

/// The output (or next-table) address held in a descriptor, before masking to
/// the block/page size. Arm ARM D8.3: 4K/16K hold OA[47:g] in place, with
/// FEAT_LPA2 (DS = 1) OA\[49:48\] in bits \[49:48\] and OA\[51:50\] in bits \[9:8\];
/// 64K with FEAT_LPA holds OA\[51:48\] in bits \[15:12\] (kernel:
/// arch/arm64/include/asm/pgtable.h `__pte_to_phys`).
fn output_address(desc: u64, g: u32, ds: bool, lpa: bool) -> u64 {
    if ds {
        (desc & 0x0003_ffff_ffff_f000 & !((1u64 << g) - 1)) | (((desc >> 8) & 3) << 50)
    } else if g == 16 {
        let lo = desc & 0x0000_ffff_ffff_0000;
        if lpa {
            lo | (((desc >> 12) & 0xf) << 48)
        } else {
            lo
        }
    } else {
        desc & 0x0000_ffff_ffff_f000 & !((1u64 << g) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dfsc_encodings() {
        let f = |kind, level| Stage1Fault { kind, level }.dfsc();
        assert_eq!(f(FaultKind::Translation, 3), 0x07);
        assert_eq!(f(FaultKind::Translation, 0), 0x04);
        assert_eq!(f(FaultKind::Translation, -1), 0x2b);
        assert_eq!(f(FaultKind::AddressSize, -1), 0x29);
        assert_eq!(f(FaultKind::AddressSize, 2), 0x02);
        assert_eq!(f(FaultKind::AccessFlag, 1), 0x09);
        assert_eq!(f(FaultKind::Permission, 3), 0x0f);
        assert_eq!(f(FaultKind::Alignment, 0), 0x21);
    }

    #[test]
    fn mair_decoding() {
        assert_eq!(
            MemType::from_mair_attr(0x00),
            MemType::Device(DeviceKind::NGnRnE)
        );
        assert_eq!(
            MemType::from_mair_attr(0x04),
            MemType::Device(DeviceKind::NGnRE)
        );
        assert_eq!(
            MemType::from_mair_attr(0x0c),
            MemType::Device(DeviceKind::GRE)
        );
        assert_eq!(
            MemType::from_mair_attr(0xff),
            MemType::Normal {
                inner: 0xf,
                outer: 0xf
            }
        );
        assert!(!MemType::from_mair_attr(0x44).is_device());
    }

    #[test]
    fn output_address_forms() {
        // 4K, DS = 0: bits [47:12].
        assert_eq!(
            output_address(0xffff_1234_5678_9fff, 12, false, false),
            0x1234_5678_9000
        );
        // 4K, DS = 1: OA[51:50] from bits [9:8], OA[49:48] in place.
        assert_eq!(
            output_address(0x0003_0000_0000_1300, 12, true, false),
            0x000f_0000_0000_1000
        );
        // 64K with LPA: OA[51:48] from bits [15:12].
        assert_eq!(
            output_address(0x0000_0000_0001_a000, 16, false, true),
            0x000a_0000_0001_0000
        );
        assert_eq!(
            output_address(0x0000_0000_0001_a000, 16, false, false),
            0x1_0000
        );
    }
}
