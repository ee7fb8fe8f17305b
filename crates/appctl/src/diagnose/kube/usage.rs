//! Resource use inside the pods: memory against the limit (from the metrics API, when
//! metrics-server is installed) and the processes a container runs (`ps` through exec) —
//! what `kubectl top` and `kubectl exec ps` showed the users. Judging is pure; [`exec_ps`] is
//! the one call.

use k8s_openapi::api::core::v1::Pod;

use crate::diagnose::model::{Finding, Kind, Severity};
use crate::kubeapi::{memory_limit, quantity_bytes};

/// Memory usage of one container, from the metrics API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryUsage {
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Working set, bytes.
    pub usage_bytes: f64,
    /// Memory limit, bytes, if one is set.
    pub limit_bytes: Option<f64>,
}

/// The parts of a PodMetrics object (metrics.k8s.io/v1beta1) used here.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PodMetrics {
    /// Usage per container.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container of a PodMetrics object.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ContainerMetrics {
    /// Container name.
    pub name: String,
    /// Resource name → quantity (`memory` → `240Mi`).
    #[serde(default)]
    pub usage: std::collections::BTreeMap<String, String>,
}

/// Usage per container from a PodMetrics object, with the limits of `pod`'s spec.
pub fn memory_usage(pod: &Pod, pod_metrics: &PodMetrics) -> Vec<MemoryUsage> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod_metrics
        .containers
        .iter()
        .filter_map(|c| {
            let usage_bytes = quantity_bytes(c.usage.get("memory")?)?;
            let limit_bytes = memory_limit(pod, &c.name).and_then(quantity_bytes);
            Some(MemoryUsage {
                pod: name.clone(),
                container: c.name.clone(),
                usage_bytes,
                limit_bytes,
            })
        })
        .collect()
}

/// Share of the limit above which memory is "near the limit".
const NEAR_LIMIT: f64 = 0.9;

/// `memory-near-limit`: a container using 90 % or more of its memory limit.
pub fn near_limit(usage: &[MemoryUsage]) -> Option<Finding> {
    let near: Vec<&MemoryUsage> = usage
        .iter()
        .filter(|u| {
            u.limit_bytes
                .is_some_and(|l| l > 0.0 && u.usage_bytes >= NEAR_LIMIT * l)
        })
        .collect();
    if near.is_empty() {
        return None;
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut f = Finding::new(
        Kind::MemoryNearLimit,
        Severity::High,
        format!(
            "{} container(s) use 90 % or more of their memory limit",
            near.len()
        ),
    )
    .cause_and_fix(
        "memory grows towards the limit; at the limit the kernel kills the container \
         (OOMKilled)",
        "check memory growth per request; fix the growth, or raise the limit for legitimate use",
    );
    for u in near {
        f = f.evidence(format!(
            "{}/{}: {:.0} MiB of {:.0} MiB",
            u.pod,
            u.container,
            mib(u.usage_bytes),
            mib(u.limit_bytes.unwrap_or(0.0))
        ));
    }
    Some(f)
}

/// `child-processes` from `ps -eo pid,ppid,pcpu,args` run inside a container: processes other
/// than PID 1 (and `ps` itself) using 20 % of a CPU or more.
pub fn busy_processes(pod: &str, ps: &str) -> Option<Finding> {
    let busy: Vec<(String, f64, String)> = ps
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.to_string();
            let _ppid = it.next()?;
            let cpu: f64 = it.next()?.parse().ok()?;
            let args: Vec<&str> = it.collect();
            Some((pid, cpu, args.join(" ")))
        })
        .filter(|(pid, cpu, args)| pid != "1" && *cpu >= 20.0 && !args.starts_with("ps "))
        .collect();
    if busy.is_empty() {
        return None;
    }
    let mut f = Finding::new(
        Kind::ChildProcesses,
        Severity::High,
        format!(
            "{} process(es) besides the main one are burning CPU in {pod}",
            busy.len()
        ),
    )
    .cause_and_fix(
        "request handling spawns processes that compete for CPU and outlive the request",
        "never spawn processes per request: run background work as one task on a timer",
    )
    .detail("count", busy.len());
    for (pid, cpu, args) in busy.iter().take(5) {
        f = f.evidence(format!("{pod}: pid {pid} at {cpu:.0} % CPU: `{args}`"));
    }
    Some(f)
}

/// Runs `ps` in the pod's first container and returns its output.
pub async fn exec_ps(pods: &kube::api::Api<Pod>, name: &str) -> Result<String, String> {
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

    #[test]
    fn memory_near_the_limit_is_found_from_pod_metrics() {
        let pods: Vec<Pod> = {
            #[derive(serde::Deserialize)]
            struct L {
                items: Vec<Pod>,
            }
            serde_json::from_str::<L>(include_str!("../../../tests/data/pods-oomkilled.json"))
                .map(|l| l.items)
                .unwrap_or_default()
        };
        let metrics: PodMetrics = serde_json::from_value(serde_json::json!({"containers": [
            {"name": "metrics-app", "usage": {"cpu": "12m", "memory": "240Mi"}}]}))
        .unwrap_or_default();
        let usage = memory_usage(&pods[0], &metrics);
        assert_eq!(usage[0].limit_bytes, Some(268_435_456.0));
        let f = near_limit(&usage).expect("near");
        assert!(
            f.evidence[0].contains("240 MiB of 256 MiB"),
            "{:?}",
            f.evidence
        );
        let low: PodMetrics = serde_json::from_value(serde_json::json!({"containers": [
            {"name": "metrics-app", "usage": {"memory": "40Mi"}}]}))
        .unwrap_or_default();
        assert!(near_limit(&memory_usage(&pods[0], &low)).is_none());
    }

    #[test]
    fn busy_processes_inside_a_container_are_named() {
        let ps = "  PID  PPID %CPU COMMAND\n    \
                  1     0  0.3 python app.py\n   \
                  17     1 81.0 python collector.py\n   \
                  18     1 79.5 python collector.py\n   \
                  30     0  0.0 ps -eo pid,ppid,pcpu,args\n";
        let f = busy_processes("metrics-app-abc", ps).expect("busy");
        assert_eq!(f.details["count"], 2);
        assert!(f.evidence[0].contains("81 % CPU"));
        assert!(busy_processes("p", "  PID  PPID %CPU COMMAND\n 1 0 2.0 app\n").is_none());
    }
}
