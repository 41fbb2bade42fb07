// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fuzz the load/store decoder: every 4-byte chunk of the input is an
//! instruction word. Decoding and rendering must never panic, and a decoded
//! instruction must satisfy the model's invariants (docs/decoder.md).

#![no_main]

use kvm_nisv::decode::{Class, MAX_ELEMENTS, Offset, Writeback, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(4) {
        let Ok(bytes) = <[u8; 4]>::try_from(chunk) else {
            continue;
        };
        let word = u32::from_le_bytes(bytes);
        let Ok(insn) = decode(word) else {
            continue;
        };
        assert_eq!(insn.word, word);
        assert!(!insn.to_string().is_empty());
        let elems = insn.elements.as_slice();
        assert!(elems.len() <= MAX_ELEMENTS);
        // Elements are contiguous and in increasing order from the address.
        let mut next = 0u32;
        for e in elems {
            assert_eq!(u32::from(e.offset), next, "{insn:?}");
            assert!(matches!(e.size, 1 | 2 | 4 | 8 | 16), "{insn:?}");
            next += u32::from(e.size);
        }
        if matches!(
            insn.writeback,
            Writeback::PostImm(_) | Writeback::PostReg(_)
        ) {
            assert_eq!(insn.offset, Offset::Imm(0), "{insn:?}");
        }
        assert_eq!(insn.class == Class::DcZva, elems.is_empty(), "{insn:?}");
    }
});
