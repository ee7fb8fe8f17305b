//! The shared counter: atomic `INCRBY` on one Redis key, coalesced ([`super::coalesce`]): one
//! round trip serves every request that arrived while the previous one was in flight.
//!
//! The primary is either a fixed URL, where a multiplexed [`ConnectionManager`] reconnects with
//! exponential backoff by itself, or whichever server the Sentinels name (the redis crate's
//! [`SentinelClient`]), asked again after a call fails, so the service follows a failover without
//! a restart. Every call is bounded by a timeout, so while Redis is down `/counter` fails fast with 503 instead
//! of hanging, and it recovers without a restart. A command that times out after Redis ran it
//! leaves a gap in the sequence but can never produce a duplicate: `INCRBY` hands out each value
//! once, and nothing here retries one.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisConnectionInfo, RedisResult};

use super::coalesce::{AddBy, Coalescer};
use super::{Result, StoreError};
use crate::config::RedisTarget;

/// Upper bound of any store call as seen by a request.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);

/// Counter in Redis, its increments coalesced.
pub struct RedisStore(Coalescer<Arc<Redis>>);

/// The connection and the key.
pub struct Redis {
    /// How commands reach the primary.
    link: Link,
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
    pub fn new(target: &RedisTarget, key: String, wait: (u32, Duration)) -> Result<Self> {
        let link = match target {
            RedisTarget::Url(url) => {
                let client = redis::Client::open(url.expose())
                    // The error text could echo the URL; keep it out of logs.
                    .map_err(|e| {
                        StoreError::Unavailable(format!("invalid Redis URL ({:?})", e.kind()))
                    })?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Link::Direct(conn)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let mut node = RedisConnectionInfo::default();
                if let Some(password) = password {
                    node = node.set_password(password.expose());
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
                Link::Sentinel(Box::new(SentinelLink {
                    sentinels: tokio::sync::Mutex::new(client),
                    primary: std::sync::Mutex::new(None),
                }))
            }
        };
        Ok(Self(Coalescer::new(Arc::new(Redis { link, key, wait }))))
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
    async fn call<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.run(CALL_TIMEOUT, Query::Cmd(cmd)).await
    }

    /// A pipeline ending in `WAIT`, bounded by [`CALL_TIMEOUT`] plus the wait's own timeout.
    async fn call_pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        self.run(CALL_TIMEOUT + self.wait.1, Query::Pipe(pipe))
            .await
    }

    async fn run<T: FromRedisValue>(&self, budget: Duration, query: Query<'_>) -> Result<T> {
        match &self.link {
            Link::Direct(conn) => bounded(budget, query.send(&mut conn.clone())).await,
            Link::Sentinel(link) => {
                let result = bounded(budget, async {
                    let mut conn = link.primary().await?;
                    query.send(&mut conn).await
                })
                .await;
                // The server may have died or been demoted (READONLY): ask the Sentinels again
                // next time. A data error says nothing about where the primary is.
                if matches!(result, Err(StoreError::Unavailable(_))) {
                    link.forget();
                }
                result
            }
        }
    }
}

/// How commands reach the primary.
enum Link {
    /// A fixed address, reconnected to by the [`ConnectionManager`].
    Direct(ConnectionManager),
    /// The server the Sentinels name as the primary (boxed: the Sentinel client is large).
    Sentinel(Box<SentinelLink>),
}

/// The Sentinels and the connection to the primary they named last.
struct SentinelLink {
    /// Asked one caller at a time, so a failover makes one lookup, not one per request.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// Dropped after a failed call.
    primary: std::sync::Mutex<Option<MultiplexedConnection>>,
}

impl SentinelLink {
    fn cached(&self) -> Option<MultiplexedConnection> {
        self.primary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The connection to the current primary, asking the Sentinels for it if there is none.
    /// Their answer is checked by the redis crate: the server must say `ROLE` master.
    async fn primary(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let mut sentinels = self.sentinels.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn); // found by the caller that held the lock before us
        }
        let client = sentinels.async_get_client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        tracing::info!(
            primary = %client.get_connection_info().addr(),
            "connected to the Redis primary the Sentinels name"
        );
        *self
            .primary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    fn forget(&self) {
        *self
            .primary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// A command or a pipeline, sent the same way over either kind of connection.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

impl Query<'_> {
    async fn send<T: FromRedisValue>(
        self,
        conn: &mut (impl ConnectionLike + Send),
    ) -> RedisResult<T> {
        match self {
            Query::Cmd(cmd) => cmd.query_async(conn).await,
            Query::Pipe(pipe) => pipe.query_async(conn).await,
        }
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
