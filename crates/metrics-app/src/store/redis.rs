//! The shared counter: atomic `INCRBY` on one Redis key, coalesced ([`super::coalesce`]): one
//! round trip serves every request that arrived while the previous one was in flight.
//!
//! The primary is either a fixed URL or whichever server the Sentinels name (the redis crate's
//! [`SentinelClient`]). One multiplexed connection to it serves every call; when a call fails
//! for any reason but the key's content, the connection is dropped and the next call connects
//! afresh (asking the Sentinels again), so the service recovers from an outage and follows a
//! failover without a restart. Every call is bounded by a timeout, so while Redis is down
//! `/counter` fails fast with 503 instead of hanging. A command that times out after Redis ran
//! it leaves a gap in the sequence but can never produce a duplicate: `INCRBY` hands out each
//! value once, and nothing here retries one.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisConnectionInfo, RedisResult};
use secrecy::ExposeSecret;

use super::coalesce::AddBy;
use super::{Result, StoreError};
use crate::config::RedisTarget;

/// Upper bound of any store call as seen by a request (plus the `WAIT` timeout with replicas).
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longer than the longest `WAIT` (500 ms), whose answer is part of an increment's response.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);

/// The counter in Redis. No `Debug`: the URL it holds may contain a password.
pub(super) struct Redis {
    /// Used one caller at a time, so a failover or a recovery makes one lookup and one new
    /// connection, not one per request.
    source: tokio::sync::Mutex<Source>,
    /// The connection to the primary; dropped after a failed call.
    primary: Mutex<Option<MultiplexedConnection>>,
    key: String,
    /// Replicas that must acknowledge each batch (`WAIT`), 0 for none, and for how long.
    wait: (u32, Duration),
}

/// Where the primary is.
enum Source {
    Url(Client),
    Sentinels(SentinelClient),
}

impl Redis {
    /// Prepares the connection without connecting: start-up never blocks on Redis.
    pub(super) fn new(target: &RedisTarget, key: String, wait: (u32, Duration)) -> Result<Self> {
        let source = match target {
            // The error text could echo the URL; keep it out of logs.
            RedisTarget::Url(url) => {
                Source::Url(Client::open(url.expose_secret()).map_err(|e| {
                    StoreError::Unavailable(format!("invalid Redis URL ({:?})", e.kind()))
                })?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let mut node = RedisConnectionInfo::default();
                if let Some(password) = password {
                    node = node.set_password(password.expose_secret());
                }
                let client = SentinelClient::build(
                    sentinels.iter().map(|s| format!("redis://{s}")).collect(),
                    master.clone(),
                    Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
                    SentinelServerType::Master,
                )
                .map_err(|e| {
                    StoreError::Unavailable(format!("invalid --redis-sentinels {sentinels:?}: {e}"))
                })?;
                Source::Sentinels(client)
            }
        };
        Ok(Self {
            source: tokio::sync::Mutex::new(source),
            primary: Mutex::new(None),
            key,
            wait,
        })
    }

    /// `SET key 0`.
    pub(super) async fn reset(&self) -> Result<()> {
        self.call(CALL_TIMEOUT, async |c| c.set(&self.key, 0).await)
            .await
    }

    /// Readiness: `GET key` proves that Redis answers and that the counter can be incremented:
    /// the key is absent or holds a whole number as `INCRBY` reads one, digits without a sign
    /// or leading zeros, below `i64::MAX`. Redis refuses to increment anything else (or the
    /// maximum), and the service refuses a negative counter.
    pub(super) async fn check(&self) -> Result<()> {
        let value: Option<Vec<u8>> = self
            .call(CALL_TIMEOUT, async |c| c.get(&self.key).await)
            .await?;
        let countable = |s: &str| {
            s.parse::<i64>()
                .is_ok_and(|v| (0..i64::MAX).contains(&v) && v.to_string() == s)
        };
        match value {
            Some(bytes) if !std::str::from_utf8(&bytes).is_ok_and(countable) => {
                Err(StoreError::Corrupt(format!(
                    "the counter key {:?} holds {} bytes that are not a whole number INCRBY can increment",
                    self.key,
                    bytes.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// `query` on the primary within `budget`, its failure sorted into a data problem or an
    /// outage.
    async fn call<T>(
        &self,
        budget: Duration,
        query: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T> {
        let outcome =
            tokio::time::timeout(budget, async { query(&mut self.primary().await?).await }).await;
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if is_data_error(&e) => return Err(StoreError::Corrupt(e.to_string())),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}ms", budget.as_millis()),
        };
        // The server may have died or been demoted (READONLY): connect afresh next time, and
        // ask the Sentinels again. A data error says nothing about where the primary is.
        *lock(&self.primary) = None;
        Err(StoreError::Unavailable(error))
    }

    /// The connection to the primary, connecting if there is none. What the Sentinels name is
    /// checked by the redis crate: the server must say `ROLE` master.
    async fn primary(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = lock(&self.primary).clone() {
            return Ok(conn);
        }
        let mut source = self.source.lock().await;
        if let Some(conn) = lock(&self.primary).clone() {
            return Ok(conn); // made by the caller that held the lock before us
        }
        let client = match &mut *source {
            Source::Url(client) => client.clone(),
            Source::Sentinels(sentinels) => {
                let client = sentinels.async_get_client().await?;
                tracing::info!(
                    primary = %client.get_connection_info().addr(),
                    "connected to the Redis primary the Sentinels name"
                );
                client
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *lock(&self.primary) = Some(conn.clone());
        Ok(conn)
    }
}

impl AddBy for Redis {
    /// `INCRBY key k`, and with `--redis-wait-replicas N` also `WAIT N timeout` in the same
    /// round trip (a pipeline): the batch is answered only once N replicas have it. When fewer
    /// acknowledge in time the batch fails with 503; its values stay unused (gaps), so a
    /// replica promoted later, which may not have them, cannot hand them out a second time.
    async fn add_by(&self, k: u64) -> Result<u64> {
        let (replicas, timeout) = self.wait;
        let value: i64 = if replicas == 0 {
            self.call(CALL_TIMEOUT, async |c| c.incr(&self.key, k).await)
                .await?
        } else {
            let mut pipe = redis::pipe();
            pipe.incr(&self.key, k)
                .cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis());
            let (value, acked): (i64, u32) = self
                .call(CALL_TIMEOUT + timeout, async |c| pipe.query_async(c).await)
                .await?;
            if acked < replicas {
                return Err(StoreError::Unavailable(format!(
                    "the increment reached {acked} of {replicas} replicas within {}ms",
                    timeout.as_millis()
                )));
            }
            value
        };
        u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("INCRBY returned {value}")))
    }
}

/// Nothing panics while holding the lock, so a poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors that say the key's content is wrong, not that Redis is unreachable: retrying or
/// waiting does not help, someone must repair or delete the key.
fn is_data_error(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) || error.code() == Some("WRONGTYPE")
        || error.to_string().contains("not an integer")
        || error.to_string().contains("would overflow")
}
