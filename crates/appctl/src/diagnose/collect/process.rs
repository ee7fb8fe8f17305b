//! Process evidence when the target runs on this host: the process found by `--pid` or by the
//! port it listens on, its memory, CPU, threads and open files before and after the probe, the
//! child processes it started meanwhile (what `top` and `ps` inside the pod showed the users),
//! and — for a hang — its thread states and the TCP socket states on its port. Linux only
//! (/proc); elsewhere it reports that it is unavailable. Judged in `analyze::resources`.

use std::collections::BTreeMap;

use serde::Serialize;

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
    /// Resident memory after each request (request number, bytes), read while probing.
    pub rss_by_request: Vec<(usize, u64)>,
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

    /// Threads of `pid` and how many are in each scheduler state (`R`, `S`, `D`, …).
    pub fn thread_states(pid: i32) -> Option<(usize, BTreeMap<String, usize>)> {
        let process = Process::new(pid).ok()?;
        let mut states = BTreeMap::new();
        let mut count = 0;
        for task in process.tasks().ok()?.flatten() {
            if let Ok(stat) = task.stat() {
                count += 1;
                *states.entry(stat.state.to_string()).or_insert(0) += 1;
            }
        }
        Some((count, states))
    }

    /// Server-side TCP sockets on `port` (IPv4 and IPv6): the accept backlog of the listening
    /// socket, established connections and CLOSE_WAIT.
    pub fn sockets(port: u16) -> crate::diagnose::analyze::hung::Sockets {
        use procfs::net::TcpState;
        let mut s = crate::diagnose::analyze::hung::Sockets::default();
        for table in [procfs::net::tcp(), procfs::net::tcp6()]
            .into_iter()
            .flatten()
        {
            for e in table.iter().filter(|e| e.local_address.port() == port) {
                match e.state {
                    // For a listening socket rx_queue is the accept queue's length.
                    TcpState::Listen => s.accept_backlog += e.rx_queue,
                    TcpState::Established => s.established += 1,
                    TcpState::CloseWait => s.close_wait += 1,
                    _ => {}
                }
            }
        }
        s
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

    /// Always `None` off Linux.
    pub fn thread_states(_pid: i32) -> Option<(usize, std::collections::BTreeMap<String, usize>)> {
        None
    }

    /// Nothing off Linux.
    pub fn sockets(_port: u16) -> crate::diagnose::analyze::hung::Sockets {
        crate::diagnose::analyze::hung::Sockets::default()
    }
}
