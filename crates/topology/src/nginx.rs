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
use std::time::Duration;

use anyhow::Result;

pub use testkit::nginx::Nginx;

/// How long nginx takes a replica out of rotation after one failed attempt (`fail_timeout`).
/// Open-source nginx has no active health checks and no API to ask whether a server is back,
/// so a rollout waits this long after a new replica is ready before stopping the next one
/// (the equivalent of a Deployment's `minReadySeconds`); otherwise every replica could be
/// marked failed at once and nginx would answer 502 "no live upstreams".
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(1);

/// The gateway's `location`: every request to the replicas, retried only on connection errors.
const LOCATION: &str = "location / {
    proxy_pass http://metrics_app;
    proxy_set_header X-Request-Id $request_id;
    proxy_next_upstream error;
    proxy_next_upstream_tries 3;
    proxy_connect_timeout 1s;
    proxy_read_timeout 60s;
  }";

/// The `upstream` block listing every replica of `upstream_ports`.
pub fn upstream(upstream_ports: &[u16]) -> String {
    let mut out = String::from("upstream metrics_app {\n");
    for p in upstream_ports {
        let _ = writeln!(
            out,
            "    server 127.0.0.1:{p} max_fails=1 fail_timeout={}s;",
            FAIL_TIMEOUT.as_secs()
        );
    }
    out.push_str("  }");
    out
}

/// Starts nginx in front of the replicas on `upstream_ports`.
pub fn start(upstream_ports: &[u16]) -> Result<Nginx> {
    Nginx::start(&upstream(upstream_ports), LOCATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_lists_every_replica_and_retries_only_connection_errors() {
        let upstream = upstream(&[1, 2]);
        assert!(upstream.contains("server 127.0.0.1:1 max_fails=1 fail_timeout=1s;"));
        assert!(upstream.contains("server 127.0.0.1:2 max_fails=1"));
        assert!(LOCATION.contains("proxy_next_upstream error;"));
    }
}
