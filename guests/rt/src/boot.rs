// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Entry code, exception vectors and the register-state runner, in assembly.
//!
//! - `_start` (the image's first byte, 0x8000_0000) branches over 256 bytes of
//!   scratch space (which accesses straddling 0x8000_0000 may overwrite), masks
//!   interrupts, enables FP/SIMD (CPACR_EL1.FPEN), clears SCTLR_EL1.SA (no SP
//!   alignment check), nAA and EE, keeps a copy of SCTLR_EL1 in TPIDRRO_EL0 (the
//!   "canonical" value), sets the stack and VBAR_EL1, zeroes .bss and calls
//!   `rt_start(dtb)`. nAA (bit 6, FEAT_LSE2) is cleared because KVM resets
//!   SCTLR_EL1 to 0x00C50078 (arch/arm64/kvm/sys_regs.c), which has bit 6 set:
//!   with nAA = 1 an unaligned LDAR/STLR crossing 16 bytes would not fault on a
//!   CPU with FEAT_LSE2, and the guests want the strict rule unless a test sets
//!   it on purpose.
//! - Each of the 16 vectors first restores SCTLR_EL1 from TPIDRRO_EL0 (a test may
//!   have run with the MMU off or with big-endian data), then saves x0-x30,
//!   SP_EL0, ELR_EL1, SPSR_EL1, ESR_EL1, FAR_EL1 and q0-q31 as a
//!   [`crate::run::Frame`] on the SP_EL1 stack and calls `rt_exception(frame,
//!   kind)`. A zero return restores the (possibly modified) frame and ERETs; a
//!   non-zero return resumes the caller of `rt_run` (a longjmp).
//! - `rt_run(state, jmp)` saves the callee-saved registers in `jmp`, loads the
//!   whole register state of [`crate::run::RunState`] (SP_EL0, ELR_EL1,
//!   SPSR_EL1, SCTLR_EL1, q0-q31, x0-x30) and ERETs into it. The code it runs ends
//!   with an `svc` (or faults); either way the vector hands the state back.

core::arch::global_asm!(
    r#"
    .equ FRAME_SIZE, 800

    .section .text.boot, "ax"
    .global _start
_start:
    b 1f
    .balign 256
1:
    msr daifset, #0xf
    mov x19, x0
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    mrs x1, sctlr_el1
    bic x1, x1, #(1 << 3)
    bic x1, x1, #(1 << 6)
    bic x1, x1, #(1 << 25)
    msr sctlr_el1, x1
    msr tpidrro_el0, x1
    isb
    adrp x1, __stack_top
    add x1, x1, :lo12:__stack_top
    mov sp, x1
    adrp x1, rt_vectors
    add x1, x1, :lo12:rt_vectors
    msr vbar_el1, x1
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
2:
    cmp x1, x2
    b.hs 3f
    str xzr, [x1], #8
    b 2b
3:
    isb
    mov x0, x19
    bl rt_start
4:
    wfi
    b 4b

    .section .text.vectors, "ax"
    .balign 2048
    .global rt_vectors
rt_vectors:
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #0
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #1
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #2
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #3
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #4
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #5
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #6
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #7
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #8
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #9
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #10
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #11
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #12
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #13
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #14
    b rt_vec_common
    .balign 0x80
    msr tpidr_el1, x0
    mrs x0, tpidrro_el0
    msr sctlr_el1, x0
    isb
    mrs x0, tpidr_el1
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp]
    mov x1, #15
    b rt_vec_common

rt_vec_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    str x30, [sp, #240]
    mrs x2, sp_el0
    str x2, [sp, #248]
    mrs x2, elr_el1
    mrs x3, spsr_el1
    stp x2, x3, [sp, #256]
    mrs x2, esr_el1
    mrs x3, far_el1
    stp x2, x3, [sp, #272]
    add x2, sp, #288
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mov x0, sp
    bl rt_exception
    cbnz x0, rt_resume
    add x2, sp, #288
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    ldp x2, x3, [sp, #256]
    msr elr_el1, x2
    msr spsr_el1, x3
    ldr x2, [sp, #248]
    msr sp_el0, x2
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldr x30, [sp, #240]
    add sp, sp, #FRAME_SIZE
    eret

    .text
    .global rt_run
rt_run:
    stp x19, x20, [x1, #0]
    stp x21, x22, [x1, #16]
    stp x23, x24, [x1, #32]
    stp x25, x26, [x1, #48]
    stp x27, x28, [x1, #64]
    stp x29, x30, [x1, #80]
    mov x2, sp
    str x2, [x1, #96]
    stp d8, d9, [x1, #104]
    stp d10, d11, [x1, #120]
    stp d12, d13, [x1, #136]
    stp d14, d15, [x1, #152]
    adrp x2, RT_JMP
    str x1, [x2, :lo12:RT_JMP]
    ldp x2, x3, [x0, #256]
    msr elr_el1, x2
    msr spsr_el1, x3
    ldr x2, [x0, #248]
    msr sp_el0, x2
    add x2, x0, #288
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    ldr x2, [x0, #272]
    msr sctlr_el1, x2
    isb
    mov x30, x0
    ldp x0, x1, [x30, #0]
    ldp x2, x3, [x30, #16]
    ldp x4, x5, [x30, #32]
    ldp x6, x7, [x30, #48]
    ldp x8, x9, [x30, #64]
    ldp x10, x11, [x30, #80]
    ldp x12, x13, [x30, #96]
    ldp x14, x15, [x30, #112]
    ldp x16, x17, [x30, #128]
    ldp x18, x19, [x30, #144]
    ldp x20, x21, [x30, #160]
    ldp x22, x23, [x30, #176]
    ldp x24, x25, [x30, #192]
    ldp x26, x27, [x30, #208]
    ldp x28, x29, [x30, #224]
    ldr x30, [x30, #240]
    eret

rt_resume:
    adrp x1, RT_JMP
    ldr x1, [x1, :lo12:RT_JMP]
    ldp x19, x20, [x1, #0]
    ldp x21, x22, [x1, #16]
    ldp x23, x24, [x1, #32]
    ldp x25, x26, [x1, #48]
    ldp x27, x28, [x1, #64]
    ldp x29, x30, [x1, #80]
    ldr x2, [x1, #96]
    mov sp, x2
    ldp d8, d9, [x1, #104]
    ldp d10, d11, [x1, #120]
    ldp d12, d13, [x1, #136]
    ldp d14, d15, [x1, #152]
    ret

    .section .bss.rt_jmp, "aw", %nobits
    .balign 8
RT_JMP:
    .zero 8
"#
);

/// The jump buffer `rt_run` fills: x19-x30, SP, d8-d15.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct JmpBuf(pub [u64; 22]);

unsafe extern "C" {
    /// Runs the register state `state` (see [`crate::run::RunState`]) until the
    /// next exception, then returns. `jmp` receives this function's callee-saved
    /// registers.
    pub fn rt_run(state: *const crate::run::RunState, jmp: *mut JmpBuf);
}
