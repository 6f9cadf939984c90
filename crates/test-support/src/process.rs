//! What tests measure of a process they started: its peak resident memory.

/// The peak resident set of process `pid` so far (`VmHWM` in `/proc/PID/status`), in
/// bytes.
///
/// # Panics
/// If the process is gone or its status has no `VmHWM` line.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB in /proc/PID/status");
    kib * 1024
}
