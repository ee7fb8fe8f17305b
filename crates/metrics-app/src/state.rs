//! State shared by every request, built once at start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderValue;

use crate::faults::{Faults, Leak};
use crate::logging::Logging;
use crate::logging::access::AccessLog;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

/// Changes the log filter at run time (`PUT /admin/log-level`); returns a message on a bad
/// filter. Built by the binary from its tracing reload handle; absent in most tests.
pub type LogControl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Handle on the shared state; cloning is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared state itself.
pub struct Shared {
    /// Where counter values come from.
    pub store: Store,
    /// Every exported metric.
    pub metrics: Metrics,
    /// This instance's name, ready to put in the `X-Instance` header.
    pub instance: HeaderValue,
    /// Admin password.
    pub password: Secret,
    /// Active fault modes (fixed at start-up).
    pub faults: Faults,
    /// Memory retained by the `leak` fault.
    pub leak: Leak,
    /// Set once shutdown begins: `/readyz` then answers 503 so traffic moves elsewhere.
    draining: AtomicBool,
    /// Run-time log filter control, when the binary installed one.
    pub log_control: Option<LogControl>,
    /// How access events are written.
    pub access_log: AccessLog,
}

impl AppState {
    /// Builds the state. `instance` must be a valid header value (the configuration checks it).
    pub fn new(
        store: Store,
        metrics: Metrics,
        instance: &str,
        password: Secret,
        faults: Faults,
        logging: Option<Logging>,
    ) -> Self {
        let instance = HeaderValue::from_str(instance)
            .unwrap_or_else(|_| HeaderValue::from_static("metrics-app"));
        let (log_control, access_log) = match logging {
            Some(Logging { control, access }) => (Some(control), access),
            None => (None, AccessLog::default()),
        };
        Self(Arc::new(Shared {
            store,
            metrics,
            instance,
            password,
            faults,
            leak: Leak::default(),
            draining: AtomicBool::new(false),
            log_control,
            access_log,
        }))
    }

    /// Marks the service as draining (irreversible).
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        self.0.metrics.draining.set(1);
        self.0.metrics.ready.set(0);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
