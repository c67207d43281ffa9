// The glibc of this machine, as `getconf GNU_LIBC_VERSION` names it. One definition for the
// two places that need it, pulled in with `include!`: `build.rs` (which decides the link of the
// binaries from it) and the `security` tests (which check what it decided). A plain comment, not
// `//!`: an included file cannot carry inner attributes.

/// `(major, minor)` of the glibc that `getconf GNU_LIBC_VERSION` names (`glibc 2.36`), or
/// `None` when `getconf` does not run, fails or names something else (another C library).
fn glibc_version() -> Option<(u32, u32)> {
    let out = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().strip_prefix("glibc ")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
