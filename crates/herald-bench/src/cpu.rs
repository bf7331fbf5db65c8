//! CPU time over the load: `utime` + `stime` of each `--server-pid`,
//! `--cpu-pid` and `--cpu-pid-tree` process from `/proc/<pid>/stat`, and the
//! whole machine's busy time from `/proc/stat`, read when the load starts and
//! when it ends. Divided by the accepted messages and the deliveries, it gives
//! a cost that compares across machines better than throughput does.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::report::round3;

/// Clock ticks per second when `getconf CLK_TCK` cannot say: Linux's `USER_HZ`
/// on every common architecture.
const DEFAULT_CLK_TCK: u64 = 100;

/// What `/proc/<pid>/stat` says of one process.
#[derive(Debug, Clone, PartialEq)]
struct ProcStat {
    pid: u32,
    /// The command name (`comm`), at most 15 bytes, any characters.
    comm: String,
    ppid: u32,
    /// When the process started, in ticks after boot: with the pid, it tells a
    /// process from a later one that reused its pid.
    start_time: u64,
    /// `utime` + `stime`: user and system time of all its threads, in ticks.
    ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line: `pid (comm) state ppid … utime stime …`.
/// `comm` may hold spaces and parentheses, so the fields are counted from the
/// last `)`.
fn parse_pid_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    // Field 3 (state) is rest[0]: field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_owned(),
        ppid: u32::try_from(field(4)?).ok()?,
        start_time: field(22)?,
        ticks: field(14)?.checked_add(field(15)?)?,
    })
}

/// The whole machine's time from `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MachineTicks {
    /// user + nice + system + irq + softirq + steal, all cpus.
    busy: u64,
    /// `busy` + idle + iowait.
    total: u64,
    /// The `cpuN` lines.
    cpus: usize,
}

/// Reads the aggregate `cpu` line of `/proc/stat`: `cpu user nice system idle
/// iowait irq softirq steal guest guest_nice`. Guest time is already part of
/// user (and nice) time, so it is not added again.
fn parse_machine_stat(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // Old kernels lack the later fields (iowait, irq, softirq, steal): zero.
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    let (user, nice, system, idle, iowait) = (at(0), at(1), at(2), at(3), at(4));
    let (irq, softirq, steal) = (at(5), at(6), at(7));
    let busy = user + nice + system + irq + softirq + steal;
    let cpus = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some(MachineTicks {
        busy,
        total: busy + idle + iowait,
        cpus,
    })
}

/// The output of `getconf CLK_TCK`.
fn parse_clk_tck(output: &str) -> Option<u64> {
    output.trim().parse().ok().filter(|&hz| hz > 0)
}

/// Ticks per second of `/proc`'s times (`USER_HZ`), from `getconf CLK_TCK`
/// (the workspace forbids the unsafe `sysconf` call); 100 when that fails.
fn clk_tck() -> u64 {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    match output {
        Ok(out) if out.status.success() => {
            if let Some(hz) = parse_clk_tck(&String::from_utf8_lossy(&out.stdout)) {
                return hz;
            }
        }
        _ => {}
    }
    eprintln!(
        "herald-bench: warning: `getconf CLK_TCK` failed; assuming {DEFAULT_CLK_TCK} clock ticks/s"
    );
    DEFAULT_CLK_TCK
}

/// One process's stat; `None` once it is gone.
fn read_pid_stat(pid: u32) -> Option<ProcStat> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn read_machine() -> Option<MachineTicks> {
    parse_machine_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Every process in `/proc` (processes, not threads: a process's stat covers
/// all its threads). Processes that exit while being read are skipped.
fn read_all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        read_pid_stat(pid)
    })
    .collect()
}

/// The processes of a tree, by (pid, start time), with their ticks.
type Members = BTreeMap<(u32, u64), u64>;

/// `root` and all its descendants among `all`, by their `ppid`; `None` when
/// `root` is not there.
fn tree_members(root: u32, all: &[ProcStat]) -> Option<Members> {
    let root = all.iter().find(|p| p.pid == root)?;
    let mut children: BTreeMap<u32, Vec<&ProcStat>> = BTreeMap::new();
    for p in all {
        // The idle task and kthreadd have ppid 0; pid 1 is nobody's child.
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p);
        }
    }
    let mut members = Members::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if members.insert((p.pid, p.start_time), p.ticks).is_none() {
            todo.extend(children.get(&p.pid).into_iter().flatten());
        }
    }
    Some(members)
}

/// The ticks a tree used between two readings: each process alive at both
/// its difference, one started since then all of its time. A process that
/// exited in between is lost, with whatever it used; it is counted in
/// `exited`.
fn tree_delta(start: &Members, end: &Members) -> (u64, usize) {
    let ticks = end
        .iter()
        .map(|(key, &ticks)| ticks.saturating_sub(start.get(key).copied().unwrap_or(0)))
        .sum();
    let exited = start.keys().filter(|key| !end.contains_key(key)).count();
    (ticks, exited)
}

/// Which option named a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuKind {
    /// `--server-pid`: a process of the server under test.
    Server,
    /// `--cpu-pid`: another process, e.g. a PostgreSQL backend or RabbitMQ.
    CpuPid,
    /// `--cpu-pid-tree`: a process and all its descendants.
    CpuPidTree,
}

/// The CPU time one process (or tree) used during the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessCpu {
    pub pid: u32,
    pub kind: CpuKind,
    /// Its command name (`comm`) at the start.
    pub name: Option<String>,
    /// `utime` + `stime` used during the load, in seconds; `None` when the
    /// process was gone at the start or at the end.
    pub cpu_secs: Option<f64>,
    /// Whether the process was missing at the start or at the end (or its pid
    /// belonged to another process by then).
    pub gone: bool,
    /// `--cpu-pid-tree`: the processes counted (the root and its descendants
    /// alive at the end).
    pub tree_processes: Option<usize>,
    /// `--cpu-pid-tree`: descendants alive at the start that had exited by
    /// the end; what they used during the load is not counted.
    pub tree_exited: Option<usize>,
}

/// The whole machine's busy time during the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineCpu {
    pub cpus: usize,
    /// user + nice + system + irq + softirq + steal of all cpus (not idle or
    /// iowait), in seconds: everything that ran, the bench included.
    pub busy_cpu_secs: f64,
    /// `busy_cpu_secs` as a share of all the cpus' time, in percent.
    pub busy_percent: f64,
    pub ms_per_message: Option<f64>,
    pub ms_per_delivery: Option<f64>,
}

/// The CPU cost of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuReport {
    /// `USER_HZ`: the resolution of every figure here is one tick.
    pub clock_ticks_per_sec: u64,
    /// Wall time between the two readings.
    pub window_secs: f64,
    pub processes: Vec<ProcessCpu>,
    /// Summed over the `--server-pid` processes (gone ones not counted).
    pub server_cpu_secs: f64,
    /// Summed over the `--cpu-pid` and `--cpu-pid-tree` processes.
    pub extra_cpu_secs: f64,
    /// `server_cpu_secs` + `extra_cpu_secs`.
    pub total_cpu_secs: f64,
    pub server_ms_per_message: Option<f64>,
    pub extra_ms_per_message: Option<f64>,
    /// `total_cpu_secs` per accepted message, in milliseconds.
    pub total_ms_per_message: Option<f64>,
    /// `total_cpu_secs` per delivery received, in milliseconds.
    pub total_ms_per_delivery: Option<f64>,
    /// herald-bench's own process (sender and receiver): part of the
    /// machine's busy time when it runs on the server's machine.
    pub bench_cpu_secs: Option<f64>,
    /// `None` when `/proc/stat` could not be read.
    pub machine: Option<MachineCpu>,
}

impl CpuReport {
    /// Fills in the costs per accepted message and per delivery received.
    pub fn with_costs(mut self, messages: u64, deliveries: u64) -> Self {
        let has = |kind: CpuKind| self.processes.iter().any(|p| p.kind == kind);
        let any = !self.processes.is_empty();
        let (server, extra) = (
            has(CpuKind::Server),
            has(CpuKind::CpuPid) || has(CpuKind::CpuPidTree),
        );
        self.server_ms_per_message = per(server, self.server_cpu_secs, messages);
        self.extra_ms_per_message = per(extra, self.extra_cpu_secs, messages);
        self.total_ms_per_message = per(any, self.total_cpu_secs, messages);
        self.total_ms_per_delivery = per(any, self.total_cpu_secs, deliveries);
        if let Some(machine) = &mut self.machine {
            machine.ms_per_message = per(true, machine.busy_cpu_secs, messages);
            machine.ms_per_delivery = per(true, machine.busy_cpu_secs, deliveries);
        }
        self
    }
}

/// `secs` per `count`, in milliseconds; `None` when nothing was measured or
/// counted.
fn per(measured: bool, secs: f64, count: u64) -> Option<f64> {
    (measured && count > 0).then(|| round3(secs * 1000.0 / count as f64))
}

/// One process (or tree) named on the command line, and its first reading.
struct Target {
    pid: u32,
    kind: CpuKind,
    /// The process itself at the start.
    start: Option<ProcStat>,
    /// `--cpu-pid-tree`: the tree at the start.
    tree: Option<Members>,
}

/// Reads the processes and the machine at [`Sampler::start`] and again at
/// [`Sampler::finish`].
pub struct Sampler {
    hz: u64,
    started: Instant,
    targets: Vec<Target>,
    bench: Option<ProcStat>,
    machine: Option<MachineTicks>,
}

impl Sampler {
    /// Takes the first reading. A pid given twice (or inside a tree as well)
    /// is counted twice.
    pub fn start(server_pids: &[u32], cpu_pids: &[u32], cpu_pid_trees: &[u32]) -> Self {
        let hz = clk_tck();
        let all = if cpu_pid_trees.is_empty() {
            Vec::new()
        } else {
            read_all()
        };
        let single = |kind| {
            move |&pid: &u32| Target {
                pid,
                kind,
                start: read_pid_stat(pid),
                tree: None,
            }
        };
        let mut targets: Vec<Target> = server_pids
            .iter()
            .map(single(CpuKind::Server))
            .chain(cpu_pids.iter().map(single(CpuKind::CpuPid)))
            .collect();
        targets.extend(cpu_pid_trees.iter().map(|&pid| Target {
            pid,
            kind: CpuKind::CpuPidTree,
            start: all.iter().find(|p| p.pid == pid).cloned(),
            tree: tree_members(pid, &all),
        }));
        for target in &targets {
            if target.start.is_none() {
                eprintln!("herald-bench: process {} is not running", target.pid);
            }
        }
        Self {
            hz,
            started: Instant::now(),
            targets,
            bench: read_pid_stat(std::process::id()),
            machine: read_machine(),
        }
    }

    /// Takes the second reading and reports the differences (without the
    /// costs per message: see [`CpuReport::with_costs`]).
    pub fn finish(self) -> CpuReport {
        let machine_end = read_machine();
        let bench_end = read_pid_stat(std::process::id());
        let window_secs = self.started.elapsed().as_secs_f64();
        let all = if self.targets.iter().any(|t| t.kind == CpuKind::CpuPidTree) {
            read_all()
        } else {
            Vec::new()
        };
        let secs = |ticks: u64| round3(ticks as f64 / self.hz as f64);
        let processes: Vec<ProcessCpu> = self
            .targets
            .iter()
            .map(|target| {
                let mut process = ProcessCpu {
                    pid: target.pid,
                    kind: target.kind,
                    name: target.start.as_ref().map(|p| p.comm.clone()),
                    cpu_secs: None,
                    gone: true,
                    tree_processes: None,
                    tree_exited: None,
                };
                if let (Some(start), Some(tree)) = (&target.start, &target.tree) {
                    let end = all
                        .iter()
                        .find(|p| p.pid == target.pid && p.start_time == start.start_time)
                        .and_then(|_| tree_members(target.pid, &all));
                    if let Some(end) = end {
                        let (ticks, exited) = tree_delta(tree, &end);
                        process.cpu_secs = Some(secs(ticks));
                        process.gone = false;
                        process.tree_processes = Some(end.len());
                        process.tree_exited = Some(exited);
                    }
                } else if let Some(start) = &target.start {
                    let end =
                        read_pid_stat(target.pid).filter(|p| p.start_time == start.start_time);
                    if let Some(end) = end {
                        process.cpu_secs = Some(secs(end.ticks.saturating_sub(start.ticks)));
                        process.gone = false;
                    }
                }
                if process.gone && target.start.is_some() {
                    eprintln!("herald-bench: process {} is gone", target.pid);
                }
                process
            })
            .collect();
        let sum = |server: bool| {
            round3(
                processes
                    .iter()
                    .filter(|p| (p.kind == CpuKind::Server) == server)
                    .filter_map(|p| p.cpu_secs)
                    .sum(),
            )
        };
        let (server_cpu_secs, extra_cpu_secs) = (sum(true), sum(false));
        let machine = match (self.machine, machine_end) {
            (Some(start), Some(end)) => {
                let busy = end.busy.saturating_sub(start.busy);
                let total = end.total.saturating_sub(start.total);
                Some(MachineCpu {
                    cpus: end.cpus,
                    busy_cpu_secs: secs(busy),
                    busy_percent: if total > 0 {
                        round3(busy as f64 * 100.0 / total as f64)
                    } else {
                        0.0
                    },
                    ms_per_message: None,
                    ms_per_delivery: None,
                })
            }
            _ => None,
        };
        CpuReport {
            clock_ticks_per_sec: self.hz,
            window_secs: round3(window_secs),
            processes,
            server_cpu_secs,
            extra_cpu_secs,
            total_cpu_secs: round3(server_cpu_secs + extra_cpu_secs),
            server_ms_per_message: None,
            extra_ms_per_message: None,
            total_ms_per_message: None,
            total_ms_per_delivery: None,
            bench_cpu_secs: match (self.bench, bench_end) {
                (Some(start), Some(end)) => Some(secs(end.ticks.saturating_sub(start.ticks))),
                _ => None,
            },
            machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line (from a process renamed to `a) (b c)`), fields 14 and 15
    /// (utime, stime) being 250 and 37, field 22 (starttime) 123456.
    const PID_STAT: &str = "4242 (a) (b c)) S 17 4242 4242 0 -1 4194560 1201 0 0 0 \
                            250 37 0 0 20 0 9 0 123456 1003520000 13000 \
                            18446744073709551615 1 1 0 0 0 0 0 4096 17991 0 0 0 17 1 \
                            0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_a_pid_stat_line_whose_comm_has_spaces_and_parentheses() {
        let stat = parse_pid_stat(PID_STAT).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                comm: "a) (b c)".to_owned(),
                ppid: 17,
                start_time: 123_456,
                ticks: 287,
            }
        );
        assert_eq!(parse_pid_stat("4242 (herald) S 1 2"), None);
        assert_eq!(parse_pid_stat(""), None);
        assert_eq!(parse_pid_stat("x (herald) S 1"), None);
    }

    #[test]
    fn parses_the_machine_cpu_line() {
        let stat = "cpu  154802 7 45555 92157 1827 3 2080 66 11 0\n\
                    cpu0 76936 7 21523 48587 476 3 645 32 11 0\n\
                    cpu1 77866 0 24032 43570 1351 0 1435 34 0 0\n\
                    intr 12345 0 0\nctxt 999\ncpufreq 1\n";
        let busy = 154_802 + 7 + 45_555 + 3 + 2080 + 66;
        assert_eq!(
            parse_machine_stat(stat),
            Some(MachineTicks {
                busy,
                total: busy + 92_157 + 1827,
                cpus: 2,
            })
        );
        assert_eq!(parse_machine_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_machine_stat("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn parses_getconf_output() {
        assert_eq!(parse_clk_tck("100\n"), Some(100));
        assert_eq!(parse_clk_tck("0\n"), None);
        assert_eq!(parse_clk_tck("undefined\n"), None);
        assert!(clk_tck() > 0);
    }

    fn stat(pid: u32, ppid: u32, start_time: u64, ticks: u64) -> ProcStat {
        ProcStat {
            pid,
            comm: "postgres".to_owned(),
            ppid,
            start_time,
            ticks,
        }
    }

    #[test]
    fn a_tree_is_its_root_and_all_descendants() {
        let all = [
            stat(1, 0, 1, 0),
            stat(10, 1, 5, 100),
            stat(11, 10, 6, 20),
            stat(12, 11, 7, 3),
            stat(20, 1, 8, 999),
        ];
        let members = tree_members(10, &all).unwrap();
        assert_eq!(
            members,
            Members::from([((10, 5), 100), ((11, 6), 20), ((12, 7), 3)])
        );
        assert_eq!(tree_members(12, &all).unwrap().len(), 1);
        assert_eq!(tree_members(99, &all), None);
    }

    #[test]
    fn a_tree_counts_survivors_and_newcomers_and_loses_the_exited() {
        let start = Members::from([((10, 5), 100), ((11, 6), 20), ((12, 7), 3)]);
        // 11 exited; 12 exited and its pid went to a new process; 13 is new.
        let end = Members::from([((10, 5), 150), ((12, 90), 4), ((13, 91), 10)]);
        assert_eq!(tree_delta(&start, &end), (50 + 4 + 10, 2));
    }

    #[test]
    fn costs_per_message_and_delivery() {
        let report = CpuReport {
            clock_ticks_per_sec: 100,
            window_secs: 10.0,
            processes: vec![ProcessCpu {
                pid: 1,
                kind: CpuKind::Server,
                name: None,
                cpu_secs: Some(2.0),
                gone: false,
                tree_processes: None,
                tree_exited: None,
            }],
            server_cpu_secs: 2.0,
            extra_cpu_secs: 0.0,
            total_cpu_secs: 2.0,
            server_ms_per_message: None,
            extra_ms_per_message: None,
            total_ms_per_message: None,
            total_ms_per_delivery: None,
            bench_cpu_secs: None,
            machine: Some(MachineCpu {
                cpus: 2,
                busy_cpu_secs: 5.0,
                busy_percent: 25.0,
                ms_per_message: None,
                ms_per_delivery: None,
            }),
        };
        let costed = report.clone().with_costs(1000, 4000);
        assert_eq!(costed.server_ms_per_message, Some(2.0));
        assert_eq!(costed.extra_ms_per_message, None);
        assert_eq!(costed.total_ms_per_message, Some(2.0));
        assert_eq!(costed.total_ms_per_delivery, Some(0.5));
        let machine = costed.machine.unwrap();
        assert_eq!(machine.ms_per_message, Some(5.0));
        assert_eq!(machine.ms_per_delivery, Some(1.25));
        let none = report.with_costs(0, 0);
        assert_eq!(none.total_ms_per_message, None);
        assert_eq!(none.machine.unwrap().ms_per_delivery, None);
    }

    /// Burns `ticks` clock ticks of this process's CPU time, however busy
    /// the machine is (giving up after a minute).
    fn spin(ticks: u64) {
        let me = std::process::id();
        let from = read_pid_stat(me).unwrap().ticks;
        let give_up = Instant::now() + std::time::Duration::from_secs(60);
        let mut x = 0u64;
        while read_pid_stat(me).unwrap().ticks < from + ticks && Instant::now() < give_up {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
    }

    #[test]
    fn samples_this_process_a_tree_and_a_missing_one() {
        let me = std::process::id();
        // Pids never exceed 2^22 on Linux.
        let sampler = Sampler::start(&[me], &[u32::MAX], &[me]);
        // A child started during the load: counted in the tree.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let hz = clk_tck();
        spin(hz * 3 / 10);
        let report = sampler.finish().with_costs(10, 20);
        let _ = child.kill();
        let _ = child.wait();

        let [server, missing, tree] = &report.processes[..] else {
            panic!("{report:#?}");
        };
        // 0.3 s of CPU spent spinning, at least.
        assert!(server.cpu_secs.unwrap() >= 0.3, "{report:#?}");
        assert_eq!(server.kind, CpuKind::Server);
        assert!(server.name.is_some() && !server.gone);
        assert!(missing.gone && missing.cpu_secs.is_none(), "{report:#?}");
        assert_eq!(missing.kind, CpuKind::CpuPid);
        assert!(tree.cpu_secs.unwrap() >= 0.3, "{report:#?}");
        assert!(tree.tree_processes.unwrap() >= 2, "{report:#?}");
        assert_eq!(report.server_cpu_secs, server.cpu_secs.unwrap());
        assert_eq!(report.extra_cpu_secs, tree.cpu_secs.unwrap());
        assert!(report.total_ms_per_message.unwrap() >= 60.0, "{report:#?}");
        assert!(report.bench_cpu_secs.unwrap() >= 0.3, "{report:#?}");
        let machine = report.machine.unwrap();
        assert!(machine.cpus >= 1);
        assert!(machine.busy_cpu_secs >= 0.2, "{machine:#?}");
        assert!(machine.busy_percent > 0.0 && machine.busy_percent <= 100.0);
        assert!(report.window_secs > 0.0);
    }
}
