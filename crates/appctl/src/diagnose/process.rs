//! Process evidence when the target runs on this host: the process found by `--pid` or by the
//! port it listens on, its memory, CPU, threads and open files before and after the probe, and
//! the child processes it started meanwhile (what `top` and `ps` inside the pod showed the
//! users). Linux only (/proc); elsewhere it reports that it is unavailable.
//!
//! Reading is separated from judging: [`Snapshot`]s are plain data and [`findings`] is a pure
//! function of them, tested on synthetic snapshots.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Finding, Kind, Severity};

/// One child (or deeper descendant) process of the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Child {
    /// Its PID.
    pub pid: i32,
    /// Its command line.
    pub cmdline: String,
    /// CPU seconds it has used.
    pub cpu_seconds: f64,
    /// Seconds since it started, at the time of the snapshot.
    pub age_seconds: f64,
}

/// The target process at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The process.
    pub pid: i32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Threads.
    pub threads: i64,
    /// Open file descriptors (`None` when not readable).
    pub open_fds: Option<usize>,
    /// Its descendants, by PID.
    pub children: BTreeMap<i32, Child>,
}

/// What the process did during the probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessEvidence {
    /// Before the first request.
    pub before: Snapshot,
    /// After the last request, if the process was still there.
    pub after: Option<Snapshot>,
    /// Every descendant seen during the probe that did not exist before it, with its last
    /// reading.
    pub new_children: Vec<Child>,
    /// Seconds the probe took.
    pub elapsed_seconds: f64,
    /// Requests sent.
    pub requests: usize,
}

/// Memory growth per request that counts as a leak, bytes (1 MiB).
const LEAK_PER_REQUEST: f64 = 1024.0 * 1024.0;
/// Total growth below which nothing is reported, bytes (32 MiB).
const LEAK_MIN_TOTAL: u64 = 32 * 1024 * 1024;

/// True when `grown` bytes over `requests` requests is a leak: at least 1 MiB per request
/// and 32 MiB in all (the process and the metrics evidence use the same rule).
pub fn is_leak(grown: u64, requests: usize) -> bool {
    grown >= LEAK_MIN_TOTAL && grown as f64 / requests.max(1) as f64 >= LEAK_PER_REQUEST
}

/// Judges the evidence: `child-processes` and `memory-growth`.
pub fn findings(e: &ProcessEvidence) -> Vec<Finding> {
    let mut out = Vec::new();
    if !e.new_children.is_empty() {
        let still: Vec<&Child> = match &e.after {
            Some(after) => e
                .new_children
                .iter()
                .filter(|c| after.children.contains_key(&c.pid))
                .collect(),
            None => Vec::new(),
        };
        let busiest = e
            .new_children
            .iter()
            .map(|c| c.cpu_seconds / c.age_seconds.max(0.1))
            .fold(0.0, f64::max);
        let example = &e.new_children[0];
        out.push(
            Finding::new(
                Kind::ChildProcesses,
                Severity::High,
                format!(
                    "the target started {} child process(es) during {} requests; {} still \
                     running after the probe",
                    e.new_children.len(),
                    e.requests,
                    still.len()
                ),
            )
            .evidence(format!(
                "example: pid {} `{}`",
                example.pid, example.cmdline
            ))
            .evidence(format!(
                "busiest child used {:.0} % of a CPU",
                busiest * 100.0
            ))
            .cause_and_fix(
                "request handling spawns processes (e.g. a \"background collection\" started \
                 synchronously from the handler) that compete for CPU and outlive the request",
                "never spawn processes or threads per request: run collection as one background \
                 task on a timer, bounded in memory and CPU",
            )
            .detail("count", e.new_children.len())
            .detail("still_running", still.len())
            .detail("max_cpu_ratio", (busiest * 100.0).round() / 100.0),
        );
    }
    if let Some(after) = &e.after {
        if is_leak(
            after.rss_bytes.saturating_sub(e.before.rss_bytes),
            e.requests,
        ) {
            out.push(memory_growth(
                "process",
                e.before.rss_bytes,
                after.rss_bytes,
                e.requests,
            ));
        }
    }
    out
}

/// A `memory-growth` finding from two resident-memory readings `requests` apart.
pub fn memory_growth(source: &str, before: u64, after: u64, requests: usize) -> Finding {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per = mib(after.saturating_sub(before)) / requests.max(1) as f64;
    Finding::new(
        Kind::MemoryGrowth,
        Severity::High,
        format!(
            "resident memory grew from {:.0} MiB to {:.0} MiB over {} requests ({:.1} MiB per \
             request)",
            mib(before),
            mib(after),
            requests,
            per
        ),
    )
    .evidence(format!("measured from the {source}"))
    .cause_and_fix(
        "each request retains memory that is never released (a global list appended to per \
         request); under a memory limit the container is OOMKilled and the proxy answers 502",
        "find what requests append to and bound it; a memory limit only decides when it dies",
    )
    .detail("before_bytes", before)
    .detail("after_bytes", after)
    .detail("bytes_per_request", (per * 1024.0 * 1024.0).round())
}

/// Reads the target from /proc.
#[cfg(target_os = "linux")]
pub mod read {
    use std::collections::BTreeMap;

    use procfs::process::Process;

    use super::{Child, Snapshot};

    /// The PID of the process listening on `port` (TCP, IPv4 or IPv6), if this host has one.
    pub fn pid_listening_on(port: u16) -> Option<i32> {
        let mut inodes = Vec::new();
        for table in [procfs::net::tcp(), procfs::net::tcp6()]
            .into_iter()
            .flatten()
        {
            for e in table {
                if e.state == procfs::net::TcpState::Listen && e.local_address.port() == port {
                    inodes.push(e.inode);
                }
            }
        }
        if inodes.is_empty() {
            return None;
        }
        for p in procfs::process::all_processes().ok()?.flatten() {
            let Ok(fds) = p.fd() else { continue };
            for fd in fds.flatten() {
                if let procfs::process::FDTarget::Socket(inode) = fd.target
                    && inodes.contains(&inode)
                {
                    return Some(p.pid);
                }
            }
        }
        None
    }

    /// Reads `pid` and its descendants; `None` once the process is gone.
    pub fn snapshot(pid: i32) -> Option<Snapshot> {
        let process = Process::new(pid).ok()?;
        let stat = process.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        use procfs::Current;
        let uptime = procfs::Uptime::current().map(|u| u.uptime).unwrap_or(0.0);
        // Parent links of every process, to collect descendants at any depth.
        let mut parent: BTreeMap<i32, (i32, procfs::process::Stat, Process)> = BTreeMap::new();
        if let Ok(all) = procfs::process::all_processes() {
            for p in all.flatten() {
                if let Ok(s) = p.stat() {
                    parent.insert(p.pid, (s.ppid, s, p));
                }
            }
        }
        let mut children = BTreeMap::new();
        for (&cpid, (_, s, p)) in &parent {
            let mut up = s.ppid;
            let mut depth = 0;
            while up > 1 && up != pid && depth < 64 {
                up = parent.get(&up).map_or(0, |(pp, _, _)| *pp);
                depth += 1;
            }
            if up == pid && cpid != pid {
                let cmdline = p
                    .cmdline()
                    .map(|c| c.join(" "))
                    .unwrap_or_else(|_| s.comm.clone());
                children.insert(
                    cpid,
                    Child {
                        pid: cpid,
                        cmdline,
                        cpu_seconds: (s.utime + s.stime) as f64 / ticks,
                        age_seconds: (uptime - s.starttime as f64 / ticks).max(0.0),
                    },
                );
            }
        }
        Some(Snapshot {
            pid,
            rss_bytes: stat.rss * procfs::page_size(),
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            threads: stat.num_threads,
            open_fds: process.fd_count().ok(),
            children,
        })
    }
}

/// Stand-ins where /proc does not exist: nothing is found.
#[cfg(not(target_os = "linux"))]
pub mod read {
    use super::Snapshot;

    /// Always `None` off Linux.
    pub fn pid_listening_on(_port: u16) -> Option<i32> {
        None
    }

    /// Always `None` off Linux.
    pub fn snapshot(_pid: i32) -> Option<Snapshot> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(rss_mib: u64, children: &[(i32, f64)]) -> Snapshot {
        Snapshot {
            pid: 100,
            rss_bytes: rss_mib * 1024 * 1024,
            cpu_seconds: 1.0,
            threads: 4,
            open_fds: Some(10),
            children: children
                .iter()
                .map(|&(pid, cpu)| {
                    (
                        pid,
                        Child {
                            pid,
                            cmdline: "burn".into(),
                            cpu_seconds: cpu,
                            age_seconds: 2.0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn children_started_during_the_probe_are_reported_with_their_cpu() {
        let before = snap(10, &[]);
        let after = snap(10, &[(201, 1.6)]);
        let e = ProcessEvidence {
            new_children: after.children.values().cloned().collect(),
            before,
            after: Some(after),
            elapsed_seconds: 5.0,
            requests: 10,
        };
        let f = findings(&e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::ChildProcesses);
        assert_eq!(f[0].details["still_running"], 1);
        assert_eq!(f[0].details["max_cpu_ratio"], 0.8);
    }

    #[test]
    fn memory_is_growth_only_when_large_per_request() {
        let leak = ProcessEvidence {
            before: snap(10, &[]),
            after: Some(snap(510, &[])),
            new_children: vec![],
            elapsed_seconds: 1.0,
            requests: 5,
        };
        assert_eq!(findings(&leak)[0].kind, Kind::MemoryGrowth);
        let steady = ProcessEvidence {
            before: snap(10, &[]),
            after: Some(snap(12, &[])),
            new_children: vec![],
            elapsed_seconds: 1.0,
            requests: 1000,
        };
        assert!(findings(&steady).is_empty());
    }
}
