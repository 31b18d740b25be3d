//! Where the kernel processes what arrives on the loopback device: its
//! receive packet steering (RPS), `/sys/class/net/lo/queues/rx-N/rps_cpus`.
//!
//! On loopback nothing is received from a wire: a segment is "received"
//! on the CPU that sends it, in that CPU's softirq. The sender's segments
//! land on the harness's CPU; the appliance's ACKs land on the
//! appliance's, and an ACK that opens the window sends the sender's
//! queued data from there, BBR's pacing timers included. So part of the
//! harness's transmit runs on the CPU a bench measures: without steering,
//! softirqs were 4.2% of the core's samples flat out over TCP, and with
//! `lo`'s RPS on the harness's CPU the node parsed more lines per second:
//! medians of the within-round ratios 1.15, 1.14 and 1.04 over three
//! alternated runs (BENCHMARKS.md, 2026-12-07 19:48 UTC). A deployment's NIC
//! puts its receive work where its interrupts and RPS say; an appliance
//! vendor steers it off the cores, as Seastar's perftune does.
//!
//! `--steer-loopback` makes that so for one load: [`Steering::to`] writes
//! the harness's CPUs into every `lo` receive queue's mask and puts each
//! previous mask back when dropped. Every report says what `lo`'s steering
//! was while the load ran ([`LoopbackRps`]). The harness changes nothing
//! else on the host, and nothing at all without the flag.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::interrupt::{doing, Registered, Undo};

/// The loopback device's receive queues.
pub const LO_QUEUES: &str = "/sys/class/net/lo/queues";

/// The CPUs set in a kernel CPU mask (`2`, `00000000,00000002`: hex, in
/// 32-bit groups separated by commas, the highest first); `None` when it
/// is not one.
pub fn parse_mask(text: &str) -> Option<Vec<usize>> {
    let digits: Vec<u32> = text
        .trim()
        .chars()
        .filter(|&c| c != ',')
        .map(|c| c.to_digit(16))
        .collect::<Option<_>>()?;
    if digits.is_empty() {
        return None;
    }
    let mut cpus = Vec::new();
    for (position, digit) in digits.iter().rev().enumerate() {
        for bit in 0..4 {
            if digit & (1 << bit) != 0 {
                cpus.push(position * 4 + bit);
            }
        }
    }
    Some(cpus)
}

/// The mask for `cpus` as the kernel writes one: 32-bit groups of eight
/// hex digits, the highest first, separated by commas (`0` for none).
pub fn format_mask(cpus: &[usize]) -> String {
    let Some(&highest) = cpus.iter().max() else {
        return "0".into();
    };
    let mut groups = vec![0u32; highest / 32 + 1];
    for &cpu in cpus {
        groups[cpu / 32] |= 1 << (cpu % 32);
    }
    groups
        .iter()
        .rev()
        .map(|g| format!("{g:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `rps_cpus` files of the receive queues under `queues`, in order.
fn mask_files(queues: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(queues)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("rx-"))
                .map(|entry| entry.path().join("rps_cpus"))
                .filter(|file| file.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The CPUs any receive queue under `queues` steers to (empty: none
/// steers, the kernel's default); `None` when there is no mask to read
/// (no such device, or a kernel without RPS).
pub fn steered_cpus(queues: &Path) -> Option<Vec<usize>> {
    let files = mask_files(queues);
    if files.is_empty() {
        return None;
    }
    let mut cpus = Vec::new();
    for file in files {
        for cpu in parse_mask(&std::fs::read_to_string(file).ok()?)? {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    cpus.sort_unstable();
    Some(cpus)
}

/// The receive queues' mask files under `queues`, or why there are none.
fn masks_to_steer(queues: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files = mask_files(queues);
    if files.is_empty() {
        anyhow::bail!(
            "{} has no receive queue with an rps_cpus mask (a kernel without RPS?)",
            queues.display()
        );
    }
    Ok(files)
}

/// What a refused write of `file` says.
fn cannot_write(file: &Path) -> String {
    format!(
        "cannot write {} (steering loopback needs root or CAP_NET_ADMIN)",
        file.display()
    )
}

/// Fails, saying why, when `lo`'s receive masks cannot be written:
/// checked before an appliance is started for nothing.
pub fn check_writable() -> anyhow::Result<()> {
    for file in masks_to_steer(Path::new(LO_QUEUES))? {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .with_context(|| cannot_write(&file))?;
    }
    Ok(())
}

/// For a command whose runs will steer: fails, saying why, when the masks
/// cannot be written, and otherwise tells once on stderr how to put them
/// back should it be killed with SIGKILL, which it cannot undo (`who`
/// names the command; other signals are undone by `interrupt`).
pub fn check_before_runs(who: &str) -> anyhow::Result<()> {
    check_writable().context("--steer-loopback")?;
    eprintln!(
        "shardwatch-load: {who} steer loopback's receive work and put it back; if this is killed with SIGKILL first: {}",
        undo_commands_now()
    );
    Ok(())
}

/// Shell commands that write each mask back: `echo MASK > FILE; …`.
fn echo_commands<'a>(masks: impl Iterator<Item = (&'a Path, &'a str)>) -> String {
    masks
        .map(|(file, mask)| format!("echo {} > {}", mask.trim(), file.display()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The commands that would put `lo`'s receive masks back as they are
/// now: told once by a command whose runs will steer, for a harness
/// killed with SIGKILL before it could.
fn undo_commands_now() -> String {
    let now: Vec<(PathBuf, String)> = mask_files(Path::new(LO_QUEUES))
        .into_iter()
        .filter_map(|file| Some((file.clone(), std::fs::read_to_string(&file).ok()?)))
        .collect();
    echo_commands(now.iter().map(|(f, m)| (f.as_path(), m.as_str())))
}

/// `lo`'s receive steering while a load ran, for its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopbackRps {
    /// The CPUs its receive queues steered to (empty: not steered).
    pub cpus: Vec<usize>,
    /// Set by the harness for the load (`--steer-loopback`), and put
    /// back after.
    pub steered_by_harness: bool,
    /// What the masks steered to before the harness set them.
    pub before: Option<Vec<usize>>,
}

impl LoopbackRps {
    /// `lo`'s steering as it is now, set by no one the harness knows of;
    /// `None` where there is no mask to read.
    pub fn of_this_machine() -> Option<LoopbackRps> {
        steered_cpus(Path::new(LO_QUEUES)).map(|cpus| LoopbackRps {
            cpus,
            steered_by_harness: false,
            before: None,
        })
    }

    /// The summary line: where the receive work ran, and for a stream
    /// load that left it on the appliance's CPU, what that costs.
    pub fn line(&self, stream: bool) -> Option<String> {
        if self.steered_by_harness {
            let before = match self.before.as_deref() {
                Some([]) | None => "off".to_string(),
                Some(cpus) => format!("CPUs {cpus:?}"),
            };
            return Some(format!(
                "machine: loopback receive processing steered to CPUs {:?} for the load (RPS on lo, \
                 --steer-loopback; it was {before} and is again): the sender's transmit that the \
                 appliance's ACKs set off runs there, not on the appliance's CPU",
                self.cpus
            ));
        }
        if !self.cpus.is_empty() {
            return Some(format!(
                "machine: loopback receive processing steered to CPUs {:?} by the host (RPS on lo)",
                self.cpus
            ));
        }
        stream.then(|| {
            "machine: loopback receive processing is not steered (RPS off on lo): the appliance's \
             ACKs send the sender's queued data from the appliance's CPU, and a bench counts that \
             against it (--steer-loopback moves it to the harness's CPUs; perf/README.md, \
             \"Loopback\")"
                .to_string()
        })
    }
}

/// While held, every receive queue under its directory steers to the
/// given CPUs; dropping it writes each queue's previous mask back.
pub struct Steering {
    /// Each mask file and the text it held before.
    saved: Vec<(PathBuf, String)>,
    /// The same, for a signal's undo should one end the harness first.
    registered: Vec<Registered>,
    before: Vec<usize>,
}

impl Steering {
    /// Steers `lo`'s receive processing to `cpus`.
    pub fn to(cpus: &[usize]) -> anyhow::Result<Steering> {
        Steering::to_in(Path::new(LO_QUEUES), cpus)
    }

    /// Steers every receive queue under `queues` to `cpus`. On an error
    /// the masks already written are put back first.
    pub fn to_in(queues: &Path, cpus: &[usize]) -> anyhow::Result<Steering> {
        if cpus.is_empty() {
            anyhow::bail!("no CPU to steer loopback receive processing to");
        }
        let files = masks_to_steer(queues)?;
        let before = steered_cpus(queues).unwrap_or_default();
        let mask = format_mask(cpus);
        let mut steering = Steering {
            saved: Vec::new(),
            registered: Vec::new(),
            before,
        };
        for file in files {
            let previous = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let previous = previous.trim().to_string();
            let ((), registered) = doing(|| {
                std::fs::write(&file, &mask).with_context(|| cannot_write(&file))?;
                let undo = Undo::Restore {
                    path: file.clone(),
                    contents: previous.clone(),
                };
                Ok(((), undo))
            })?;
            steering.registered.push(registered);
            steering.saved.push((file, previous));
        }
        Ok(steering)
    }

    /// What the masks steered to before.
    pub fn before(&self) -> &[usize] {
        &self.before
    }

    /// The commands that put the masks back by hand (for a harness killed
    /// with SIGKILL before it could).
    pub fn undo_commands(&self) -> String {
        echo_commands(self.saved.iter().map(|(f, m)| (f.as_path(), m.as_str())))
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        for (file, previous) in &self.saved {
            if let Err(err) = std::fs::write(file, previous) {
                eprintln!(
                    "shardwatch-load: warning: could not put {} back to {previous}: {err}",
                    file.display()
                );
            }
        }
        // Out of the registry only once written back.
        self.registered.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_read_and_write_as_the_kernel_does() {
        assert_eq!(parse_mask("0\n"), Some(vec![]));
        assert_eq!(parse_mask("2"), Some(vec![1]));
        assert_eq!(parse_mask("00000000,00000006\n"), Some(vec![1, 2]));
        assert_eq!(parse_mask("1,00000001"), Some(vec![0, 32]));
        assert_eq!(parse_mask("ff"), Some((0..8).collect()));
        assert_eq!(parse_mask(""), None);
        assert_eq!(parse_mask("0x2"), None);
        assert_eq!(format_mask(&[]), "0");
        assert_eq!(format_mask(&[1]), "00000002");
        assert_eq!(format_mask(&[0, 33]), "00000002,00000001");
        for cpus in [vec![1], vec![0, 5, 31], vec![2, 32, 63, 64]] {
            assert_eq!(parse_mask(&format_mask(&cpus)), Some(cpus));
        }
    }

    /// A queue directory as sysfs lays it out: `rx-N/rps_cpus` beside
    /// transmit queues that must be left alone.
    fn fake_queues(masks: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shardwatch-steer-test-{}-{}",
            std::process::id(),
            crate::clock::now_ns()
        ));
        for (i, mask) in masks.iter().enumerate() {
            std::fs::create_dir_all(dir.join(format!("rx-{i}"))).unwrap();
            std::fs::write(dir.join(format!("rx-{i}/rps_cpus")), format!("{mask}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.join("tx-0")).unwrap();
        std::fs::write(dir.join("tx-0/xps_cpus"), "0\n").unwrap();
        dir
    }

    #[test]
    fn steering_writes_every_receive_queue_and_puts_each_back() {
        let dir = fake_queues(&["00000000", "00000001"]);
        assert_eq!(steered_cpus(&dir), Some(vec![0]));
        {
            let steering = Steering::to_in(&dir, &[1, 3]).unwrap();
            assert_eq!(steering.before(), &[0]);
            for rx in ["rx-0", "rx-1"] {
                let text = std::fs::read_to_string(dir.join(rx).join("rps_cpus")).unwrap();
                assert_eq!(text, "0000000a");
            }
            assert_eq!(steered_cpus(&dir), Some(vec![1, 3]));
            assert!(steering.undo_commands().contains("echo 00000001 > "));
            assert_eq!(
                std::fs::read_to_string(dir.join("tx-0/xps_cpus")).unwrap(),
                "0\n"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("rx-0/rps_cpus")).unwrap(),
            "00000000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("rx-1/rps_cpus")).unwrap(),
            "00000001"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_to_steer_is_an_error_not_a_silent_no_op() {
        let dir = fake_queues(&[]);
        let err = Steering::to_in(&dir, &[1]).err().unwrap().to_string();
        assert!(err.contains("no receive queue"), "{err}");
        assert_eq!(steered_cpus(&dir), None);
        let dir2 = fake_queues(&["0"]);
        let err = Steering::to_in(&dir2, &[]).err().unwrap().to_string();
        assert!(err.contains("no CPU"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir2.join("rx-0/rps_cpus")).unwrap(),
            "0\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&dir2).unwrap();
    }

    #[test]
    fn the_line_says_who_steered_and_warns_only_for_an_unsteered_stream() {
        let by_us = LoopbackRps {
            cpus: vec![1],
            steered_by_harness: true,
            before: Some(vec![]),
        };
        let line = by_us.line(true).unwrap();
        assert!(line.contains("steered to CPUs [1] for the load"), "{line}");
        assert!(line.contains("it was off and is again"), "{line}");
        let host = LoopbackRps {
            cpus: vec![1],
            steered_by_harness: false,
            before: None,
        };
        assert!(host.line(false).unwrap().contains("by the host"));
        let off = LoopbackRps {
            cpus: vec![],
            steered_by_harness: false,
            before: None,
        };
        assert!(off.line(true).unwrap().contains("not steered"));
        assert_eq!(off.line(false), None);
    }
}
