//! What tests check of a process they started: its peak resident memory, whether it
//! listens.

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

/// Whether something listens on the TCP `address` (`host:port`): a connection is made
/// and it is not one that met itself. Probing a port nobody listens on from the same
/// host can pick that very port as the local one and connect to itself (a TCP
/// simultaneous open), which would pass for a listening server.
pub fn listening(address: &str) -> bool {
    match std::net::TcpStream::connect(address) {
        Ok(s) => match (s.local_addr(), s.peer_addr()) {
            (Ok(local), Ok(peer)) => local != peer,
            _ => false,
        },
        Err(_) => false,
    }
}

/// The address in the first `serving address=HOST:PORT` line of a server's log text
/// (`bbru serve` and `bbru-zeo` write one once they listen, with the port they bound).
/// Tests start servers on port 0 and read the port here: a port probed free could be
/// taken by another test's server before theirs binds it.
pub fn serving_address(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = line.split_once(" serving address=")?.1;
        Some(rest.split_whitespace().next()?.to_owned())
    })
}
