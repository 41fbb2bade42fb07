// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The guest's device tree, written with vm-fdt.
//!
//! Node layout follows firecracker's `arch/aarch64/fdt.rs` and QEMU's `virt`
//! board; each node cites its binding under the kernel's
//! `Documentation/devicetree/bindings/`.

use vm_fdt::{FdtWriter, FdtWriterResult};

use crate::framebuffer::FramebufferMode;
use crate::layout::*;

/// The compatible strings of the node that offers the test device's data
/// window to a generic userspace-I/O driver (`uio_pdrv_genirq` loaded with
/// `of_id=kvm-nisv,testdev-data`, or `generic-uio`).
pub const UIO_COMPATIBLE: [&str; 2] = ["kvm-nisv,testdev-data", "generic-uio"];

/// The GIC's phandle (the root's `interrupt-parent`).
pub const GIC_PHANDLE: u32 = 1;

// interrupt-controller/arm,gic-v3.yaml: first cell of `interrupts`.
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
// include/dt-bindings/interrupt-controller/irq.h
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// The vGIC maintenance interrupt (PPI 9), as QEMU virt and firecracker describe it.
const GIC_MAINT_PPI: u32 = 9;
/// timer/arm,arch_timer.yaml: secure phys, non-secure phys, virtual, hypervisor PPIs.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

/// What the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtConfig {
    /// RAM size in bytes (RAM starts at [`RAM_BASE`]).
    pub ram_size: u64,
    /// The vCPUs' MPIDR_EL1 values, in vCPU index order.
    pub mpidrs: Vec<u64>,
    /// Kernel command line (`/chosen/bootargs`).
    pub cmdline: String,
    /// Initrd IPA range `[start, end)`.
    pub initrd: Option<(u64, u64)>,
    /// The framebuffer at [`FB_BASE`], if any.
    pub framebuffer: Option<FramebufferMode>,
}

/// Build the DTB.
pub fn create_fdt(cfg: &FdtConfig) -> FdtWriterResult<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "kvm-nisv-vmm")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    // cpus.yaml / arm/cpus.yaml: reg is MPIDR_EL1's affinity fields.
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for (i, mpidr) in cfg.mpidrs.iter().enumerate() {
        let cpu = fdt.begin_node(&format!("cpu@{i}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u64("reg", mpidr & 0xff_00ff_ffff)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let mem = fdt.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[RAM_BASE, cfg.ram_size])?;
    fdt.end_node(mem)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &cfg.cmdline)?;
    fdt.property_string("stdout-path", &format!("/uart@{UART_BASE:x}"))?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(chosen)?;

    // arm/psci.yaml: KVM implements PSCI 0.2+ behind HVC.
    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", vec!["arm,psci-0.2".into(), "arm,psci".into()])?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    // timer/arm,arch_timer.yaml, flags as QEMU virt uses them with GICv3.
    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let irqs: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&p| [GIC_FDT_IRQ_TYPE_PPI, p, IRQ_TYPE_LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &irqs)?;
    fdt.end_node(timer)?;

    // interrupt-controller/arm,gic-v3.yaml.
    let gic = fdt.begin_node(&format!("intc@{GIC_DIST_BASE:x}"))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_array_u64(
        "reg",
        &[
            GIC_DIST_BASE,
            GIC_DIST_SIZE,
            GIC_REDIST_BASE,
            redist_window_size(cfg.mpidrs.len() as u64),
        ],
    )?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_FDT_IRQ_TYPE_PPI, GIC_MAINT_PPI, IRQ_TYPE_LEVEL_HIGH],
    )?;
    fdt.property_u32("phandle", GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    // serial/8250.yaml.
    let uart = fdt.begin_node(&format!("uart@{UART_BASE:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[UART_BASE, UART_SIZE])?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_u32("reg-shift", 0)?;
    fdt.property_u32("reg-io-width", 1)?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_FDT_IRQ_TYPE_SPI, UART_SPI, IRQ_TYPE_EDGE_RISING],
    )?;
    fdt.end_node(uart)?;

    // The test device (docs/guest-interface.md); no upstream binding.
    let td = fdt.begin_node(&format!("testdev@{TESTDEV_CTRL_BASE:x}"))?;
    fdt.property_string("compatible", "kvm-nisv,testdev")?;
    fdt.property_array_u64(
        "reg",
        &[
            TESTDEV_CTRL_BASE,
            TESTDEV_CTRL_SIZE,
            TESTDEV_DATA_BASE,
            TESTDEV_DATA_SIZE,
        ],
    )?;
    fdt.property_string_list("reg-names", vec!["ctrl".into(), "data".into()])?;
    fdt.end_node(td)?;

    // The data window once more, for a userspace-I/O driver (no upstream
    // binding; uio_pdrv_genirq matches the compatible given as its `of_id`
    // parameter). No interrupt: the device has none.
    let uio = fdt.begin_node(&format!("uio@{TESTDEV_DATA_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        UIO_COMPATIBLE.iter().map(|s| s.to_string()).collect(),
    )?;
    fdt.property_array_u64("reg", &[TESTDEV_DATA_BASE, TESTDEV_DATA_SIZE])?;
    fdt.end_node(uio)?;

    // display/simple-framebuffer.yaml: memory the firmware (here the VMM) set up
    // for scan-out; Linux's simplefb (or simpledrm) drives it.
    if let Some(mode) = cfg.framebuffer {
        let fb = fdt.begin_node(&format!("framebuffer@{FB_BASE:x}"))?;
        fdt.property_string("compatible", "simple-framebuffer")?;
        fdt.property_array_u64("reg", &[FB_BASE, mode.window_size()])?;
        fdt.property_u32("width", mode.width)?;
        fdt.property_u32("height", mode.height)?;
        fdt.property_u32("stride", mode.stride() as u32)?;
        fdt.property_string("format", mode.format.name())?;
        fdt.end_node(fb)?;
    }

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A minimal flattened-device-tree reader (devicetree specification v0.4,
    /// chapter 5): path -> property name -> value bytes.
    fn parse(blob: &[u8]) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let be32 = |o: usize| u32::from_be_bytes(blob[o..o + 4].try_into().unwrap());
        assert_eq!(be32(0), 0xd00d_feed, "magic");
        assert_eq!(be32(4) as usize, blob.len(), "totalsize");
        let off_struct = be32(8) as usize;
        let off_strings = be32(12) as usize;
        let mut out = BTreeMap::new();
        let mut path: Vec<String> = Vec::new();
        let mut p = off_struct;
        loop {
            let tok = be32(p);
            p += 4;
            match tok {
                1 => {
                    let end = p + blob[p..].iter().position(|&b| b == 0).unwrap();
                    let name = std::str::from_utf8(&blob[p..end]).unwrap().to_string();
                    p = (end + 1 + 3) & !3;
                    path.push(name);
                    out.insert(path_of(&path), BTreeMap::new());
                }
                2 => {
                    path.pop();
                }
                3 => {
                    let len = be32(p) as usize;
                    let nameoff = be32(p + 4) as usize;
                    p += 8;
                    let s = off_strings + nameoff;
                    let e = s + blob[s..].iter().position(|&b| b == 0).unwrap();
                    let name = std::str::from_utf8(&blob[s..e]).unwrap().to_string();
                    let val = blob[p..p + len].to_vec();
                    p = (p + len + 3) & !3;
                    out.get_mut(&path_of(&path)).unwrap().insert(name, val);
                }
                4 => {}
                9 => break,
                t => panic!("bad token {t}"),
            }
        }
        out
    }

    fn path_of(p: &[String]) -> String {
        let s = p
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        format!("/{s}")
    }

    fn u32s(v: &[u8]) -> Vec<u32> {
        v.chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64s(v: &[u8]) -> Vec<u64> {
        v.chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn cfg() -> FdtConfig {
        FdtConfig {
            ram_size: 256 << 20,
            mpidrs: vec![0x8000_0000, 0x8000_0001],
            cmdline: "console=ttyS0 panic=-1".into(),
            initrd: Some((0x8800_0000, 0x8810_0000)),
            framebuffer: Some("320x240".parse().unwrap()),
        }
    }

    #[test]
    fn describes_the_machine() {
        let t = parse(&create_fdt(&cfg()).unwrap());
        let root = &t["/"];
        assert_eq!(root["compatible"], b"linux,dummy-virt\0");
        assert_eq!(u32s(&root["interrupt-parent"]), vec![GIC_PHANDLE]);

        assert_eq!(
            u64s(&t["/memory@80000000"]["reg"]),
            vec![0x8000_0000, 256 << 20]
        );

        for (i, reg) in [(0, 0u64), (1, 1)] {
            let cpu = &t[&format!("/cpus/cpu@{i}")];
            assert_eq!(cpu["enable-method"], b"psci\0");
            assert_eq!(cpu["device_type"], b"cpu\0");
            assert_eq!(
                u64s(&cpu["reg"]),
                vec![reg],
                "MPIDR affinity, without bit 31"
            );
        }
        assert!(!t.contains_key("/cpus/cpu@2"));

        let psci = &t["/psci"];
        assert_eq!(psci["method"], b"hvc\0");
        assert!(psci["compatible"].starts_with(b"arm,psci-0.2\0"));

        let timer = &t["/timer"];
        assert_eq!(
            u32s(&timer["interrupts"]),
            vec![1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );

        let gic = &t["/intc@8000000"];
        assert_eq!(gic["compatible"], b"arm,gic-v3\0");
        assert_eq!(u32s(&gic["#interrupt-cells"]), vec![3]);
        assert!(gic.contains_key("interrupt-controller"));
        assert_eq!(
            u64s(&gic["reg"]),
            vec![0x0800_0000, 0x1_0000, 0x080A_0000, 2 * 0x2_0000]
        );
        assert_eq!(u32s(&gic["phandle"]), vec![GIC_PHANDLE]);

        let uart = &t["/uart@9000000"];
        assert_eq!(uart["compatible"], b"ns16550a\0");
        assert_eq!(u64s(&uart["reg"]), vec![0x0900_0000, 0x1000]);
        assert_eq!(u32s(&uart["clock-frequency"]), vec![UART_CLOCK_HZ]);
        assert_eq!(u32s(&uart["interrupts"]), vec![0, 1, 1]);

        let chosen = &t["/chosen"];
        assert_eq!(chosen["stdout-path"], b"/uart@9000000\0");
        assert_eq!(chosen["bootargs"], b"console=ttyS0 panic=-1\0");
        assert_eq!(u64s(&chosen["linux,initrd-start"]), vec![0x8800_0000]);
        assert_eq!(u64s(&chosen["linux,initrd-end"]), vec![0x8810_0000]);

        let td = &t["/testdev@a000000"];
        assert_eq!(td["compatible"], b"kvm-nisv,testdev\0");
        assert_eq!(
            u64s(&td["reg"]),
            vec![0x0A00_0000, 0x1000, 0x7FF0_0000, 0x10_0000]
        );
        assert_eq!(td["reg-names"], b"ctrl\0data\0");

        let uio = &t["/uio@7ff00000"];
        assert_eq!(uio["compatible"], b"kvm-nisv,testdev-data\0generic-uio\0");
        assert_eq!(u64s(&uio["reg"]), vec![0x7FF0_0000, 0x10_0000]);
        assert!(!uio.contains_key("interrupts"));

        let fb = &t["/framebuffer@7e000000"];
        assert_eq!(fb["compatible"], b"simple-framebuffer\0");
        assert_eq!(u64s(&fb["reg"]), vec![0x7E00_0000, 196_608]);
        assert_eq!(u32s(&fb["width"]), vec![320]);
        assert_eq!(u32s(&fb["height"]), vec![240]);
        assert_eq!(u32s(&fb["stride"]), vec![640]);
        assert_eq!(fb["format"], b"r5g6b5\0");
    }

    #[test]
    fn no_initrd_no_initrd_properties() {
        let mut c = cfg();
        c.initrd = None;
        c.framebuffer = None;
        c.mpidrs = vec![0x8000_0000];
        let blob = create_fdt(&c).unwrap();
        assert!(blob.len() < DTB_MAX_SIZE);
        let t = parse(&blob);
        assert!(!t["/chosen"].contains_key("linux,initrd-start"));
        assert!(!t.keys().any(|k| k.starts_with("/framebuffer")));
        assert_eq!(u64s(&t["/intc@8000000"]["reg"])[3], 0x2_0000);
    }
}
