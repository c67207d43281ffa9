//! Links the `dispatch` CLI at a fixed address on Linux with glibc (`-no-pie`): a CLI call is
//! a process start, and relocating a position-independent `dispatch` wrote to ~150 pages of its
//! own at every start (its vtables and constant tables), about 40% of each call's page faults.
//! `dispatchd`, the long-running daemon, stays position independent, with the address-space
//! randomization that goes with it (ADR 0021; checked by the `security` tests). Building with
//! `DISPATCH_CLI_PIE=1` keeps `dispatch` position independent too.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DISPATCH_CLI_PIE");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let keep_pie = std::env::var("DISPATCH_CLI_PIE").is_ok_and(|v| v == "1");
    if target_os == "linux" && target_env == "gnu" && !keep_pie {
        println!("cargo:rustc-link-arg-bin=dispatch=-no-pie");
    }
}
