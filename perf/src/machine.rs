//! What the machine's CPUs did while a bench ran, from `/proc/stat`: how
//! busy each was, and how much time the hypervisor took from it (steal).
//! A number measured on a shared VM means little without it: a run whose
//! CPUs lost a tenth of their time to steal, or whose harness CPU was
//! saturated, is told apart from one that was not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// A thread's scheduler counters (`/proc/thread-self/schedstat`): time on
/// a CPU, time spent runnable but waiting for one, and timeslices run.
/// The sender's wait is the part of the harness's latency leg that is the
/// machine's doing (a CPU taken by the appliance's I/O threads, writeback
/// workers or other kernel threads), not the schedule's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SchedStat {
    pub on_cpu_ns: u64,
    pub waited_ns: u64,
    pub slices: u64,
}

impl SchedStat {
    /// Parses the three numbers of a `schedstat` file.
    pub fn parse(text: &str) -> Option<SchedStat> {
        let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
        Some(SchedStat {
            on_cpu_ns: fields.next()?.ok()?,
            waited_ns: fields.next()?.ok()?,
            slices: fields.next()?.ok()?,
        })
    }

    /// The calling thread's counters now; `None` where the kernel keeps
    /// none (built without `CONFIG_SCHED_INFO`) or the file is unreadable.
    pub fn of_this_thread() -> Option<SchedStat> {
        SchedStat::parse(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &SchedStat) -> SchedStat {
        SchedStat {
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            waited_ns: self.waited_ns.saturating_sub(earlier.waited_ns),
            slices: self.slices.saturating_sub(earlier.slices),
        }
    }

    /// Two threads' counters together.
    pub fn plus(&self, other: &SchedStat) -> SchedStat {
        SchedStat {
            on_cpu_ns: self.on_cpu_ns + other.on_cpu_ns,
            waited_ns: self.waited_ns + other.waited_ns,
            slices: self.slices + other.slices,
        }
    }
}

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

/// Keeps the calling thread, and every thread it spawns from now on, on
/// `cpus`. False when the kernel refused.
pub fn pin_to(cpus: &[usize]) -> bool {
    // SAFETY: as in `allowed_cpus`; CPU_SET is given indices below
    // CPU_SETSIZE only.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
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

/// A kernel CPU list (`0-3,6`) as CPU numbers; parts that do not parse are
/// left out.
pub fn parse_cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bounds = match part.split_once('-') {
            Some((first, last)) => first.parse::<usize>().ok().zip(last.parse::<usize>().ok()),
            None => part.parse::<usize>().ok().map(|cpu| (cpu, cpu)),
        };
        if let Some((first, last)) = bounds {
            cpus.extend(first..=last.min(first + 4096));
        }
    }
    cpus
}

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Field `n` (numbered from 1 as in proc(5), 3 or more) of a
/// `/proc/<pid>/stat` line. The name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn proc_stat_field(line: &str, n: usize) -> Option<&str> {
    line.get(line.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(n.checked_sub(3)?)
}

/// The name and flags (field 9) in a `/proc/<pid>/stat` line.
fn stat_name_and_flags(line: &str) -> Option<(String, u64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_string();
    let flags = proc_stat_field(line, 9)?.parse().ok()?;
    Some((name, flags))
}

fn is_kernel_thread(flags: u64) -> bool {
    flags & PF_KTHREAD != 0
}

/// One kernel thread's time on a CPU, as sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelThreadSample {
    pub name: String,
    pub on_cpu_ns: u64,
}

/// Every kernel thread's time on a CPU now (`/proc/<pid>/schedstat`), by
/// pid; empty where the kernel keeps no `schedstat`.
pub fn kernel_threads_now() -> BTreeMap<u32, KernelThreadSample> {
    let mut threads = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((name, flags)) = stat_name_and_flags(&stat) else {
            continue;
        };
        if !is_kernel_thread(flags) {
            continue;
        }
        let Some(sched) = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
            .ok()
            .and_then(|t| SchedStat::parse(&t))
        else {
            continue;
        };
        threads.insert(
            pid,
            KernelThreadSample {
                name,
                on_cpu_ns: sched.on_cpu_ns,
            },
        );
    }
    threads
}

/// A kernel thread that ran while the load was sent: how long, and the
/// CPUs it may run on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelThreadTime {
    pub name: String,
    pub pid: u32,
    pub on_cpu_ms: f64,
    pub allowed_cpus: Vec<usize>,
}

/// The kernel threads that ran at least `min_ns` between two samples,
/// longest first, with the CPUs each may run on (`allowed_of(pid)`).
pub fn kernel_threads_between(
    before: &BTreeMap<u32, KernelThreadSample>,
    after: &BTreeMap<u32, KernelThreadSample>,
    min_ns: u64,
    allowed_of: impl Fn(u32) -> Vec<usize>,
) -> Vec<KernelThreadTime> {
    let mut ran: Vec<KernelThreadTime> = after
        .iter()
        .filter_map(|(&pid, a)| {
            // A thread started meanwhile ran all of its time in between.
            let earlier = before.get(&pid).map_or(0, |b| b.on_cpu_ns);
            let ns = a.on_cpu_ns.saturating_sub(earlier);
            (ns >= min_ns).then(|| KernelThreadTime {
                name: a.name.clone(),
                pid,
                on_cpu_ms: ns as f64 / 1e6,
                allowed_cpus: allowed_of(pid),
            })
        })
        .collect();
    ran.sort_by(|a, b| b.on_cpu_ms.total_cmp(&a.on_cpu_ms));
    ran
}

/// The CPUs a process may run on (`Cpus_allowed_list` of its status).
pub fn allowed_cpus_of(pid: u32) -> Vec<usize> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(parse_cpu_list))
        })
        .unwrap_or_default()
}

/// Kernel threads listed in a summary line at most.
const KERNEL_THREADS_LISTED: usize = 5;

/// The summary line: the kernel threads that may run on `cpus` (the
/// appliance's) and ran while the load was sent, longest first. Each ran
/// in stretches the appliance's core may have waited behind: on the
/// development VM, DAMON's `kdamond.0` took slices of up to 10 ms on the
/// core's CPU (BENCHMARKS.md, 2026-12-07 22:50 UTC).
pub fn kernel_threads_line(threads: &[KernelThreadTime], cpus: &[usize]) -> Option<String> {
    let on: Vec<&KernelThreadTime> = threads
        .iter()
        .filter(|t| t.allowed_cpus.iter().any(|c| cpus.contains(c)))
        .collect();
    if on.is_empty() || cpus.is_empty() {
        return None;
    }
    let total: f64 = on.iter().map(|t| t.on_cpu_ms).sum();
    let listed: Vec<String> = on
        .iter()
        .take(KERNEL_THREADS_LISTED)
        .map(|t| {
            let cpus = if t.allowed_cpus.len() == 1 {
                format!("CPU {}", t.allowed_cpus[0])
            } else {
                format!("CPUs {:?}", t.allowed_cpus)
            };
            format!("{} {:.1} ms ({cpus})", t.name, t.on_cpu_ms)
        })
        .collect();
    Some(format!(
        "machine: kernel threads allowed on CPUs {cpus:?} ran {total:.1} ms while the load was sent{}: {} (a core waits behind one that runs on its CPU)",
        if on.len() > KERNEL_THREADS_LISTED {
            format!(" ({} threads, the longest {KERNEL_THREADS_LISTED})", on.len())
        } else {
            String::new()
        },
        listed.join(", ")
    ))
}

/// Virtio device id of a memory balloon (`/sys/bus/virtio/devices/*/device`).
const VIRTIO_ID_BALLOON: &str = "0x0005";
/// Feature bit of a balloon that takes back the memory its guest frees
/// (`VIRTIO_BALLOON_F_REPORTING`); `features` there is one `0`/`1` per bit,
/// bit 0 first.
const BALLOON_F_REPORTING: usize = 5;

/// Whether the hypervisor takes back the memory this machine frees
/// (virtio-balloon free page reporting), and how much it has taken since
/// boot where the kernel says (the `reported_kib` module parameter of
/// `page_reporting`, which not every kernel has).
///
/// Such memory is faulted in again from the host when the kernel next
/// hands it out, so page-cache writes into new pages (the journal) and
/// first touches of fresh allocations cost more than on bare metal, and
/// more the longer the memory lay free: on the 2-core VM of BENCHMARKS.md
/// a 2 GB `dd` into a new file ran at 1.3–2.0 GB/s when the memory had been
/// free for 5 s and 3.6–4.5 GB/s right after it was freed, and the copy
/// into the page cache took 30% of a flat-out node's CPU in some runs and
/// 5% in others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FreePageReporting {
    /// KiB the kernel has reported to the host since boot.
    pub reported_kib: Option<u64>,
}

/// A virtio device that is a balloon with free page reporting negotiated.
pub fn is_reporting_balloon(device: &str, features: &str) -> bool {
    device.trim() == VIRTIO_ID_BALLOON
        && features.trim().as_bytes().get(BALLOON_F_REPORTING) == Some(&b'1')
}

/// Whether a bound virtio balloon reports freed pages to the host.
pub fn free_page_reporting_on() -> bool {
    let Ok(devices) = std::fs::read_dir("/sys/bus/virtio/devices") else {
        return false;
    };
    devices.flatten().any(|d| {
        let path = d.path();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).unwrap_or_default();
        path.join("driver").exists() && is_reporting_balloon(&read("device"), &read("features"))
    })
}

/// KiB reported to the host since boot, where the kernel counts it.
pub fn reported_kib() -> Option<u64> {
    std::fs::read_to_string("/sys/module/page_reporting/parameters/reported_kib")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The summary line for a run on a machine whose freed memory the host
/// takes back.
pub fn reporting_line(reporting: &FreePageReporting) -> String {
    let during = reporting
        .reported_kib
        .map(|kib| format!(", {} MiB handed back since boot", kib / 1024))
        .unwrap_or_default();
    format!(
        "machine: the hypervisor takes back freed memory (virtio-balloon free page reporting{during}); \
         new page-cache pages (the journal) and fresh allocations are faulted in again from the host, \
         so the appliance's system time here can be 2-3x what bare metal spends: compare builds \
         alternated within one run, or with `[storage] journal = false` (--appliance-config)"
    )
}

/// How this machine's idle CPUs wait for work, where the kernel says: the
/// cpuidle driver, and under a KVM guest's `haltpoll` driver how long an
/// idle vCPU polls for work before it halts (`guest_halt_poll_ns`).
///
/// A halted vCPU runs again only when the host wakes it, so every wake-up
/// of a thread on an idle CPU (the appliance's core when a write arrives,
/// the alert writer, the harness's sender and collector) waits for the
/// host: 0.1–0.3 ms at the median on the 2-core VM of BENCHMARKS.md, which
/// halts at once (`haltpoll.guest_halt_poll_ns=0` on its kernel command
/// line). A detection crosses several such wake-ups, so its latency there
/// says as much about the VM as about the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleHalt {
    /// `/sys/devices/system/cpu/cpuidle/current_driver`.
    pub driver: String,
    /// `/sys/module/haltpoll/parameters/guest_halt_poll_ns`, under the
    /// `haltpoll` driver.
    pub guest_halt_poll_ns: Option<u64>,
}

impl IdleHalt {
    /// From the two files' contents (`poll_ns` only read under `haltpoll`).
    pub fn parse(driver: &str, poll_ns: Option<&str>) -> Option<IdleHalt> {
        let driver = driver.trim();
        if driver.is_empty() {
            return None;
        }
        let guest_halt_poll_ns = if driver == "haltpoll" {
            poll_ns.and_then(|text| text.trim().parse().ok())
        } else {
            None
        };
        Some(IdleHalt {
            driver: driver.to_string(),
            guest_halt_poll_ns,
        })
    }

    /// This machine's, where the kernel exposes its cpuidle driver.
    pub fn of_this_machine() -> Option<IdleHalt> {
        let driver =
            std::fs::read_to_string("/sys/devices/system/cpu/cpuidle/current_driver").ok()?;
        let poll_ns =
            std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns").ok();
        IdleHalt::parse(&driver, poll_ns.as_deref())
    }

    /// Adds this to `report`: `idle_halt`, and the warning line where there
    /// is one.
    pub fn add_to(&self, report: &mut crate::report::Report) {
        report
            .body
            .insert("idle_halt".into(), serde_json::json!(self));
        if let Some(line) = self.line() {
            report.summary.push(line);
        }
    }

    /// The summary line for a guest whose idle vCPUs halt without polling
    /// first; `None` for any other idle setting (nothing to warn of).
    pub fn line(&self) -> Option<String> {
        (self.guest_halt_poll_ns == Some(0)).then(|| {
            "machine: an idle vCPU halts at once (cpuidle haltpoll, guest_halt_poll_ns 0), so \
             each wake-up of a thread on an idle CPU waits for the host (0.1-0.3 ms on the dev VM): \
             a detection's latency here holds several such waits (perf/README.md, \"Latency on a VM\")"
                .to_string()
        })
    }
}

/// What this machine's kernel charges for the steps a node takes on every
/// read of a paced load, measured by the harness just before it sends: a
/// system call, the first touch of a fresh page (every new page-cache page
/// of the journal, every new page of heap), and a wake-up of a sleeping
/// thread on another CPU and back (a write waking the node's core, the
/// core handing an alert to its writer). Where these are expensive, a node
/// at a modest paced rate spends much of its CPU on them, more the fewer
/// lines each wake-up brings: on the 2-core VM of BENCHMARKS.md (a nested
/// guest) a system call took 220 ns, a first touch 1.7 µs and a
/// cross-CPU round trip 40 µs, and a paced line cost 2.4 times a flat-out
/// one (2026-12-07 17:28 UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelCosts {
    /// `getppid` system calls: the median of [`COST_ROUNDS`] rounds, ns
    /// per call.
    pub syscall_ns: f64,
    /// The first write to each 4 KiB page of a fresh anonymous mapping
    /// (huge pages refused for it): the median of [`COST_ROUNDS`]
    /// mappings, ns per page.
    pub page_touch_ns: f64,
    /// The CPUs of the two threads that woke each other (the same CPU
    /// twice when the harness may use only one).
    pub wake_cpus: (usize, usize),
    /// Round trips between the two threads, each asleep (futex) until the
    /// other wakes it: median and p99, µs.
    pub wake_round_trip_p50_us: f64,
    pub wake_round_trip_p99_us: f64,
}

/// Rounds (or mappings) of each cost measured; the median is reported.
pub const COST_ROUNDS: usize = 5;
const SYSCALLS_PER_ROUND: u32 = 20_000;
const TOUCH_PAGES: usize = 4_096;
const WAKE_WARMUP: usize = 100;
const WAKE_ROUNDS: usize = 1_000;

impl KernelCosts {
    /// Measures the three costs, the wake-up between the first two of
    /// `cpus` (the first alone when there is one); about 0.1 s. `None`
    /// when a mapping or a thread could not be had.
    pub fn measure(cpus: &[usize]) -> Option<KernelCosts> {
        let syscall_ns = median((0..COST_ROUNDS).map(|_| syscall_round_ns()).collect())?;
        let page_touch_ns = median(
            (0..COST_ROUNDS)
                .map(|_| page_touch_round_ns())
                .collect::<Option<Vec<f64>>>()?,
        )?;
        let first = *cpus.first()?;
        let wake_cpus = (first, cpus.get(1).copied().unwrap_or(first));
        let mut trips = wake_round_trips_us(wake_cpus)?;
        trips.sort_by(f64::total_cmp);
        let at = |q: f64| trips[((trips.len() - 1) as f64 * q).round() as usize];
        Some(KernelCosts {
            syscall_ns,
            page_touch_ns,
            wake_cpus,
            wake_round_trip_p50_us: at(0.5),
            wake_round_trip_p99_us: at(0.99),
        })
    }

    /// The summary line of a run, whose costs were measured just before
    /// its load.
    pub fn line(&self) -> String {
        self.line_for("before the load")
    }

    /// The summary line, saying when the costs were measured (`when`).
    pub fn line_for(&self, when: &str) -> String {
        let between = if self.wake_cpus.0 == self.wake_cpus.1 {
            format!("on CPU {} alone", self.wake_cpus.0)
        } else {
            format!("between CPUs {} and {}", self.wake_cpus.0, self.wake_cpus.1)
        };
        format!(
            "machine: kernel costs {when}: a system call {:.0} ns, the first touch of a fresh page {:.2} us, \
             a wake-up round trip {between} p50 {:.1} us p99 {:.1} us",
            self.syscall_ns,
            self.page_touch_ns / 1_000.0,
            self.wake_round_trip_p50_us,
            self.wake_round_trip_p99_us
        )
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn syscall_round_ns() -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..SYSCALLS_PER_ROUND {
        // SAFETY: getppid takes no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    start.elapsed().as_nanos() as f64 / f64::from(SYSCALLS_PER_ROUND)
}

fn page_touch_round_ns() -> Option<f64> {
    const PAGE: usize = 4_096;
    let len = TOUCH_PAGES * PAGE;
    // SAFETY: a fresh private anonymous mapping, checked below, written
    // only within its length and unmapped before returning.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            return None;
        }
        // 4 KiB pages, as the page cache's and most of the heap's are.
        libc::madvise(map, len, libc::MADV_NOHUGEPAGE);
        let base = map.cast::<u8>();
        let start = std::time::Instant::now();
        for page in 0..TOUCH_PAGES {
            std::ptr::write_volatile(base.add(page * PAGE), 1);
        }
        let ns = start.elapsed().as_nanos() as f64 / TOUCH_PAGES as f64;
        libc::munmap(map, len);
        Some(ns)
    }
}

/// Rounds of the wake-up probe, warm-up included.
const WAKE_ALL_ROUNDS: u64 = (WAKE_WARMUP + WAKE_ROUNDS) as u64;

/// Round trips, µs, between a thread on `cpus.0` and one on `cpus.1`
/// that each sleep until the other wakes them; `None` when a thread could
/// not be started or kept on its CPU (the pair would be misnamed).
fn wake_round_trips_us(cpus: (usize, usize)) -> Option<Vec<f64>> {
    // Odd: the answering thread's turn; even: the asking thread's.
    let turn = Arc::new(AtomicU64::new(0));
    std::thread::Builder::new()
        .name("sw-load-wake".into())
        .spawn(move || ask(&turn, cpus))
        .ok()?
        .join()
        .ok()?
}

/// The asking side, on `cpus.0`: starts the answering thread on `cpus.1`
/// and times each round from its wake-up call to being woken back.
fn ask(turn: &Arc<AtomicU64>, cpus: (usize, usize)) -> Option<Vec<f64>> {
    if !pin_to(&[cpus.0]) {
        return None;
    }
    let answerer = {
        let (turn, asker) = (turn.clone(), std::thread::current());
        std::thread::Builder::new()
            .name("sw-load-wake2".into())
            .spawn(move || answer(&turn, &asker, cpus.1))
            .ok()?
    };
    let mut trips = Vec::with_capacity(WAKE_ROUNDS);
    for round in 0..WAKE_ALL_ROUNDS {
        let start = std::time::Instant::now();
        turn.store(2 * round + 1, Ordering::Release);
        answerer.thread().unpark();
        wait_for_turn(turn, 2 * round + 2);
        if round >= WAKE_WARMUP as u64 {
            trips.push(start.elapsed().as_nanos() as f64 / 1_000.0);
        }
    }
    answerer.join().ok()?.then_some(trips)
}

/// The answering side: wakes `asker` back every round, even where it
/// could not be pinned to `cpu` (so the asker is not left waiting);
/// returns whether it was.
fn answer(turn: &AtomicU64, asker: &std::thread::Thread, cpu: usize) -> bool {
    let pinned = pin_to(&[cpu]);
    for round in 0..WAKE_ALL_ROUNDS {
        wait_for_turn(turn, 2 * round + 1);
        turn.store(2 * round + 2, Ordering::Release);
        asker.unpark();
    }
    pinned
}

/// Sleeps until `turn` holds `value` (`park` may return early: it loops).
fn wait_for_turn(turn: &AtomicU64, value: u64) {
    while turn.load(Ordering::Acquire) != value {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
    }

    #[test]
    fn kernel_threads_are_told_by_their_flags_and_named_whole() {
        let kdamond = "107 (kdamond.0) S 2 0 0 0 -1 2129984 0 0 0 0 12 20 0 0 20 0 1 0";
        let (name, flags) = stat_name_and_flags(kdamond).unwrap();
        assert_eq!((name.as_str(), flags), ("kdamond.0", 2_129_984));
        assert!(is_kernel_thread(flags));
        let odd = "9 (a (b) c) R 1 9 9 0 -1 4194560 0";
        let (name, flags) = stat_name_and_flags(odd).unwrap();
        assert_eq!((name.as_str(), flags), ("a (b) c", 4_194_560));
        assert!(!is_kernel_thread(flags));
        assert_eq!(stat_name_and_flags("garbage"), None);
        // This machine's: kthreadd (pid 2) is one, this process is not.
        let now = kernel_threads_now();
        if std::path::Path::new("/proc/2/schedstat").exists() {
            assert_eq!(now.get(&2).map(|t| t.name.as_str()), Some("kthreadd"));
        }
        assert!(!now.contains_key(&std::process::id()));
    }

    #[test]
    fn kernel_threads_between_samples_longest_first_and_on_the_cpus_asked() {
        let sample = |name: &str, ns: u64| KernelThreadSample {
            name: name.into(),
            on_cpu_ns: ns,
        };
        let before = BTreeMap::from([
            (107, sample("kdamond.0", 5_000_000)),
            (15, sample("ksoftirqd/1", 1_000_000)),
            (30, sample("kworker/0:1", 0)),
        ]);
        let after = BTreeMap::from([
            (107, sample("kdamond.0", 35_000_000)),
            (15, sample("ksoftirqd/1", 9_000_000)),
            (30, sample("kworker/0:1", 50_000)),
            (40, sample("kworker/u8:7", 2_000_000)),
        ]);
        let allowed = |pid: u32| match pid {
            107 | 40 => vec![0, 1],
            15 => vec![1],
            _ => vec![0],
        };
        let ran = kernel_threads_between(&before, &after, 100_000, allowed);
        let names: Vec<&str> = ran.iter().map(|t| t.name.as_str()).collect();
        // Under 0.1 ms left out; a thread new since the first sample counted whole.
        assert_eq!(names, ["kdamond.0", "ksoftirqd/1", "kworker/u8:7"]);
        assert_eq!(ran[0].on_cpu_ms, 30.0);
        let line = kernel_threads_line(&ran, &[0]).unwrap();
        assert!(
            line.contains("allowed on CPUs [0] ran 32.0 ms")
                && line
                    .contains("kdamond.0 30.0 ms (CPUs [0, 1]), kworker/u8:7 2.0 ms (CPUs [0, 1])")
                && !line.contains("ksoftirqd/1"),
            "{line}"
        );
        assert_eq!(kernel_threads_line(&ran, &[5]), None);
        assert_eq!(kernel_threads_line(&[], &[0]), None);
    }

    #[test]
    fn schedstat_parses_and_subtracts() {
        let a = SchedStat::parse("1000 200 3\n").unwrap();
        assert_eq!(
            a,
            SchedStat {
                on_cpu_ns: 1000,
                waited_ns: 200,
                slices: 3
            }
        );
        let b = SchedStat::parse("5000 900 10").unwrap();
        assert_eq!(
            b.since(&a),
            SchedStat {
                on_cpu_ns: 4000,
                waited_ns: 700,
                slices: 7
            }
        );
        assert_eq!(SchedStat::parse("1 2"), None);
        assert_eq!(SchedStat::parse("x 2 3"), None);
        // This thread's own counters: its time on a CPU grows while it
        // spins (however long a busy machine keeps it waiting, up to 10 s).
        if let Some(before) = SchedStat::of_this_thread() {
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut ran = 0;
            while ran < 5_000_000 && std::time::Instant::now() < give_up {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(1);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                ran = SchedStat::of_this_thread()
                    .unwrap()
                    .since(&before)
                    .on_cpu_ns;
            }
            assert!(ran >= 5_000_000, "{before:?}: {ran} ns on a CPU");
        }
    }

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

    #[test]
    fn a_balloon_reports_free_pages_only_with_its_feature_bit() {
        // The features of this VM's balloon: bits 1, 2 and 5.
        let features = "0110010100000000000000000000000010000000\n";
        assert!(is_reporting_balloon("0x0005\n", features));
        // Bit 5 off.
        assert!(!is_reporting_balloon("0x0005", "0110000100000000"));
        // Another device (a block device) with bit 5 on.
        assert!(!is_reporting_balloon("0x0002", "0010011001100100"));
        assert!(!is_reporting_balloon("0x0005", "0110"));
        let line = reporting_line(&FreePageReporting {
            reported_kib: Some(2048 * 1024),
        });
        assert!(
            line.contains("reporting, 2048 MiB handed back since boot);"),
            "{line}"
        );
        let line = reporting_line(&FreePageReporting { reported_kib: None });
        assert!(
            line.contains("(virtio-balloon free page reporting);"),
            "{line}"
        );
    }

    #[test]
    fn a_guest_that_halts_at_once_is_named_and_others_are_not() {
        let halts = IdleHalt::parse("haltpoll\n", Some("0\n")).unwrap();
        assert_eq!(halts.guest_halt_poll_ns, Some(0));
        let line = halts.line().unwrap();
        assert!(line.contains("halts at once"), "{line}");
        // Polling first: no warning, the value kept for the report.
        let polls = IdleHalt::parse("haltpoll", Some("200000")).unwrap();
        assert_eq!(polls.guest_halt_poll_ns, Some(200_000));
        assert_eq!(polls.line(), None);
        // Bare metal: the poll parameter means nothing there, even if read.
        let metal = IdleHalt::parse("intel_idle\n", Some("0")).unwrap();
        assert_eq!(
            (metal.driver.as_str(), metal.guest_halt_poll_ns),
            ("intel_idle", None)
        );
        assert_eq!(metal.line(), None);
        // An unreadable poll value under haltpoll is not taken for zero.
        assert_eq!(IdleHalt::parse("haltpoll", Some("x")).unwrap().line(), None);
        assert_eq!(IdleHalt::parse(" \n", None), None);
    }

    #[test]
    fn kernel_costs_are_measured_and_read_as_one_line() {
        let cpus = allowed_cpus();
        let costs = KernelCosts::measure(&cpus).expect("measured");
        assert!(
            costs.syscall_ns > 0.0 && costs.syscall_ns.is_finite(),
            "{costs:?}"
        );
        assert!(
            costs.page_touch_ns > 0.0 && costs.page_touch_ns.is_finite(),
            "{costs:?}"
        );
        assert!(costs.wake_round_trip_p50_us > 0.0, "{costs:?}");
        assert!(
            costs.wake_round_trip_p99_us >= costs.wake_round_trip_p50_us,
            "{costs:?}"
        );
        assert!(cpus.contains(&costs.wake_cpus.0) && cpus.contains(&costs.wake_cpus.1));
        if cpus.len() > 1 {
            assert_ne!(costs.wake_cpus.0, costs.wake_cpus.1);
        }
        let line = KernelCosts {
            syscall_ns: 220.4,
            page_touch_ns: 1_720.0,
            wake_cpus: (0, 1),
            wake_round_trip_p50_us: 40.04,
            wake_round_trip_p99_us: 118.0,
        }
        .line();
        assert!(
            line.ends_with("a system call 220 ns, the first touch of a fresh page 1.72 us, a wake-up round trip between CPUs 0 and 1 p50 40.0 us p99 118.0 us"),
            "{line}"
        );
        let alone = KernelCosts {
            wake_cpus: (1, 1),
            ..costs
        };
        assert!(alone
            .line_for("at the end of the goals")
            .starts_with("machine: kernel costs at the end of the goals: a system call "));
        assert!(
            alone.line().contains("round trip on CPU 1 alone"),
            "{}",
            alone.line()
        );
    }
}
