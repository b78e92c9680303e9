//! Processes as the tests and benches measure them.

/// A `/proc/{pid}/status` memory field (`VmHWM`, `VmRSS`, ...) of process `pid` (`None`:
/// this process), in MiB; `None` when it cannot be read (the process is gone, not Linux).
pub fn vm_mib(pid: Option<u32>, field: &str) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The children of process `pid` (Linux: `/proc/{pid}/task/{pid}/children`; empty when
/// they cannot be read).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
