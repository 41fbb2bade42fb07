// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Register ids for `KVM_GET_ONE_REG` / `KVM_SET_ONE_REG` (hand-written).
//!
//! The encodings are the ones `arch/arm64/include/uapi/asm/kvm.h` defines
//! (`KVM_REG_ARM_CORE_REG()`, `ARM64_SYS_REG()`); bindgen cannot translate those
//! function-like macros, so they are computed here from the generated constants and
//! from the real `struct kvm_regs` offsets. The tests compare them with the ids
//! libclang computed with the C macros (`tests/fixtures/linux-*.txt`).

use core::mem::{offset_of, size_of};

use super::bindings::{
    KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM64_SYSREG_CRM_MASK,
    KVM_REG_ARM64_SYSREG_CRM_SHIFT, KVM_REG_ARM64_SYSREG_CRN_MASK, KVM_REG_ARM64_SYSREG_CRN_SHIFT,
    KVM_REG_ARM64_SYSREG_OP0_MASK, KVM_REG_ARM64_SYSREG_OP0_SHIFT, KVM_REG_ARM64_SYSREG_OP1_MASK,
    KVM_REG_ARM64_SYSREG_OP1_SHIFT, KVM_REG_ARM64_SYSREG_OP2_MASK, KVM_REG_ARM64_SYSREG_OP2_SHIFT,
    KVM_REG_SIZE_MASK, KVM_REG_SIZE_SHIFT, KVM_REG_SIZE_U64, kvm_regs, user_fpsimd_state,
};

/// The `KVM_REG_SIZE_*` field for a register of `bytes` bytes
/// (`log2(bytes) << KVM_REG_SIZE_SHIFT`), or `None` unless `bytes` is a power of
/// two from 1 (`KVM_REG_SIZE_U8`) to 256 (`KVM_REG_SIZE_U2048`).
pub const fn kvm_reg_size_field(bytes: usize) -> Option<u64> {
    if !bytes.is_power_of_two() || bytes > 256 {
        return None;
    }
    Some((bytes.trailing_zeros() as u64) << KVM_REG_SIZE_SHIFT)
}

/// The size in bytes that a register id's `KVM_REG_SIZE_*` field encodes
/// (`KVM_REG_SIZE(id)` in `include/uapi/linux/kvm.h`). Any `u64` is accepted: the
/// field is 4 bits wide, so the result is at most `1 << 15`.
pub const fn kvm_reg_size_bytes(id: u64) -> usize {
    1usize << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)
}

/// Byte range of `struct kvm_regs` made of 64-bit core registers:
/// `regs.regs[0..31]`, `regs.sp`, `regs.pc`, `regs.pstate`, `sp_el1`, `elr_el1`,
/// `spsr[0..KVM_NR_SPSR]` (the padding before `fp_regs` is not a register).
const CORE_U64_END: usize = offset_of!(kvm_regs, spsr) + size_of::<[u64; 5]>();
const VREGS_START: usize = offset_of!(kvm_regs, fp_regs) + offset_of!(user_fpsimd_state, vregs);
const VREGS_END: usize = VREGS_START + 32 * 16;
const FPSR: usize = offset_of!(kvm_regs, fp_regs) + offset_of!(user_fpsimd_state, fpsr);
const FPCR: usize = offset_of!(kvm_regs, fp_regs) + offset_of!(user_fpsimd_state, fpcr);

/// The `KVM_REG_ARM_CORE` register id of the `size`-byte field at byte `offset` in
/// `struct kvm_regs`, e.g. `kvm_core_reg_id(offset_of!(kvm_regs, regs.pc), 8)`.
///
/// The id is `KVM_REG_ARM64 | KVM_REG_SIZE_* | KVM_REG_ARM_CORE | offset / 4`
/// (`KVM_REG_ARM_CORE_REG()` in `arch/arm64/include/uapi/asm/kvm.h`). Returns
/// `None` for an (offset, size) pair the kernel rejects with `EINVAL`: the rules are
/// those of `core_reg_size_from_offset()` in `arch/arm64/kvm/guest.c` (6.1 and
/// 6.12): 8 bytes, 8-byte aligned, for the general-purpose, `sp`, `pc`, `pstate`,
/// `sp_el1`, `elr_el1` and `spsr[]` slots; 16 bytes, 16-byte aligned, for
/// `fp_regs.vregs[]`; 4 bytes for `fp_regs.fpsr` and `fp_regs.fpcr`. (On a vCPU with
/// SVE enabled the kernel also rejects the `vregs` ids; use the SVE registers.)
pub const fn kvm_core_reg_id(offset: usize, size: usize) -> Option<u64> {
    let valid = match size {
        8 => offset < CORE_U64_END && offset.is_multiple_of(8),
        16 => offset >= VREGS_START && offset < VREGS_END && offset.is_multiple_of(16),
        4 => offset == FPSR || offset == FPCR,
        _ => false,
    };
    if !valid {
        return None;
    }
    let Some(size_field) = kvm_reg_size_field(size) else {
        return None;
    };
    // offset < size_of::<kvm_regs>() here, so the index fits the 16-bit field.
    Some(KVM_REG_ARM64 | size_field | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64)
}

/// The id of the 64-bit system register with encoding (op0, op1, CRn, CRm, op2),
/// as `ARM64_SYS_REG()` in `arch/arm64/include/uapi/asm/kvm.h` computes it; e.g.
/// `ESR_EL1` is `kvm_sysreg_id(3, 0, 5, 2, 0)`. Returns `None` if a field does not
/// fit its width (op0: 2 bits, op1: 3, CRn: 4, CRm: 4, op2: 3).
pub const fn kvm_sysreg_id(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<u64> {
    const fn field(value: u8, shift: u32, mask: u32) -> Option<u64> {
        let v = (value as u64) << shift;
        if v & !(mask as u64) != 0 {
            None
        } else {
            Some(v)
        }
    }
    let (Some(op0), Some(op1), Some(crn), Some(crm), Some(op2)) = (
        field(
            op0,
            KVM_REG_ARM64_SYSREG_OP0_SHIFT,
            KVM_REG_ARM64_SYSREG_OP0_MASK,
        ),
        field(
            op1,
            KVM_REG_ARM64_SYSREG_OP1_SHIFT,
            KVM_REG_ARM64_SYSREG_OP1_MASK,
        ),
        field(
            crn,
            KVM_REG_ARM64_SYSREG_CRN_SHIFT,
            KVM_REG_ARM64_SYSREG_CRN_MASK,
        ),
        field(
            crm,
            KVM_REG_ARM64_SYSREG_CRM_SHIFT,
            KVM_REG_ARM64_SYSREG_CRM_MASK,
        ),
        field(
            op2,
            KVM_REG_ARM64_SYSREG_OP2_SHIFT,
            KVM_REG_ARM64_SYSREG_OP2_MASK,
        ),
    ) else {
        return None;
    };
    Some(
        KVM_REG_ARM64
            | KVM_REG_SIZE_U64
            | KVM_REG_ARM64_SYSREG as u64
            | op0
            | op1
            | crn
            | crm
            | op2,
    )
}

/// Unwraps a `kvm_sysreg_id` result in a constant (fails the build, not at run time).
const fn sysreg(id: Option<u64>) -> u64 {
    match id {
        Some(id) => id,
        None => panic!("invalid system register encoding"),
    }
}

/// `KVM_REG_ARM_TIMER_CTL`: the virtual timer's `CNTV_CTL_EL0`,
/// `ARM64_SYS_REG(3, 3, 14, 3, 1)` in `arch/arm64/include/uapi/asm/kvm.h`.
pub const KVM_REG_ARM_TIMER_CTL: u64 = sysreg(kvm_sysreg_id(3, 3, 14, 3, 1));
/// `KVM_REG_ARM_TIMER_CNT`: the virtual count. The uapi header defines it as
/// `ARM64_SYS_REG(3, 3, 14, 3, 2)` (the encoding of `CNTV_CVAL_EL0`): the header
/// documents that `TIMER_CNT` and `TIMER_CVAL` were swapped by mistake and the
/// swap is ABI now.
pub const KVM_REG_ARM_TIMER_CNT: u64 = sysreg(kvm_sysreg_id(3, 3, 14, 3, 2));
/// `KVM_REG_ARM_TIMER_CVAL`: the virtual timer's compare value, defined as
/// `ARM64_SYS_REG(3, 3, 14, 0, 2)` (the encoding of `CNTVCT_EL0`; see
/// [`KVM_REG_ARM_TIMER_CNT`]).
pub const KVM_REG_ARM_TIMER_CVAL: u64 = sysreg(kvm_sysreg_id(3, 3, 14, 0, 2));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{
        KVM_REG_SIZE_U8, KVM_REG_SIZE_U32, KVM_REG_SIZE_U128, KVM_REG_SIZE_U2048,
    };

    #[test]
    fn size_field_round_trips() {
        assert_eq!(kvm_reg_size_field(1), Some(KVM_REG_SIZE_U8 as u64));
        assert_eq!(kvm_reg_size_field(4), Some(KVM_REG_SIZE_U32));
        assert_eq!(kvm_reg_size_field(16), Some(KVM_REG_SIZE_U128));
        assert_eq!(kvm_reg_size_field(256), Some(KVM_REG_SIZE_U2048));
        for bad in [0, 3, 12, 512, usize::MAX] {
            assert_eq!(kvm_reg_size_field(bad), None, "{bad}");
        }
        for shift in 0..=8 {
            let bytes = 1usize << shift;
            let field = kvm_reg_size_field(bytes).unwrap();
            assert_eq!(kvm_reg_size_bytes(KVM_REG_ARM64 | field), bytes);
        }
        // Garbage ids never panic.
        assert_eq!(kvm_reg_size_bytes(u64::MAX), 1 << 15);
    }

    #[test]
    fn core_ids_follow_the_kernel_rules() {
        let x = |n: usize| offset_of!(kvm_regs, regs.regs) + 8 * n;
        assert!(kvm_core_reg_id(x(0), 8).is_some());
        assert!(kvm_core_reg_id(x(30), 8).is_some());
        // Misaligned and wrong-size accesses are refused, as by the kernel.
        assert_eq!(kvm_core_reg_id(x(0) + 4, 8), None);
        assert_eq!(kvm_core_reg_id(x(0), 4), None);
        assert_eq!(kvm_core_reg_id(x(1), 16), None);
        // The padding between spsr[] and fp_regs is not a register.
        assert_eq!(kvm_core_reg_id(CORE_U64_END, 8), None);
        assert!(kvm_core_reg_id(CORE_U64_END - 8, 8).is_some());
        let v = |n: usize| VREGS_START + 16 * n;
        assert!(kvm_core_reg_id(v(31), 16).is_some());
        assert_eq!(kvm_core_reg_id(v(32), 16), None);
        assert_eq!(kvm_core_reg_id(v(0) + 8, 16), None);
        assert_eq!(kvm_core_reg_id(v(0), 8), None);
        assert!(kvm_core_reg_id(FPSR, 4).is_some());
        assert_eq!(kvm_core_reg_id(FPSR, 8), None);
        assert_eq!(kvm_core_reg_id(usize::MAX, 8), None);
        assert_eq!(kvm_core_reg_id(usize::MAX - 3, 4), None);
        // x1's id is x0's plus two 32-bit words.
        assert_eq!(
            kvm_core_reg_id(x(1), 8).unwrap() - kvm_core_reg_id(x(0), 8).unwrap(),
            2
        );
    }

    #[test]
    fn sysreg_fields_are_range_checked() {
        assert!(kvm_sysreg_id(3, 7, 15, 15, 7).is_some());
        assert_eq!(kvm_sysreg_id(4, 0, 0, 0, 0), None);
        assert_eq!(kvm_sysreg_id(3, 8, 0, 0, 0), None);
        assert_eq!(kvm_sysreg_id(3, 0, 16, 0, 0), None);
        assert_eq!(kvm_sysreg_id(3, 0, 0, 16, 0), None);
        assert_eq!(kvm_sysreg_id(3, 0, 0, 0, 8), None);
        assert_eq!(kvm_sysreg_id(255, 255, 255, 255, 255), None);
        // Fields do not overlap: each one changes the id independently.
        let base = kvm_sysreg_id(0, 0, 0, 0, 0).unwrap();
        let ids = [
            kvm_sysreg_id(1, 0, 0, 0, 0).unwrap(),
            kvm_sysreg_id(0, 1, 0, 0, 0).unwrap(),
            kvm_sysreg_id(0, 0, 1, 0, 0).unwrap(),
            kvm_sysreg_id(0, 0, 0, 1, 0).unwrap(),
            kvm_sysreg_id(0, 0, 0, 0, 1).unwrap(),
        ];
        let mut bits = 0u64;
        for id in ids {
            let b = id ^ base;
            assert_eq!(b.count_ones(), 1, "{id:#x}");
            assert_eq!(bits & b, 0);
            bits |= b;
        }
    }
}
