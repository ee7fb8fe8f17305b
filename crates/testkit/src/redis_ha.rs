//! The Redis shape of the HA profile from real processes: a primary, two replicas and three
//! Sentinels with a quorum of two, as the redis-ha chart deploys them. Replicas of metrics-app find the primary through the Sentinels and wait for
//! one replica per batch (`WAIT 1`), so a failover never hands out a value twice.
//!
//! Two replicas, not one: with `WAIT 1`, the promoted replica needs a replica of its own to
//! acknowledge writes, and the killed primary may never come back.

use std::time::{Duration, Instant};

use crate::redis::Redis;
use crate::sentinel::Sentinel;
use anyhow::{Context, Result, bail};

/// How long each batch waits for its replica before the request gets 503: generous, because
/// a loaded test machine can delay a replica's acknowledgement by a few hundred ms.
pub const WAIT_TIMEOUT: &str = "500ms";

/// The replicas and Sentinels around the primary.
pub struct RedisHa {
    /// Replicas of the primary, synced before [`RedisHa::start`] returns.
    pub replicas: Vec<Redis>,
    /// The Sentinels, which know each other and both replicas when [`RedisHa::start`] returns.
    pub sentinels: Vec<Sentinel>,
}

impl RedisHa {
    /// Starts two replicas of `primary` and three Sentinels, and waits until a failover could
    /// happen: replicas synced, every Sentinel aware of the two others and of both replicas.
    pub async fn start(primary: &Redis) -> Result<Self> {
        let replicas = vec![
            Redis::start_replica_of(primary)?,
            Redis::start_replica_of(primary)?,
        ];
        for r in &replicas {
            r.wait_synced(Duration::from_secs(10)).await?;
        }
        let sentinels = (0..3)
            .map(|_| Sentinel::start(primary.port, 2))
            .collect::<Result<Vec<_>>>()?;
        let until = Instant::now() + Duration::from_secs(20);
        while !sentinels.iter().all(|s| {
            s.other_sentinels().is_ok_and(|n| n == 2) && s.known_replicas().is_ok_and(|n| n == 2)
        }) {
            if Instant::now() > until {
                bail!(
                    "the sentinels did not discover each other and the replicas within 20s:\n{}",
                    sentinels.first().map(Sentinel::output).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            replicas,
            sentinels,
        })
    }

    /// metrics-app's flags for this shape.
    pub fn app_args(&self) -> Vec<String> {
        let addresses: Vec<String> = self.sentinels.iter().map(Sentinel::address).collect();
        vec![
            "--redis-sentinels".into(),
            addresses.join(","),
            "--redis-wait-replicas".into(),
            "1".into(),
            "--redis-wait-timeout".into(),
            WAIT_TIMEOUT.into(),
        ]
    }

    /// The primary's port according to the first Sentinel.
    pub fn primary_port(&self) -> Result<u16> {
        self.sentinels
            .first()
            .context("no sentinel")?
            .primary_port()
    }

    /// Waits until the Sentinels name a primary other than `old_port`; returns its port.
    pub async fn wait_failover(&self, old_port: u16, deadline: Duration) -> Result<u16> {
        let until = Instant::now() + deadline;
        loop {
            match self.primary_port() {
                Ok(port) if port != old_port => return Ok(port),
                _ if Instant::now() > until => bail!(
                    "no failover from :{old_port} within {deadline:?}:\n{}",
                    self.sentinels
                        .first()
                        .map(Sentinel::output)
                        .unwrap_or_default()
                ),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
