//! Child processes owned by the harness: spawning with captured output, signals by PID, and a
//! drop guard that kills the process so nothing outlives a failed test; polling helpers with
//! deadlines; free ports, for third-party servers that cannot bind port 0 and report it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on 127.0.0.1 (bound, then released for a child process to take). Only for
/// servers that cannot bind port 0 and report the port (redis-server, nginx, Prometheus) and
/// for a port where nothing listens; another process may take it in between, which a server's
/// start-up then reports. Servers of our own bind port 0 instead ([`Proc::reported_port`]).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding a free port")?
        .local_addr()?
        .port())
}

/// Polls until something accepts TCP connections on `port`, or fails after `deadline`.
pub fn wait_tcp(port: u16, deadline: Duration, what: &str) -> Result<()> {
    let until = Instant::now() + deadline;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            bail!("{what} did not listen on 127.0.0.1:{port} within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Polls `url` until it answers 200, or fails after `deadline`.
pub async fn wait_http_ok(url: &str, deadline: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let until = Instant::now() + deadline;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{url} did not answer 200 within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    /// Short name used in messages ("redis", "replica-1", …).
    pub name: String,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr into `output`; they end when the pipes close.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured into memory.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        let mut readers = Vec::new();
        for stream in streams.into_iter().flatten() {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut out) = output.lock() {
                        // Keep memory bounded: the tail is what explains a failure.
                        if out.len() > 256 * 1024 {
                            let cut = out.len() - 128 * 1024;
                            let cut = (cut..out.len())
                                .find(|i| out.is_char_boundary(*i))
                                .unwrap_or(0);
                            out.drain(..cut);
                        }
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            }));
        }
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            output,
            readers,
        })
    }

    /// The process id, if the process has not been reaped yet.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the process by PID with `kill(1)`.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name)
        };
        signal_pid(pid, signal)
    }

    /// Waits for the process to exit, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + deadline;
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already reaped", self.name)
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                // Everything the process wrote is in `output` once its pipes are drained.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            if Instant::now() > until {
                bail!("{} did not exit within {deadline:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything the process printed so far (the tail, if it printed a lot).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until the output contains `needle`, at most `deadline`; whether it did.
    pub fn wait_for_output(&self, needle: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `find` finds `what` in the output, at most `deadline`; an error with the output
    /// so far if it does not, at once when the process exits first (it failed to start).
    pub fn wait_output<T>(
        &mut self,
        deadline: Duration,
        what: &str,
        find: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let until = Instant::now() + deadline;
        loop {
            let exited = !self.is_running();
            if exited {
                // What it printed last is in `output` once its pipes are drained; bounded, as a
                // child it left behind may hold them open.
                let drained = Instant::now() + Duration::from_secs(2);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let output = self.output();
            match find(&output) {
                Some(found) => return Ok(found),
                None if exited || Instant::now() > until => bail!(
                    "{} printed no {what} within {deadline:?}{}:\n{output}",
                    self.name,
                    if exited { " (it exited)" } else { "" }
                ),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// The port a server bound to port 0 reports with a line `listening on 127.0.0.1:PORT`.
    pub fn reported_port(&mut self, deadline: Duration) -> Result<u16> {
        const PREFIX: &str = "listening on 127.0.0.1:";
        self.wait_output(deadline, "`listening on 127.0.0.1:PORT` line", |output| {
            output
                .lines()
                .find_map(|l| l.strip_prefix(PREFIX)?.trim().parse::<u16>().ok())
        })
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmd.output()` with a deadline: runs `cmd` to its end with stdout and stderr captured apart;
/// if it is still running after `deadline` it is killed and this fails, so a command that
/// should exit but serves instead fails a test at once rather than holding it.
pub fn output_within(mut cmd: Command, deadline: Duration) -> Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let (stdout, stderr) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} was still running after {deadline:?} instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads a child's pipe to its end on a thread of its own (so neither pipe can fill and block
/// the child while the other is read).
fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Sends `signal` to `pid` with `kill(1)` (the workspace forbids `unsafe`, so no libc call).
pub fn signal_pid(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// The first existing path among `candidates`, or an error saying how to install it.
pub fn find_binary(candidates: &[&str], package: &str) -> Result<std::path::PathBuf> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{} is missing (looked at {candidates:?}): install the Debian package with `sudo apt-get install {package}` (bash .ci/run installs every test dependency)",
                Path::new(candidates.first().copied().unwrap_or(package))
                    .file_name()
                    .map_or(package.into(), |n| n.to_string_lossy())
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sh(script: &str) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Proc::spawn("sh", cmd).unwrap()
    }

    #[test]
    fn the_reported_port_is_read_from_the_output_and_its_absence_is_an_error() {
        let mut server = sh("echo starting; echo 'listening on 127.0.0.1:4242'; sleep 5");
        assert_eq!(server.reported_port(Duration::from_secs(5)).unwrap(), 4242);
        // A server that exits without the line fails at once, with what it printed.
        let mut failed = sh("echo 'address already in use' >&2");
        let error = failed
            .reported_port(Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(error.contains("address already in use"), "{error}");
        assert!(error.contains("it exited"), "{error}");
    }

    #[test]
    fn output_within_keeps_the_streams_apart_and_kills_what_overstays() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = output_within(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let error = output_within(cmd, Duration::from_millis(200)).unwrap_err();
        assert!(error.to_string().contains("still running"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
