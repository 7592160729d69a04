//! CPU time and resident memory of other processes, and the machine's busy
//! time, from /proc (read with `procfs`, which knows the clock tick rate).

use procfs::{CurrentSI, KernelStats, process::Process};

/// User plus system CPU seconds used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// The machine's (busy, total) clock ticks since boot.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let t = KernelStats::current().ok()?.total;
    // Guest time is already counted in user and nice.
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + idle
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    Some((total - idle, total))
}

/// Cores the machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Resident set size of `pid` in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = Process::new(i32::try_from(pid).ok()?).ok()?.status().ok()?;
    Some(status.vmrss? as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_mib(me).is_some_and(|m| m > 0.0));
        let (busy, total) = machine_jiffies().expect("/proc/stat");
        assert!(busy <= total && total > 0);
    }
}
