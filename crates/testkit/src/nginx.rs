//! nginx (Debian package) in the foreground on a free port of 127.0.0.1, configured in a temp
//! dir: the proxy in front of metrics-app (or a test backend), as a gateway or ingress would
//! be. The caller writes the `upstream` and `location` blocks; the rest is here.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Proc, find_binary, free_port, wait_tcp};

/// A running nginx: one process (`master_process off`, so no worker can outlive it), stopped
/// with SIGQUIT when dropped, else killed.
pub struct Nginx {
    /// The port nginx listens on.
    pub port: u16,
    /// The process (nginx runs with `daemon off` and no master/worker split).
    pub proc: Proc,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `upstreams` in its `http` block and `locations` in its one `server`
    /// block, and waits until it accepts connections (a TCP connect: no request reaches a
    /// backend, so a backend's first request is the test's own).
    pub fn start(upstreams: &str, locations: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the nginx dir")?;
        let port = free_port()?;
        let d = dir.path().display();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "master_process off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 access_log off;\n\
                 client_body_temp_path {d}/client_body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 {upstreams}\n\
                 server {{\n\
                 listen 127.0.0.1:{port};\n\
                 {locations}\n\
                 }}\n\
                 }}\n"
            ),
        )?;
        let mut cmd = Command::new(find_binary(&["/usr/sbin/nginx"], "nginx")?);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf).args([
            "-e",
            &format!("{d}/error.log"),
            "-g",
            "daemon off;",
        ]);
        let proc = Proc::spawn("nginx", cmd)?;
        let nginx = Self { port, proc, dir };
        wait_tcp(port, Duration::from_secs(10), "nginx").with_context(|| nginx.error_log())?;
        Ok(nginx)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // In single-process mode nginx stops at once on SIGQUIT (as on SIGTERM), removing its pid
        // file; the Proc guard then SIGKILLs it if it has not.
        if self.proc.signal("QUIT").is_ok() {
            let _ = self.proc.wait_exit(Duration::from_secs(3));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxies_to_its_upstream_and_leaves_no_process_when_dropped() {
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        let nginx = Nginx::start(
            &format!("upstream b {{ server 127.0.0.1:{backend_port}; }}"),
            "location / { proxy_pass http://b; }",
        )
        .unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut conn, _) = backend.accept().unwrap();
            let mut head = [0u8; 1024];
            let n = conn.read(&mut head).unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            String::from_utf8_lossy(&head[..n]).into_owned()
        });
        let mut client = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
        std::io::Write::write_all(&mut client, b"GET /x HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut client, &mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(server.join().unwrap().starts_with("GET /x "));
        let pid = nginx.proc.pid().unwrap();
        let port = nginx.port;
        drop(nginx);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // Nothing else of it holds the port either.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
