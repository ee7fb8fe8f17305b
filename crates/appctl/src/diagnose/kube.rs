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
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
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

/// Fetches pods matching `selector` in `namespace`, their events, and the previous log tail of
/// restarted containers, with the current kubeconfig.
pub async fn collect(namespace: &str, selector: &str) -> Result<KubeEvidence, kube::Error> {
    use kube::api::{Api, ListParams, LogParams};

    let client = kube::Client::try_default().await?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods_api
        .list(&ListParams::default().labels(selector))
        .await?
        .items;
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let events_api: Api<Event> = Api::namespaced(client, namespace);
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
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
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
        namespace: namespace.to_string(),
        selector: selector.to_string(),
        pods,
        events,
        previous_logs,
    })
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
