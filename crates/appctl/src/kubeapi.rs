//! Kubernetes helpers shared by `diagnose` and `platform`: one way to build a client, to list
//! objects with an error that keeps its cause and names what was listed, to tell an RBAC
//! denial or a missing API from "nothing there", and to read container statuses and memory
//! quantities from typed objects.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};

/// A Kubernetes call that failed, naming what it was for and keeping the client's error.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No client could be built from the kubeconfig (or the in-cluster environment).
    #[error("cannot build a Kubernetes client from the current kubeconfig")]
    Client(#[source] kube::Error),
    /// Listing objects failed.
    #[error("cannot list {what} in {scope}")]
    List {
        /// What was listed, e.g. `pods matching app=x`.
        what: String,
        /// `namespace NS` or `all namespaces`.
        scope: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Reading one object failed.
    #[error("cannot read {what} in {scope}")]
    Get {
        /// What was read, e.g. `Service metrics-app`.
        what: String,
        /// `namespace NS`.
        scope: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// Why the API server refused, as far as it matters to a reader of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401/403: the credentials may not do this (RBAC).
    Denied,
    /// 404: the API (or object) does not exist here, e.g. no metrics-server.
    Missing,
    /// Anything else (network, server error, decoding).
    Other,
}

impl KubeError {
    /// The client's error.
    pub fn source_error(&self) -> &kube::Error {
        match self {
            Self::Client(e) | Self::List { source: e, .. } | Self::Get { source: e, .. } => e,
        }
    }

    /// Why the call failed.
    pub fn refusal(&self) -> Refusal {
        refusal(self.source_error())
    }

    /// One line for a report's notes, saying what could not be read and why, e.g.
    /// `cannot list httproutes in all namespaces: forbidden by RBAC (…)`.
    pub fn note(&self) -> String {
        let why = match self.refusal() {
            Refusal::Denied => "forbidden by RBAC for the current credentials",
            Refusal::Missing => "the API is not installed in this cluster",
            Refusal::Other => "the call failed",
        };
        format!("{self}: {why} ({})", self.source_error())
    }
}

/// Classifies a client error.
pub fn refusal(e: &kube::Error) -> Refusal {
    match e {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => Refusal::Denied,
        kube::Error::Api(status) if status.code == 404 => Refusal::Missing,
        _ => Refusal::Other,
    }
}

/// A client from the current kubeconfig.
pub async fn client() -> Result<kube::Client, KubeError> {
    kube::Client::try_default().await.map_err(KubeError::Client)
}

/// `all namespaces` or `namespace NS`, for error messages.
pub fn scope(namespace: Option<&str>) -> String {
    namespace.map_or_else(
        || "all namespaces".to_string(),
        |ns| format!("namespace {ns}"),
    )
}

/// Lists `api` with `params`; an error names `what` and `scope` and keeps its cause.
pub async fn list<K>(
    api: &Api<K>,
    params: &ListParams,
    what: impl Into<String>,
    scope: String,
) -> Result<Vec<K>, KubeError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(params)
        .await
        .map(|l| l.items)
        .map_err(|source| KubeError::List {
            what: what.into(),
            scope,
            source,
        })
}

/// A pod's container statuses (empty before the kubelet reports any).
pub fn container_statuses(pod: &Pod) -> &[ContainerStatus] {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
}

/// The memory limit of `container` in `pod`'s spec, as written (`256Mi`).
pub fn memory_limit<'a>(pod: &'a Pod, container: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.as_str())
}

/// Bytes in a Kubernetes quantity such as `256Mi`, `1G`, `512k`, `1e9` or `100m`.
pub fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "m" => 1e-3,
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity_bytes("256Mi"), Some(268_435_456.0));
        assert_eq!(quantity_bytes("1G"), Some(1e9));
        assert_eq!(quantity_bytes("1e3"), Some(1000.0));
        assert_eq!(quantity_bytes("12345"), Some(12345.0));
        assert_eq!(
            quantity_bytes("1.5Gi"),
            Some(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(quantity_bytes("12Zi"), None);
        assert_eq!(quantity_bytes("abc"), None);
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "message": "m", "reason": "r", "code": code
            }))
            .unwrap_or_else(|e| panic!("status: {e}")),
        ))
    }

    #[test]
    fn a_denial_and_a_missing_api_are_told_apart_in_the_note() {
        let denied = KubeError::List {
            what: "httproutes".into(),
            scope: scope(None),
            source: api_error(403),
        };
        assert_eq!(denied.refusal(), Refusal::Denied);
        assert!(
            denied
                .note()
                .starts_with("cannot list httproutes in all namespaces: forbidden by RBAC")
        );
        let missing = KubeError::Get {
            what: "PodMetrics web-1".into(),
            scope: scope(Some("shop")),
            source: api_error(404),
        };
        assert_eq!(missing.refusal(), Refusal::Missing);
        assert!(
            missing.note().contains("not installed"),
            "{}",
            missing.note()
        );
        assert!(std::error::Error::source(&missing).is_some());
    }
}
