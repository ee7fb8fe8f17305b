//! nginx (Debian package) as the gateway: one upstream with every replica, passive health
//! handling (`max_fails`/`fail_timeout`) and retries only on connection errors.
//!
//! Why only `proxy_next_upstream error`: every `/counter` request increments the shared counter
//! once it reaches a replica, so retrying is safe only when the first attempt cannot have been
//! answered. `error` covers a refused connection (a replica that has closed its listener after
//! draining, or is down) and a connection reset before the response header (a replica killed
//! mid-request). The latter may have incremented Redis already: the retry then leaves a *gap*,
//! never a *duplicate*, because every `INCR` returns a distinct value. `timeout` is not retried
//! (a slow replica has probably incremented, and retrying would double the load on a slow
//! system), nor `http_503`: a replica answers 503 on `/counter` only when its store call failed,
//! and the other replicas share that store. A draining replica keeps answering 200 (it still
//! increments) until its listener closes, so there is no 503 to retry during a rollout.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use testkit::process::{Proc, find_binary, free_port, wait_tcp};

/// How long nginx takes a replica out of rotation after one failed attempt (`fail_timeout`).
/// Open-source nginx has no active health checks and no API to ask whether a server is back,
/// so a rollout waits this long after a new replica is ready before stopping the next one
/// (the equivalent of a Deployment's `minReadySeconds`); otherwise every replica could be
/// marked failed at once and nginx would answer 502 "no live upstreams".
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(1);

/// A running nginx with its generated configuration in a temp dir.
pub struct Nginx {
    /// The port nginx listens on.
    pub port: u16,
    /// The process (master; it runs with `daemon off`).
    pub proc: Proc,
    dir: tempfile::TempDir,
}

/// The nginx configuration for `port` in front of `upstream_ports`, with all paths in `dir`.
pub fn config(dir: &str, port: u16, upstream_ports: &[u16]) -> String {
    let mut servers = String::new();
    for p in upstream_ports {
        let _ = writeln!(
            servers,
            "    server 127.0.0.1:{p} max_fails=1 fail_timeout={}s;",
            FAIL_TIMEOUT.as_secs()
        );
    }
    format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/client_body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  upstream metrics_app {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://metrics_app;
      proxy_set_header X-Request-Id $request_id;
      proxy_next_upstream error;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"#
    )
}

impl Nginx {
    /// Writes the configuration and starts nginx in the foreground.
    pub fn start(upstream_ports: &[u16]) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the nginx dir")?;
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        let port = free_port()?;
        let d = dir.path().to_string_lossy().to_string();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(&d, port, upstream_ports))?;
        let mut cmd = Command::new(find_binary(&["/usr/sbin/nginx"], "nginx")?);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf).args([
            "-e",
            &format!("{d}/error.log"),
            "-g",
            "daemon off;",
        ]);
        let proc = Proc::spawn("nginx", cmd)?;
        wait_tcp(port, Duration::from_secs(10), "nginx").with_context(|| {
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        })?;
        Ok(Self { port, proc, dir })
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT lets the master stop its worker; the Proc guard then SIGKILLs whatever is left.
        if self.proc.signal("QUIT").is_ok() {
            let _ = self.proc.wait_exit(Duration::from_secs(3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_lists_every_replica_and_retries_only_connection_errors() {
        let conf = config("/d", 8000, &[1, 2]);
        assert!(conf.contains("server 127.0.0.1:1 max_fails=1 fail_timeout=1s;"));
        assert!(conf.contains("server 127.0.0.1:2 max_fails=1"));
        assert!(conf.contains("proxy_next_upstream error;"));
        assert!(conf.contains("pid /d/nginx.pid;"));
    }
}
