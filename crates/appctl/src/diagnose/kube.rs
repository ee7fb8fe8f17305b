//! Kubernetes evidence (`--kube`): for the pods behind the target, restarts and the last
//! termination reason (a Running pod whose last termination was OOMKilled is exactly what
//! cluster analysers miss), memory limits, recent warning events, and the previous
//! container's log tail.
//!
//! [`findings`] is a pure function over API objects (tested on recorded ones); [`collect`]
//! is the thin kube-rs part that fetches them.

use k8s_openapi::api::core::v1::{Event, Pod};
use serde::Serialize;

use super::model::{Finding, Kind, Severity};

/// A pod's container statuses (empty before the kubelet reports any).
pub fn container_statuses(pod: &Pod) -> &[k8s_openapi::api::core::v1::ContainerStatus] {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
}

/// Event reasons worth showing next to restarts.
const EVENT_REASONS: [&str; 5] = ["BackOff", "Unhealthy", "OOMKilling", "Killing", "Failed"];

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
    pub memory: Vec<super::kube_more::MemoryUsage>,
    /// `ps` output per pod, where exec was allowed.
    pub processes: Vec<(String, String)>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// One container's restart history, as read from its status.
#[derive(Debug, Clone, PartialEq)]
struct Restarted {
    pod: String,
    container: String,
    restarts: i32,
    reason: Option<String>,
    exit_code: Option<i32>,
    limit: Option<String>,
}

/// Judges pods and events: `oom-killed` and `restarts`.
pub fn findings(pods: &[Pod], events: &[Event]) -> Vec<Finding> {
    let mut restarted = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let limits = |container: &str| {
            pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == container)
                    .and_then(|c| c.resources.as_ref())
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get("memory"))
                    .map(|q| q.0.clone())
            })
        };
        let statuses = container_statuses(pod);
        for cs in statuses {
            let terminated = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| cs.state.as_ref().and_then(|s| s.terminated.as_ref()));
            if cs.restart_count > 0 || terminated.is_some() {
                restarted.push(Restarted {
                    pod: name.clone(),
                    container: cs.name.clone(),
                    restarts: cs.restart_count,
                    reason: terminated.and_then(|t| t.reason.clone()),
                    exit_code: terminated.map(|t| t.exit_code),
                    limit: limits(&cs.name),
                });
            }
        }
    }
    let event_lines: Vec<String> = events
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| EVENT_REASONS.contains(&r))
        })
        .map(|e| {
            format!(
                "event {} ×{} on {}: {}",
                e.reason.as_deref().unwrap_or_default(),
                e.count.unwrap_or(1),
                e.involved_object.name.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            )
        })
        .collect();

    let mut out = Vec::new();
    let oom: Vec<&Restarted> = restarted
        .iter()
        .filter(|r| r.reason.as_deref() == Some("OOMKilled") || r.exit_code == Some(137))
        .collect();
    if !oom.is_empty() {
        let mut f = Finding::new(
            Kind::OomKilled,
            Severity::Critical,
            format!(
                "{} container(s) were killed for exceeding their memory limit (OOMKilled, exit \
                 code 137)",
                oom.len()
            ),
        )
        .cause_and_fix(
            "the process's memory grows until the kernel kills it at the container's limit; \
             while it restarts, the proxy answers 502",
            "find the leak (memory growth per request with --metrics); raise the limit only for \
             legitimate usage",
        )
        .detail("containers", oom.len());
        for r in &oom {
            f = f.evidence(format!(
                "{}/{}: last terminated {} (exit {}), {} restart(s), memory limit {}",
                r.pod,
                r.container,
                r.reason.as_deref().unwrap_or("?"),
                r.exit_code.map_or("?".to_string(), |c| c.to_string()),
                r.restarts,
                r.limit.as_deref().unwrap_or("none")
            ));
        }
        for e in event_lines.iter().filter(|l| l.contains("OOM")).take(3) {
            f = f.evidence(e.clone());
        }
        out.push(f);
    }
    let total: i32 = restarted.iter().map(|r| r.restarts).sum();
    if total > 0 {
        let mut f = Finding::new(
            Kind::Restarts,
            if total >= 3 {
                Severity::High
            } else {
                Severity::Medium
            },
            format!("containers restarted {total} time(s)"),
        )
        .cause_and_fix(
            "the container exits (crash, OOM kill) or fails its liveness probe",
            "read the previous container's log and the last termination reason below",
        )
        .detail("restarts", total);
        for r in restarted.iter().filter(|r| r.restarts > 0) {
            f = f.evidence(format!(
                "{}/{}: {} restart(s), last reason {} (exit {})",
                r.pod,
                r.container,
                r.restarts,
                r.reason.as_deref().unwrap_or("unknown"),
                r.exit_code.map_or("?".to_string(), |c| c.to_string())
            ));
        }
        for e in event_lines.iter().take(5) {
            f = f.evidence(e.clone());
        }
        out.push(f);
    }
    out
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

/// Namespace and selector used when neither flags nor the hostname say otherwise.
const DEFAULT_NAMESPACE: &str = "metrics-app";
const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=metrics-app";

/// Fetches the pods behind the target (from the flags, else the HTTPRoute or Ingress serving
/// the hostname and its Service's selector, else metrics-app's defaults), their events, memory
/// usage (when the metrics API is there), processes (via exec, when allowed and `ps` exists in
/// the image) and the previous log tail of restarted containers.
pub async fn collect(target: &Target) -> Result<KubeEvidence, kube::Error> {
    use kube::api::{Api, ListParams, LogParams};

    let client = kube::Client::try_default().await?;
    let mut notes = Vec::new();
    let (namespace, selector) = match (&target.namespace, &target.selector) {
        (ns, Some(sel)) => (
            ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            sel.clone(),
        ),
        (ns, None) => match discover(&client, &target.host).await {
            Some((dns, sel)) => {
                notes.push(format!(
                    "pods found from the route for {}: namespace {dns}, selector {sel}",
                    target.host
                ));
                (ns.clone().unwrap_or(dns), sel)
            }
            None => (
                ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
                DEFAULT_SELECTOR.to_string(),
            ),
        },
    };
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let events_api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let events = events_api
        .list(&ListParams::default().fields("involvedObject.kind=Pod"))
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object
                .name
                .as_ref()
                .is_some_and(|n| names.contains(n))
        })
        .collect();
    let mut previous_logs = Vec::new();
    let mut memory = Vec::new();
    let mut processes = Vec::new();
    let metrics_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &kube::api::ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        },
    );
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match metrics_api.get(&name).await {
            Ok(m) => memory.extend(super::kube_more::memory_usage(pod, &m.data)),
            Err(e) => notes.push(format!("memory usage of {name}: metrics API: {e}")),
        }
        match exec_ps(&pods_api, &name).await {
            Ok(text) => processes.push((name.clone(), text)),
            Err(e) => notes.push(format!(
                "processes of {name}: exec of `ps` failed ({e}); distroless images have no ps"
            )),
        }
        let statuses = container_statuses(pod);
        for cs in statuses.iter().filter(|c| c.restart_count > 0) {
            let params = LogParams {
                container: Some(cs.name.clone()),
                previous: true,
                tail_lines: Some(20),
                ..LogParams::default()
            };
            // A missing previous log (already rotated) is not an error of the diagnosis.
            if let Ok(text) = pods_api.logs(&name, &params).await {
                previous_logs.push((format!("{name}/{}", cs.name), text));
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

/// The (namespace, selector) of the pods serving `host`, via HTTPRoutes or Ingresses in any
/// namespace and the backend Service's selector.
async fn discover(client: &kube::Client, host: &str) -> Option<(String, String)> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::{Api, ListParams};

    let routes_api: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: "gateway.networking.k8s.io".into(),
            version: "v1".into(),
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "HTTPRoute".into(),
            plural: "httproutes".into(),
        },
    );
    let routes: Vec<serde_json::Value> = routes_api
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect()
        })
        .unwrap_or_default();
    let ingresses: Vec<serde_json::Value> = Api::<Ingress>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect()
        })
        .unwrap_or_default();
    let (ns, svc) = super::kube_more::backend_for_host(host, &routes, &ingresses)?;
    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get(&svc)
        .await
        .ok()?;
    Some((ns, super::kube_more::selector_of(&service)?))
}

/// Runs `ps` in the pod's first container and returns its output.
async fn exec_ps(pods: &kube::api::Api<Pod>, name: &str) -> Result<String, String> {
    use tokio::io::AsyncReadExt;

    let mut attached = pods
        .exec(
            name,
            ["ps", "-eo", "pid,ppid,pcpu,args"],
            &kube::api::AttachParams::default().stderr(false),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    if let Some(mut stdout) = attached.stdout() {
        let _ = stdout.read_to_string(&mut out).await;
    }
    attached.join().await.map_err(|e| e.to_string())?;
    if out.trim().is_empty() {
        return Err("no output".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded<T: serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
        #[derive(serde::Deserialize)]
        struct List<T> {
            items: Vec<T>,
        }
        match serde_json::from_str::<List<T>>(json) {
            Ok(l) => l.items,
            Err(e) => panic!("recorded object does not parse: {e}"),
        }
    }

    #[test]
    fn a_running_pod_whose_last_termination_was_oomkilled_is_found() {
        let pods: Vec<Pod> = recorded(include_str!("../../tests/data/pods-oomkilled.json"));
        let events: Vec<Event> = recorded(include_str!("../../tests/data/events-oomkilled.json"));
        let f = findings(&pods, &events);
        let kinds: Vec<Kind> = f.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![Kind::OomKilled, Kind::Restarts]);
        assert!(
            f[0].evidence[0].contains("OOMKilled (exit 137)"),
            "{:?}",
            f[0].evidence
        );
        assert!(f[0].evidence[0].contains("memory limit 256Mi"));
        assert!(f[1].evidence.iter().any(|e| e.contains("BackOff")));
    }

    #[test]
    fn healthy_pods_say_nothing() {
        let pods: Vec<Pod> = recorded(include_str!("../../tests/data/pods-healthy.json"));
        assert!(findings(&pods, &[]).is_empty());
    }
}
