//! Findings from the pods and their events: `oom-killed` (a Running pod whose last
//! termination was OOMKilled is exactly what cluster analysers miss) and `restarts`, with the
//! warning events next to them. Pure functions, tested on recorded API objects.

use k8s_openapi::api::core::v1::{Event, Pod};

use crate::diagnose::model::{Finding, Kind, Severity};
use crate::kubeapi::{container_statuses, memory_limit};

/// Event reasons worth showing next to restarts.
const EVENT_REASONS: [&str; 5] = ["BackOff", "Unhealthy", "OOMKilling", "Killing", "Failed"];

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
        let limits = |container: &str| memory_limit(pod, container).map(str::to_string);
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
        let pods: Vec<Pod> = recorded(include_str!("../../../tests/data/pods-oomkilled.json"));
        let events: Vec<Event> =
            recorded(include_str!("../../../tests/data/events-oomkilled.json"));
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
        let pods: Vec<Pod> = recorded(include_str!("../../../tests/data/pods-healthy.json"));
        assert!(findings(&pods, &[]).is_empty());
    }
}
