//! The shared counter: atomic `INCRBY` on one Redis key, coalesced ([`super::coalesce`]): one
//! round trip serves every request that arrived while the previous one was in flight.
//!
//! A multiplexed [`ConnectionManager`] reconnects with exponential backoff by itself; every
//! call is bounded by a timeout, so while Redis is down `/counter` fails fast with 503 instead
//! of hanging, and it recovers without a restart. A command that times out after Redis ran it
//! leaves a gap in the sequence but can never produce a duplicate: `INCRBY` hands out each value
//! once, and nothing here retries one.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::coalesce::{AddBy, Coalescer};
use super::{Result, StoreError};
use crate::secret::Secret;

/// Upper bound of any store call as seen by a request.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);

/// Counter in Redis, its increments coalesced.
pub struct RedisStore(Coalescer<Arc<Redis>>);

/// The connection and the key.
pub struct Redis {
    /// Multiplexed, self-reconnecting connection shared by all requests.
    conn: ConnectionManager,
    /// The key holding the counter.
    key: String,
    /// Replicas that must acknowledge each batch (`WAIT`), 0 for none, and for how long.
    wait: (u32, Duration),
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info holds the URL, which may contain a password.
        f.debug_struct("RedisStore")
            .field("key", &self.0.backend().key)
            .finish_non_exhaustive()
    }
}

impl AddBy for Arc<Redis> {
    /// `INCRBY key k`, and with `--redis-wait-replicas N` also `WAIT N timeout` in the same
    /// round trip (a pipeline): the batch is answered only once N replicas have it. When fewer
    /// acknowledge in time the batch fails with 503; its values stay unused (gaps), so a
    /// replica promoted later, which may not have them, cannot hand them out a second time.
    fn add_by(&self, k: u64) -> impl std::future::Future<Output = Result<u64>> + Send {
        let store = self.clone();
        async move {
            let (replicas, timeout) = store.wait;
            let value: i64 = if replicas == 0 {
                store
                    .call(redis::cmd("INCRBY").arg(&store.key).arg(k))
                    .await?
            } else {
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                let (value, acked): (i64, u32) = store
                    .call_pipeline(
                        redis::pipe()
                            .cmd("INCRBY")
                            .arg(&store.key)
                            .arg(k)
                            .cmd("WAIT")
                            .arg(replicas)
                            .arg(timeout_ms),
                    )
                    .await?;
                if acked < replicas {
                    return Err(StoreError::Unavailable(format!(
                        "the increment reached {acked} of {replicas} replicas within {timeout_ms}ms"
                    )));
                }
                value
            };
            u64::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("INCRBY returned {value}")))
        }
    }
}

impl RedisStore {
    /// Prepares the connection without connecting: start-up never blocks on Redis.
    pub fn new(url: &Secret, key: String, wait: (u32, Duration)) -> Result<Self> {
        let client = redis::Client::open(url.expose())
            // The error text could echo the URL; keep it out of logs.
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL ({:?})", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self(Coalescer::new(Arc::new(Redis { conn, key, wait }))))
    }

    /// One increment, sent with the others that are waiting.
    pub async fn increment(&self) -> Result<u64> {
        self.0.increment().await
    }

    /// `SET key 0`.
    pub async fn reset(&self) -> Result<()> {
        let store = self.0.backend();
        let _: () = store.call(redis::cmd("SET").arg(&store.key).arg(0)).await?;
        Ok(())
    }

    /// Readiness: `GET key` proves that Redis answers and that the counter can be incremented:
    /// the key is absent or holds a whole number (anything else makes every `INCR` fail).
    pub async fn check(&self) -> Result<()> {
        let store = self.0.backend();
        let value: Option<Vec<u8>> = store.call(redis::cmd("GET").arg(&store.key)).await?;
        match value {
            None => Ok(()),
            Some(bytes) if std::str::from_utf8(&bytes).is_ok_and(|s| s.parse::<u64>().is_ok()) => {
                Ok(())
            }
            Some(bytes) => Err(StoreError::Corrupt(format!(
                "the counter key {:?} holds {} bytes that are not a whole number",
                store.key,
                bytes.len()
            ))),
        }
    }
}

impl Redis {
    /// One command, bounded by [`CALL_TIMEOUT`].
    async fn call<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        bounded(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn)).await
    }

    /// A pipeline ending in `WAIT`, bounded by [`CALL_TIMEOUT`] plus the wait's own timeout.
    async fn call_pipeline<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.conn.clone();
        bounded(CALL_TIMEOUT + self.wait.1, pipe.query_async::<T>(&mut conn)).await
    }
}

/// `call`'s answer within `budget`, its failure sorted into a data problem or an outage.
async fn bounded<T>(
    budget: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(budget, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_data_error(&e) => Err(StoreError::Corrupt(e.to_string())),
        Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {}ms",
            budget.as_millis()
        ))),
    }
}

/// Errors that say the key's content is wrong, not that Redis is unreachable: retrying or
/// waiting does not help, someone must repair or delete the key.
fn is_data_error(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) || error.code() == Some("WRONGTYPE")
        || error.to_string().contains("not an integer")
}
