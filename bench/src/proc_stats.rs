//! Server process figures from Linux `/proc`: CPU time (`/proc/PID/stat`) and peak resident
//! memory (`VmHWM` in `/proc/PID/status`).

use std::time::Duration;

use crate::report::ServerStats;

/// CPU time a process has used so far, user plus system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

/// Parses `utime + stime` (fields 14 and 15) from the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces or parentheses, so
/// fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the comm: field 3 (state) is index 0, so utime (14) is index 11, stime (15) index 12.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parses a KiB figure such as `VmHWM` (peak resident set size) or `VmRSS` (current) from the
/// text of `/proc/PID/status`.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// Reads the peak resident memory of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Reads the current resident memory of process `pid`, in KiB.
pub fn current_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// The sum of `read` over `pids`; `None` when there are none or any cannot be read.
pub fn total(pids: &[u32], read: impl Fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| read(pid)).sum()
}

/// Reads the CPU time of process `pid`.
pub fn cpu_sample(pid: u32) -> Option<CpuSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat).map(|ticks| CpuSample { ticks })
}

/// The CPU each server process spends over a measured phase.
pub struct CpuWatch {
    pids: Vec<u32>,
    before: Vec<Option<CpuSample>>,
    percent: Vec<Option<f64>>,
}

impl CpuWatch {
    /// Samples every process in `pids` now: the phase starts.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            before: pids.iter().map(|&pid| cpu_sample(pid)).collect(),
            percent: Vec::new(),
        }
    }

    /// The phase ends: each process's share of one core since [`start`](Self::start), over
    /// `wall`.
    pub fn stop(&mut self, wall: Duration) {
        let ticks_per_second = clock_ticks_per_second();
        self.percent = self
            .pids
            .iter()
            .zip(&self.before)
            .map(|(&pid, before)| {
                before
                    .zip(cpu_sample(pid))
                    .map(|(b, a)| cpu_percent(b, a, ticks_per_second, wall))
            })
            .collect();
    }

    /// Per process: the CPU share of the phase (once stopped) and its peak memory so far.
    pub fn stats(&self) -> Vec<ServerStats> {
        self.pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| ServerStats {
                pid,
                cpu_percent: self.percent.get(i).copied().flatten(),
                peak_rss_kib: peak_rss_kib(pid),
            })
            .collect()
    }
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
}

/// CPU used between two samples as a percentage of one core over `wall`.
pub fn cpu_percent(
    before: CpuSample,
    after: CpuSample,
    ticks_per_second: u64,
    wall: Duration,
) -> f64 {
    let wall = wall.as_secs_f64();
    if wall <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    let cpu_seconds = after.ticks.saturating_sub(before.ticks) as f64 / ticks_per_second as f64;
    100.0 * cpu_seconds / wall
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (chat server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 \
                    9 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\tchat-server\nVmPeak:\t  99999 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40000));
        assert_eq!(parse_status_kib("Name: x\n", "VmHWM"), None);
    }

    #[test]
    fn cpu_percent_is_relative_to_one_core() {
        let before = CpuSample { ticks: 100 };
        let after = CpuSample { ticks: 300 };
        let pct = cpu_percent(before, after, 100, Duration::from_secs(4));
        assert!((pct - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(before, after, 100, Duration::ZERO), 0.0);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let pid = std::process::id();
        assert!(cpu_sample(pid).is_some());
        assert!(peak_rss_kib(pid).unwrap() > 0);
        assert!(current_rss_kib(pid).unwrap() > 0);
        assert!(clock_ticks_per_second() > 0);
    }
}
