// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `kvm-nisv-vmm` binary.

use clap::Parser;
use kvm_nisv_vmm::cli::{Cli, Command};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
    // Before any thread starts, so that only the screenshot thread takes it.
    if let Err(e) = kvm_nisv_vmm::screenshot::block_sigusr1() {
        eprintln!("kvm-nisv-vmm: cannot block SIGUSR1: {e}");
    }
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => run(&args),
    };
    std::process::exit(status);
}

#[cfg(target_arch = "aarch64")]
fn run(args: &kvm_nisv_vmm::cli::RunArgs) -> i32 {
    kvm_nisv_vmm::vm::run(args)
}

#[cfg(not(target_arch = "aarch64"))]
fn run(_: &kvm_nisv_vmm::cli::RunArgs) -> i32 {
    eprintln!(
        "kvm-nisv-vmm: this build is not for aarch64; it runs guests only on arm64 Linux hosts with KVM"
    );
    kvm_nisv_vmm::vcpu::EXIT_VMM_ERROR
}
