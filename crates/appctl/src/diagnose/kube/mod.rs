//! Kubernetes evidence (`--kube`): the pods behind the target — found by [`discovery`] from
//! the route serving the URL's hostname — their restarts, last termination reasons and events
//! ([`findings`]), memory against the limit and processes ([`usage`]), and the previous
//! container's log tail.
//!
//! Anything that could not be read (an RBAC denial, the metrics API not installed, exec not
//! allowed) becomes a note in the report, never "nothing found".

pub mod discovery;
pub mod findings;
pub mod usage;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams};
use serde::Serialize;

pub use crate::kubeapi::container_statuses;
use crate::kubeapi::{self, KubeError, Refusal};

/// What was read from the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KubeEvidence {
    /// Namespace searched.
    pub namespace: String,
    /// Label selector used.
    pub selector: String,
    /// Pods found.
    #[serde(skip)]
    pub pods: Vec<Pod>,
    /// Events involving those pods.
    #[serde(skip)]
    pub events: Vec<Event>,
    /// Last lines of each restarted container's previous log, as "pod/container" → text.
    pub previous_logs: Vec<(String, String)>,
    /// Memory usage against limits, from the metrics API.
    pub memory: Vec<usage::MemoryUsage>,
    /// `ps` output per pod, where exec was allowed.
    pub processes: Vec<(String, String)>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// Where to look: namespace and selector given by flags, or found from the URL's hostname.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--selector`.
    pub selector: Option<String>,
    /// Hostname of the probed URL.
    pub host: String,
}

/// Namespace and selector used when neither flags nor the hostname say otherwise (dev's:
/// deploy/argocd runs each environment in `metrics-app-<env>`).
const DEFAULT_NAMESPACE: &str = "metrics-app-dev";
const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=metrics-app";

/// The PodMetrics API of metrics-server.
fn pod_metrics_api() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// Collects with a client from the current kubeconfig.
pub async fn collect(target: &Target) -> Result<KubeEvidence, KubeError> {
    collect_with(&kubeapi::client().await?, target).await
}

/// Fetches the pods behind the target (from the flags, else the route serving the hostname,
/// else metrics-app's defaults), their events, memory usage, processes and the previous log
/// tail of restarted containers. Only a pod list that fails is an error; everything else that
/// cannot be read is a note.
pub async fn collect_with(
    client: &kube::Client,
    target: &Target,
) -> Result<KubeEvidence, KubeError> {
    let mut notes = Vec::new();
    let (namespace, selector) = match (&target.namespace, &target.selector) {
        (ns, Some(sel)) => (
            ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            sel.clone(),
        ),
        (ns, None) => match discovery::discover(client, &target.host, &mut notes).await {
            Some((dns, sel)) => {
                notes.push(format!(
                    "pods found from the route for {}: namespace {dns}, selector {sel}",
                    target.host
                ));
                (ns.clone().unwrap_or(dns), sel)
            }
            None => {
                notes.push(format!(
                    "no route names {}: using namespace {} and selector {DEFAULT_SELECTOR} \
                     (pass --namespace/--selector)",
                    target.host,
                    ns.as_deref().unwrap_or(DEFAULT_NAMESPACE)
                ));
                (
                    ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
                    DEFAULT_SELECTOR.to_string(),
                )
            }
        },
    };
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = kubeapi::list(
        &pods_api,
        &ListParams::default().labels(&selector),
        format!("pods matching {selector}"),
        kubeapi::scope(Some(&namespace)),
    )
    .await?;
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let events = match kubeapi::list(
        &Api::<Event>::namespaced(client.clone(), &namespace),
        &ListParams::default().fields("involvedObject.kind=Pod"),
        "events",
        kubeapi::scope(Some(&namespace)),
    )
    .await
    {
        Ok(events) => events
            .into_iter()
            .filter(|e| {
                e.involved_object
                    .name
                    .as_ref()
                    .is_some_and(|n| names.contains(n))
            })
            .collect(),
        Err(e) => {
            notes.push(e.note());
            Vec::new()
        }
    };
    let mut previous_logs = Vec::new();
    let mut memory = Vec::new();
    let mut processes = Vec::new();
    let metrics_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &pod_metrics_api());
    let mut metrics_missing = false;
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !metrics_missing {
            match metrics_api.get(&name).await {
                Ok(m) => {
                    let typed: usage::PodMetrics = serde_json::to_value(m)
                        .ok()
                        .and_then(|v| serde_json::from_value(v).ok())
                        .unwrap_or_default();
                    memory.extend(usage::memory_usage(pod, &typed));
                }
                Err(source) => {
                    let e = KubeError::Get {
                        what: format!("PodMetrics {name}"),
                        scope: kubeapi::scope(Some(&namespace)),
                        source,
                    };
                    // Without metrics-server every pod fails the same way: say it once.
                    metrics_missing = e.refusal() == Refusal::Missing;
                    notes.push(format!("memory usage: {}", e.note()));
                }
            }
        }
        match usage::exec_ps(&pods_api, &name).await {
            Ok(text) => processes.push((name.clone(), text)),
            Err(e) => notes.push(format!(
                "processes of {name}: exec of `ps` failed ({e}); distroless images have no ps"
            )),
        }
        for cs in container_statuses(pod)
            .iter()
            .filter(|c| c.restart_count > 0)
        {
            let params = LogParams {
                container: Some(cs.name.clone()),
                previous: true,
                tail_lines: Some(20),
                ..LogParams::default()
            };
            match pods_api.logs(&name, &params).await {
                Ok(text) => previous_logs.push((format!("{name}/{}", cs.name), text)),
                Err(e) => notes.push(format!(
                    "previous log of {name}/{}: {e} (rotated away, or not allowed)",
                    cs.name
                )),
            }
        }
    }
    Ok(KubeEvidence {
        namespace,
        selector,
        pods,
        events,
        previous_logs,
        memory,
        processes,
        notes,
    })
}
