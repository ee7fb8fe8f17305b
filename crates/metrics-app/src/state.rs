//! State shared by every request on both listeners, built once at start-up.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderValue;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::faults::{Burners, Faults, Leak};
use crate::logging::LogControl;
use crate::metrics::Metrics;
use crate::secret::Password;
use crate::store::{Store, StoreError};

/// Admin requests one client address may make in a burst, then one per second: enough for a
/// person or a script, while a password guesser gets one guess per second.
const ADMIN_BURST: NonZeroU32 = NonZeroU32::new(10).expect("10 is not zero");
/// Client addresses remembered by the admin rate limiter before stale ones are forgotten.
const ADMIN_LIMITER_KEYS: usize = 10_000;

/// Handle on the shared state; cloning is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared state itself, reached through [`AppState`] (its fields are crate-private).
pub struct Shared {
    /// Where counter values come from.
    pub(crate) store: Store,
    /// Every exported metric.
    pub(crate) metrics: Metrics,
    /// This instance's name, ready to put in the `X-Instance` header.
    pub(crate) instance: HeaderValue,
    /// The admin password, re-read from its file at each check.
    pub(crate) password: Password,
    /// Active fault modes, fixed at start-up.
    pub(crate) faults: Faults,
    /// Memory retained by the `leak` fault.
    pub(crate) leak: Leak,
    /// Child processes started by the `slow-even` fault, ended at shutdown.
    pub(crate) burners: Burners,
    /// Run-time log filter control, when the binary installed one.
    pub(crate) log_control: Option<LogControl>,
    /// Whether one access event is logged per request.
    pub(crate) access_log: bool,
    /// Admin requests per client address.
    admin_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Set once shutdown begins: `/readyz` then answers 503 so traffic moves elsewhere.
    draining: AtomicBool,
}

impl AppState {
    /// Builds the state, its metrics and its store from a checked configuration (which makes
    /// sure the instance name is a valid header value). Must run inside a tokio runtime.
    pub fn new(config: &Config, log_control: Option<LogControl>) -> Result<Self, StoreError> {
        let metrics = Metrics::new(&config.faults);
        let store = Store::new(&config.store, metrics.clone())?;
        let instance = HeaderValue::from_str(&config.instance)
            .unwrap_or_else(|_| HeaderValue::from_static("metrics-app"));
        let quota = Quota::per_second(NonZeroU32::MIN).allow_burst(ADMIN_BURST);
        Ok(Self(Arc::new(Shared {
            store,
            metrics,
            instance,
            password: config.password.clone(),
            faults: config.faults.clone(),
            leak: Leak::default(),
            burners: Burners::default(),
            log_control,
            access_log: config.options.access_log,
            admin_limiter: RateLimiter::keyed(quota),
            draining: AtomicBool::new(false),
        })))
    }

    /// Counts an admin request from `client`; `false` when that address has used up its
    /// allowance for now.
    pub(crate) fn admit_admin_request(&self, client: IpAddr) -> bool {
        if self.admin_limiter.len() > ADMIN_LIMITER_KEYS {
            self.admin_limiter.retain_recent();
        }
        self.admin_limiter.check_key(&client).is_ok()
    }

    /// Marks the service as draining (irreversible).
    pub(crate) fn start_draining(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        self.0.metrics.draining.set(1);
        self.0.metrics.ready.set(0);
    }

    /// True once shutdown has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
