//! Peak memory of the server's processes: `VmRSS` from `/proc/<pid>/status`
//! sampled every 200 ms during the run, and `VmHWM` read at its end.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the processes are sampled.
const EVERY: Duration = Duration::from_millis(200);

/// The value, in kB, of a field of `/proc/<pid>/status` such as
/// `VmRSS:    51200 kB` (a tab after the colon).
fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A field of a process's status; `None` once the process is gone.
fn read_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kb(&status, field)
}

/// The memory of one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    /// Highest `VmRSS` sampled, in kB.
    pub peak_rss_kb: u64,
    /// `VmHWM` (the peak since the process started) at the end of the run, in
    /// kB; `None` when the process was gone by then.
    pub hwm_kb: Option<u64>,
    /// Whether the process was missing from a sample: it exited (or never
    /// existed) during the run.
    pub gone: bool,
}

/// The memory of every given process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryReport {
    pub processes: Vec<ProcessMemory>,
    /// Highest sum of the processes' `VmRSS` within one sample, in kB.
    pub peak_rss_sum_kb: u64,
    pub samples: u64,
}

impl MemoryReport {
    fn new(pids: &[u32]) -> Self {
        Self {
            processes: pids
                .iter()
                .map(|&pid| ProcessMemory {
                    pid,
                    peak_rss_kb: 0,
                    hwm_kb: None,
                    gone: false,
                })
                .collect(),
            peak_rss_sum_kb: 0,
            samples: 0,
        }
    }

    /// Takes in one sample: each process's `VmRSS`, `None` when it is gone.
    fn observe(&mut self, rss_kb: &[Option<u64>]) {
        let mut sum = 0;
        for (process, rss) in self.processes.iter_mut().zip(rss_kb) {
            match rss {
                Some(kb) => {
                    process.peak_rss_kb = process.peak_rss_kb.max(*kb);
                    sum += kb;
                }
                None if !process.gone => {
                    process.gone = true;
                    eprintln!("herald-bench: process {} is gone", process.pid);
                }
                None => {}
            }
        }
        self.peak_rss_sum_kb = self.peak_rss_sum_kb.max(sum);
        self.samples += 1;
    }

    fn sample(&mut self) {
        let rss: Vec<_> = self
            .processes
            .iter()
            .map(|p| read_kb(p.pid, "VmRSS"))
            .collect();
        self.observe(&rss);
    }
}

/// Samples the processes in the background until [`Sampler::finish`].
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<MemoryReport>,
}

impl Sampler {
    pub fn start(pids: &[u32]) -> Self {
        let mut report = MemoryReport::new(pids);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = every.tick() => report.sample(),
                }
            }
            report
        });
        Self { stop, task }
    }

    /// Stops sampling, takes a last sample and reads each process's `VmHWM`.
    pub async fn finish(self) -> anyhow::Result<MemoryReport> {
        let _ = self.stop.send(());
        let mut report = self.task.await?;
        report.sample();
        for process in &mut report.processes {
            process.hwm_kb = read_kb(process.pid, "VmHWM");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\therald\nVmPeak:\t  900000 kB\nVmHWM:\t   61440 kB\n\
                          VmRSS:\t   51200 kB\nThreads:\t9\n";

    #[test]
    fn reads_status_fields() {
        assert_eq!(status_kb(STATUS, "VmRSS"), Some(51_200));
        assert_eq!(status_kb(STATUS, "VmHWM"), Some(61_440));
        assert_eq!(status_kb(STATUS, "VmSwap"), None);
        assert_eq!(status_kb(STATUS, "Threads"), None);
        assert_eq!(status_kb("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn peaks_per_process_and_of_the_sum() {
        let mut report = MemoryReport::new(&[10, 20]);
        report.observe(&[Some(100), Some(50)]);
        report.observe(&[Some(120), Some(10)]);
        report.observe(&[Some(90), None]);
        let peaks: Vec<_> = report
            .processes
            .iter()
            .map(|p| (p.peak_rss_kb, p.gone))
            .collect();
        assert_eq!(peaks, [(120, false), (50, true)]);
        assert_eq!(report.peak_rss_sum_kb, 150);
        assert_eq!(report.samples, 3);
    }

    #[tokio::test]
    async fn samples_this_process_and_reports_a_missing_one() {
        let me = std::process::id();
        // Pids never exceed 2^22 on Linux.
        let report = Sampler::start(&[me, u32::MAX]).finish().await.unwrap();
        assert!(report.processes[0].peak_rss_kb > 0, "{report:?}");
        assert!(report.processes[0].hwm_kb.unwrap() > 0, "{report:?}");
        assert!(report.processes[1].gone && report.processes[1].hwm_kb.is_none());
        assert_eq!(report.peak_rss_sum_kb, report.processes[0].peak_rss_kb);
    }
}
