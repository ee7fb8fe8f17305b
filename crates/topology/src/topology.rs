//! The whole topology: Redis (optionally with replicas and Sentinels), N replicas, nginx in front, and optionally Prometheus,
//! Alertmanager and the webhook. Dropping it stops every process by PID.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::monitoring::{Alertmanager, Prometheus, Webhook};
use crate::nginx::{self, Nginx};
use crate::replica::{Replica, ReplicaSpec};
use testkit::redis::Redis;
use testkit::redis_ha::RedisHa;

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of metrics-app replicas (instances `replica-1` … `replica-N`).
    pub replicas: usize,
    /// `--drain-delay` of every replica.
    pub drain_delay: String,
    /// Extra arguments per replica index (e.g. a fault mode for one of them).
    pub extra_args: Vec<(usize, Vec<String>)>,
    /// Start Prometheus, Alertmanager and the webhook.
    pub monitoring: bool,
    /// Shorten every alert rule's `for:` to this (tests only).
    pub for_override: Option<String>,
    /// Redis replicas and Sentinels around the primary ([`RedisHa`]); the replicas of
    /// metrics-app then find the primary through the Sentinels.
    pub redis_ha: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            replicas: 3,
            drain_delay: "1s".into(),
            extra_args: Vec::new(),
            monitoring: false,
            for_override: None,
            redis_ha: false,
        }
    }
}

/// Prometheus, Alertmanager and the webhook they deliver to.
pub struct Monitoring {
    /// Prometheus.
    pub prometheus: Prometheus,
    /// Alertmanager.
    pub alertmanager: Alertmanager,
    /// The webhook receiver recording alerts.
    pub webhook: Webhook,
}

/// A running topology.
pub struct Topology {
    /// Monitoring, when requested (dropped first).
    pub monitoring: Option<Monitoring>,
    /// The gateway.
    pub nginx: Nginx,
    /// The replicas, index `i` is instance `replica-{i+1}`; `None` while one is restarted.
    pub replicas: Vec<Option<Replica>>,
    /// The shared store (with `redis_ha`, the first primary).
    pub redis: Redis,
    /// Replicas and Sentinels, with `redis_ha`.
    pub redis_ha: Option<RedisHa>,
    /// (public, management) port of each replica.
    ports: Vec<(u16, u16)>,
    options: Options,
}

impl Topology {
    /// Starts everything and waits until every replica is ready.
    pub async fn start(options: Options) -> Result<Self> {
        let redis = Redis::start()?;
        let redis_ha = if options.redis_ha {
            Some(RedisHa::start(&redis).await?)
        } else {
            None
        };
        // Port 0: each replica reports the ports it got, and a restart comes back on them.
        let mut replicas = Vec::new();
        for i in 0..options.replicas {
            let spec = spec(&options, &redis, redis_ha.as_ref(), i);
            replicas.push(Some(Replica::start(spec, 0, 0)?));
        }
        let ports: Vec<(u16, u16)> = replicas
            .iter()
            .flatten()
            .map(|r| (r.port, r.management_port))
            .collect();
        for r in replicas.iter().flatten() {
            r.wait_ready(Duration::from_secs(30))
                .await
                .with_context(|| r.proc.output())?;
        }
        let public: Vec<u16> = ports.iter().map(|p| p.0).collect();
        let management: Vec<u16> = ports.iter().map(|p| p.1).collect();
        let nginx = nginx::start(&public)?;
        let monitoring = if options.monitoring {
            let webhook = Webhook::start().await?;
            let alertmanager = Alertmanager::start(webhook.port).await?;
            let prometheus = Prometheus::start(
                &management,
                alertmanager.port,
                options.for_override.as_deref(),
            )
            .await?;
            Some(Monitoring {
                prometheus,
                alertmanager,
                webhook,
            })
        } else {
            None
        };
        Ok(Self {
            monitoring,
            nginx,
            replicas,
            redis,
            redis_ha,
            ports,
            options,
        })
    }

    /// Gateway URL of `path`, e.g. `/counter`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.nginx.base_url())
    }

    /// Sends `signal` to replica `i`.
    pub fn signal_replica(&self, i: usize, signal: &str) -> Result<()> {
        match self.replicas.get(i).and_then(Option::as_ref) {
            Some(r) => r.proc.signal(signal),
            None => bail!("replica {i} is not running"),
        }
    }

    /// Waits for replica `i` to exit and forgets it; returns how long that took.
    pub fn wait_replica_exit(&mut self, i: usize, deadline: Duration) -> Result<Duration> {
        let started = Instant::now();
        if let Some(mut r) = self.replicas.get_mut(i).and_then(Option::take) {
            r.proc.wait_exit(deadline)?;
        }
        Ok(started.elapsed())
    }

    /// Starts replica `i` again on its port and waits until it is ready; returns the time.
    pub async fn start_replica(&mut self, i: usize) -> Result<Duration> {
        let started = Instant::now();
        let (port, management) = *self.ports.get(i).context("no such replica")?;
        let r = Replica::start(
            spec(&self.options, &self.redis, self.redis_ha.as_ref(), i),
            port,
            management,
        )?;
        r.wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| r.proc.output())?;
        if let Some(slot) = self.replicas.get_mut(i) {
            *slot = Some(r);
        }
        Ok(started.elapsed())
    }

    /// Rolling restart of replica `i`: SIGTERM, wait for the drain and exit, start the new
    /// one on the same port, wait for `/readyz`. Returns (exit time, readiness time).
    pub async fn restart_replica(&mut self, i: usize) -> Result<(Duration, Duration)> {
        self.signal_replica(i, "TERM")?;
        let exit = self.wait_replica_exit(i, Duration::from_secs(30))?;
        let ready = self.start_replica(i).await?;
        Ok((exit, ready))
    }

    /// Restarts every replica in turn ([`Self::restart_replica`]), waiting
    /// [`crate::nginx::FAIL_TIMEOUT`] after each new replica is ready so nginx has it back in
    /// rotation before the next one stops. Returns (exit time, readiness time) per replica.
    pub async fn rolling_restart(&mut self) -> Result<Vec<(Duration, Duration)>> {
        let mut times = Vec::new();
        for i in 0..self.replicas.len() {
            times.push(self.restart_replica(i).await?);
            // Not a readiness guess: nginx's passive health state cannot be queried.
            tokio::time::sleep(crate::nginx::FAIL_TIMEOUT + Duration::from_millis(100)).await;
        }
        Ok(times)
    }

    /// The URLs a person needs, one `name: url` per line.
    pub fn describe(&self) -> String {
        let mut out = format!("nginx (gateway): {}/counter\n", self.nginx.base_url());
        for r in self.replicas.iter().flatten() {
            out.push_str(&format!(
                "{} (pid {}): {}/counter, {}/metrics\n",
                r.spec.instance,
                r.proc.pid().unwrap_or_default(),
                r.base_url(),
                r.management_url()
            ));
        }
        match &self.redis_ha {
            None => out.push_str(&format!("redis: {}\n", self.redis.url())),
            Some(ha) => {
                let replicas: Vec<String> = ha.replicas.iter().map(Redis::url).collect();
                let sentinels: Vec<String> = ha.sentinels.iter().map(|s| s.address()).collect();
                out.push_str(&format!(
                    "redis primary: {} (replicas {}; sentinels {}, master name {})\n",
                    self.redis.url(),
                    replicas.join(", "),
                    sentinels.join(", "),
                    testkit::sentinel::MASTER
                ));
            }
        }
        if let Some(m) = &self.monitoring {
            out.push_str(&format!(
                "prometheus: http://127.0.0.1:{}/alerts (chart rules: {})\n",
                m.prometheus.server.port,
                m.prometheus.alert_names.join(", ")
            ));
            out.push_str(&format!(
                "alertmanager: http://127.0.0.1:{}\n",
                m.alertmanager.port
            ));
            out.push_str(&format!(
                "webhook: http://127.0.0.1:{}/alerts\n",
                m.webhook.port
            ));
        }
        out
    }
}

fn spec(options: &Options, redis: &Redis, ha: Option<&RedisHa>, i: usize) -> ReplicaSpec {
    ReplicaSpec {
        instance: format!("replica-{}", i + 1),
        redis_args: match ha {
            Some(ha) => ha.app_args(),
            None => vec!["--redis-url".into(), redis.url()],
        },
        drain_delay: options.drain_delay.clone(),
        extra_args: options
            .extra_args
            .iter()
            .filter(|(idx, _)| *idx == i)
            .flat_map(|(_, a)| a.clone())
            .collect(),
    }
}
