//! A one-line description of the machine, printed above the tables: figures mean little without it.

use std::ffi::CStr;
use std::process::Command;

/// `CPU model (N cores) | Linux 6.8.0 | rustc 1.85.0`; parts that cannot be read are left out.
pub(crate) fn describe() -> String {
    let mut parts = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, m)| m.trim().to_string());
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cores = match (processors, usable) {
        (0, 0) => String::new(),
        (p, u) if p == u || u == 0 => format!("{p} logical cores"),
        (0, u) => format!("{u} usable cores"),
        (p, u) => format!("{p} logical cores, {u} usable"),
    };
    match (model, cores.is_empty()) {
        (Some(m), false) => parts.push(format!("{m} ({cores})")),
        (Some(m), true) => parts.push(m),
        (None, false) => parts.push(cores),
        (None, true) => {}
    }
    if let Some(kernel) = kernel() {
        parts.push(kernel);
    }
    if let Some(rustc) = rustc_version() {
        parts.push(rustc);
    }
    parts.push(
        if cfg!(feature = "mimalloc") {
            "allocator mimalloc"
        } else {
            "system allocator"
        }
        .to_string(),
    );
    parts.join(" | ")
}

/// `Linux 6.8.0-48-generic`, from `uname(2)`.
fn kernel() -> Option<String> {
    let mut name = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: uname fills the struct the pointer points to, which is large enough; on failure it
    // returns -1 and the struct is not read.
    if unsafe { libc::uname(name.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: uname succeeded, so every field is a NUL-terminated string within its array.
    let name = unsafe { name.assume_init() };
    // SAFETY: as above, each array holds a NUL-terminated string.
    let field = |f: &[libc::c_char]| unsafe { CStr::from_ptr(f.as_ptr()) }.to_string_lossy();
    Some(format!("{} {}", field(&name.sysname), field(&name.release)))
}

/// `rustc -V`, if a `rustc` is on the `PATH` (it is under `cargo bench`); the toolchain that built
/// this binary is normally the same.
fn rustc_version() -> Option<String> {
    let out = Command::new("rustc").arg("-V").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
