//! What the machine's CPUs did while a bench ran, from `/proc/stat`: how
//! busy each was, and how much time the hypervisor took from it (steal).
//! A number measured on a shared VM means little without it: a run whose
//! CPUs lost a tenth of their time to steal, or whose harness CPU was
//! saturated, is told apart from one that was not.

use serde::Serialize;

/// Cumulative tick counters of one CPU (the `cpuN` lines of `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub cpu: usize,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTicks {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

/// The per-CPU lines of a `/proc/stat` text (not the `cpu` total line).
/// Lines that do not parse are left out.
pub fn parse_proc_stat_cpus(text: &str) -> Vec<CpuTicks> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let cpu = words.next()?.strip_prefix("cpu")?.parse().ok()?;
            let mut n = || -> Option<u64> { words.next()?.parse().ok() };
            Some(CpuTicks {
                cpu,
                user: n()?,
                nice: n()?,
                system: n()?,
                idle: n()?,
                iowait: n()?,
                irq: n()?,
                softirq: n()?,
                // Older kernels end the line before steal.
                steal: n().unwrap_or(0),
            })
        })
        .collect()
}

/// This machine's per-CPU counters now; empty when `/proc/stat` cannot
/// be read.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    std::fs::read_to_string("/proc/stat")
        .map(|text| parse_proc_stat_cpus(&text))
        .unwrap_or_default()
}

/// The online CPUs, in order, from the calling thread's affinity mask.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call writes at
    // most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's size.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// One CPU over an interval, as fractions of its time (0 to 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuShare {
    pub cpu: usize,
    /// What ran on it: `appliance` (its pinned cores), `harness` (the CPUs
    /// the harness was kept on), `shared` (the appliance was not pinned)
    /// or `other`.
    pub role: &'static str,
    /// Not idle and not waiting for I/O (user, system, interrupts, steal).
    pub busy: f64,
    /// Taken by the hypervisor for someone else.
    pub steal: f64,
    /// Of which interrupts and softirqs (network receive runs there).
    pub irq: f64,
}

/// Each CPU's shares between two samples, with the role `role_of` gives it;
/// CPUs with no ticks in between are left out.
pub fn shares(
    before: &[CpuTicks],
    after: &[CpuTicks],
    role_of: impl Fn(usize) -> &'static str,
) -> Vec<CpuShare> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.cpu == a.cpu)?;
            let total = a.total().checked_sub(b.total()).filter(|&t| t > 0)? as f64;
            let d = |x: u64, y: u64| x.saturating_sub(y) as f64 / total;
            let idle = d(a.idle, b.idle) + d(a.iowait, b.iowait);
            Some(CpuShare {
                cpu: a.cpu,
                role: role_of(a.cpu),
                busy: (1.0 - idle).max(0.0),
                steal: d(a.steal, b.steal),
                irq: d(a.irq, b.irq) + d(a.softirq, b.softirq),
            })
        })
        .collect()
}

/// The summary line: each CPU's role, busy and steal percentages.
pub fn summary_line(shares: &[CpuShare]) -> Option<String> {
    if shares.is_empty() {
        return None;
    }
    let parts: Vec<String> = shares
        .iter()
        .map(|s| {
            format!(
                "CPU {} ({}) busy {:.0}%, steal {:.1}%, interrupts {:.1}%",
                s.cpu,
                s.role,
                100.0 * s.busy,
                100.0 * s.steal,
                100.0 * s.irq
            )
        })
        .collect();
    Some(format!("machine while the load ran: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  4964022 0 706081 4638763 610590 0 39339 32935 0 0\n\
        cpu0 100 0 50 800 40 0 10 0 0 0\n\
        cpu1 200 5 100 600 0 0 0 95 0 0\n\
        intr 1 2 3\n";
    const AFTER: &str = "cpu  4964022 0 706081 4638763 610590 0 39339 32935 0 0\n\
        cpu0 160 0 80 800 40 0 20 0 0 0\n\
        cpu1 220 5 110 640 10 0 0 115 0 0\n\
        cpu2 1 1 1 1 1 1 1 1\n";

    #[test]
    fn per_cpu_lines_are_read_and_the_total_line_is_not() {
        let cpus = parse_proc_stat_cpus(BEFORE);
        assert_eq!(cpus.len(), 2);
        assert_eq!(
            cpus[1],
            CpuTicks {
                cpu: 1,
                user: 200,
                nice: 5,
                system: 100,
                idle: 600,
                iowait: 0,
                irq: 0,
                softirq: 0,
                steal: 95,
            }
        );
        // A kernel without the steal column.
        assert_eq!(parse_proc_stat_cpus("cpu3 1 2 3 4 5 6 7\n")[0].steal, 0);
        assert!(parse_proc_stat_cpus("cpu3 1 2\n").is_empty());
    }

    #[test]
    fn shares_are_fractions_of_each_cpus_ticks_in_between() {
        let role = |cpu| if cpu == 0 { "appliance" } else { "harness" };
        let shares = shares(
            &parse_proc_stat_cpus(BEFORE),
            &parse_proc_stat_cpus(AFTER),
            role,
        );
        // cpu2 has no earlier sample: left out.
        assert_eq!(shares.len(), 2);
        // cpu0: 100 ticks, none idle.
        assert_eq!(shares[0].role, "appliance");
        assert!((shares[0].busy - 1.0).abs() < 1e-9);
        assert!((shares[0].irq - 0.1).abs() < 1e-9);
        assert_eq!(shares[0].steal, 0.0);
        // cpu1: 100 ticks, 40 idle and 10 iowait, 20 steal.
        assert!((shares[1].busy - 0.5).abs() < 1e-9);
        assert!((shares[1].steal - 0.2).abs() < 1e-9);
        assert_eq!(
            summary_line(&shares).unwrap(),
            "machine while the load ran: CPU 0 (appliance) busy 100%, steal 0.0%, interrupts 10.0%; \
             CPU 1 (harness) busy 50%, steal 20.0%, interrupts 0.0%"
        );
        assert_eq!(summary_line(&[]), None);
    }
}
