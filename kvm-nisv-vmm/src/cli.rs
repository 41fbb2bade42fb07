// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command-line interface (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::framebuffer::FramebufferMode;
use crate::layout::{DEFAULT_RAM_SIZE, MAX_RAM_SIZE, MAX_VCPUS, MIN_RAM_SIZE};
use crate::nisv::Policy;

/// The default kernel command line: the UART as console, and no reboot loop.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 earlycon=uart8250,mmio,0x9000000 panic=-1";

/// kvm-nisv-vmm: a thin arm64 VMM that emulates KVM_EXIT_ARM_NISV data aborts.
///
/// Guest UART output goes to stdout, VMM messages to stderr. The exit status is
/// the guest's (PSCI SYSTEM_OFF with the status in x4), or: 1 VMM error, 2 usage
/// error, 3 stopped by the NISV policy, 4 guest retry loop on an injected abort,
/// 5 NISV abort on a kernel without KVM_CAP_ARM_NISV_TO_USER, 6 guest crash event,
/// 128+N killed by signal N.
#[derive(Debug, Parser)]
#[command(name = "kvm-nisv-vmm", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a kernel (arm64 Linux Image or flat binary) in a new VM.
    Run(RunArgs),
}

/// Options of `run`.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Kernel to boot: an arm64 Linux `Image` (detected by its header; loaded at
    /// RAM start + text_offset) or a flat binary (loaded and entered at the start
    /// of RAM, 0x8000_0000, with x0 = the device tree's address).
    #[arg(short, long, value_name = "FILE")]
    pub kernel: PathBuf,

    /// Initial ramdisk, placed below the device tree and announced in /chosen.
    #[arg(short, long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (/chosen/bootargs).
    #[arg(short = 'p', long, value_name = "STRING", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Guest RAM size, with an optional K, M or G suffix (binary units); a multiple
    /// of 64 KiB, at least 8M.
    #[arg(short, long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem)]
    pub mem: u64,

    /// Number of vCPUs. vCPU 0 starts at the kernel entry; the others start
    /// powered off and are started by the guest with PSCI CPU_ON.
    #[arg(short, long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u8,

    /// What to do with a data abort that has no valid instruction syndrome
    /// (KVM_EXIT_ARM_NISV): `emulate` it with kvm-nisv (an address with nothing
    /// behind it gets an external abort), `inject` an external abort every time,
    /// or `stop` with a report (exit status 3).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = Policy::Emulate)]
    pub on_nisv: Policy,

    /// Log every NISV exit with its disassembly, and each access to an address
    /// with nothing behind it, on stderr.
    #[arg(long)]
    pub trace_nisv: bool,

    /// Add a framebuffer of this mode, `WIDTHxHEIGHT[-FORMAT]` with FORMAT
    /// r5g6b5 (default), x8r8g8b8 or a8r8g8b8, e.g. `320x240`. The device tree
    /// describes it as a `simple-framebuffer` at 0x7E00_0000; its memory is not
    /// a memslot, so every guest access to it exits to the VMM.
    #[arg(long, value_name = "MODE")]
    pub framebuffer: Option<FramebufferMode>,

    /// Write the framebuffer to FILE as a PNG when the VM stops and whenever
    /// the VMM receives SIGUSR1. Needs --framebuffer.
    #[arg(long, value_name = "FILE", requires = "framebuffer")]
    pub screenshot: Option<PathBuf>,
    /// Run-ahead emulation: after emulating a NISV access that is in a loop
    /// (its PC took a NISV exit less than 2 ms before), go on executing up to
    /// N of the following instructions in the VMM (integer instructions,
    /// branches, loads/stores to RAM and devices) instead of re-entering the
    /// guest; it stops before anything else (docs/emulator.md, "Run-ahead").
    /// 0 disables it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub nisv_run_ahead: u32,

    /// Time budget of one run-ahead in microseconds: the longest a pending
    /// interrupt of the guest waits for it.
    #[arg(long, value_name = "US", default_value_t = 100)]
    pub nisv_run_ahead_us: u64,

    /// Run ahead after every emulated NISV exit, not only in loops (tests).
    #[arg(long)]
    pub nisv_run_ahead_always: bool,
}

/// Parse `256M`, `1G`, `65536`... into bytes.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 256M, 1G)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes < MIN_RAM_SIZE {
        return Err(format!("at least {}M of RAM is needed", MIN_RAM_SIZE >> 20));
    }
    if bytes > MAX_RAM_SIZE {
        return Err(format!(
            "at most {}G of RAM fits the memory map",
            MAX_RAM_SIZE >> 30
        ));
    }
    if bytes % (64 << 10) != 0 {
        return Err("the RAM size must be a multiple of 64K".into());
    }
    Ok(bytes)
}

fn parse_cpus(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a vCPU count"))?;
    if n == 0 || u64::from(n) > MAX_VCPUS {
        return Err(format!("between 1 and {MAX_VCPUS} vCPUs"));
    }
    Ok(n)
}

const _: () = assert!(DEFAULT_RAM_SIZE == 256 << 20);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut v = vec!["kvm-nisv-vmm", "run"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.command {
            Command::Run(r) => r,
        })
    }

    #[test]
    fn defaults() {
        let r = parse(&["--kernel", "Image"]).unwrap();
        assert_eq!(r.kernel, PathBuf::from("Image"));
        assert_eq!(r.mem, 256 << 20);
        assert_eq!(r.cpus, 1);
        assert_eq!(r.on_nisv, Policy::Emulate);
        assert!(!r.trace_nisv);
        assert_eq!((r.nisv_run_ahead, r.nisv_run_ahead_us), (0, 100));
        assert!(!r.nisv_run_ahead_always);
        assert_eq!(r.cmdline, DEFAULT_CMDLINE);
        assert_eq!(r.initrd, None);
        assert_eq!(r.framebuffer, None);
        assert_eq!(r.screenshot, None);
    }

    #[test]
    fn every_option() {
        let r = parse(&[
            "-k",
            "g.bin",
            "--initrd",
            "i.gz",
            "--cmdline",
            "quiet",
            "--mem",
            "1G",
            "--cpus",
            "4",
            "--on-nisv",
            "stop",
            "--trace-nisv",
            "--framebuffer",
            "640x480-x8r8g8b8",
            "--screenshot",
            "s.png",
            "--nisv-run-ahead",
            "256",
            "--nisv-run-ahead-us",
            "50",
            "--nisv-run-ahead-always",
        ])
        .unwrap();
        assert_eq!((r.nisv_run_ahead, r.nisv_run_ahead_us), (256, 50));
        assert!(r.nisv_run_ahead_always);
        assert_eq!(r.framebuffer.unwrap().to_string(), "640x480-x8r8g8b8");
        assert_eq!(r.screenshot, Some(PathBuf::from("s.png")));
        assert_eq!(r.initrd, Some(PathBuf::from("i.gz")));
        assert_eq!(r.cmdline, "quiet");
        assert_eq!(r.mem, 1 << 30);
        assert_eq!(r.cpus, 4);
        assert_eq!(r.on_nisv, Policy::Stop);
        assert!(r.trace_nisv);
        assert_eq!(
            parse(&["-k", "x", "--on-nisv", "inject"]).unwrap().on_nisv,
            Policy::Inject
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["--mem", "256M"][..],           // no kernel
            &["-k", "x", "--mem", "4M"],      // too small
            &["-k", "x", "--mem", "100000G"], // too large
            &["-k", "x", "--mem", "12345"],   // not a multiple of 64K (and too small)
            &["-k", "x", "--mem", "lots"],
            &["-k", "x", "--cpus", "0"],
            &["-k", "x", "--cpus", "200"],
            &["-k", "x", "--on-nisv", "ignore"],
            &["-k", "x", "--screenshot", "s.png"], // needs --framebuffer
            &["-k", "x", "--framebuffer", "320"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_mem("8M"), Ok(8 << 20));
        assert_eq!(parse_mem("8388608"), Ok(8 << 20));
        assert!(parse_mem("9437185").is_err());
        assert!(parse_mem("18446744073709551615G").is_err());
    }

    #[test]
    fn help_explains_each_option() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for opt in [
            "--kernel",
            "--initrd",
            "--cmdline",
            "--mem",
            "--cpus",
            "--on-nisv",
            "--trace-nisv",
            "--framebuffer",
            "--screenshot",
            "--nisv-run-ahead",
            "--nisv-run-ahead-us",
            "--nisv-run-ahead-always",
        ] {
            assert!(help.contains(opt), "{opt} missing from:\n{help}");
        }
        assert!(help.contains("emulate") && help.contains("inject") && help.contains("stop"));
        Cli::command().debug_assert();
    }
}
