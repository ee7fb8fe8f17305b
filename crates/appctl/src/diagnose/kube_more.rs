//! The rest of the Kubernetes evidence, as pure functions over API objects: which pods serve
//! a hostname (HTTPRoute or Ingress → Service → its selector), memory usage against the
//! limit (metrics API), and the processes a container runs (`ps` through exec).

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::Value;

use super::model::{Finding, Kind, Severity};

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

/// True when `pattern` (an exact hostname or `*.example.com`) matches `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The backend Service (namespace, name) serving `host`, from HTTPRoutes
/// (gateway.networking.k8s.io/v1) and Ingresses (networking.k8s.io/v1) as JSON objects.
pub fn backend_for_host(
    host: &str,
    routes: &[Value],
    ingresses: &[Value],
) -> Option<(String, String)> {
    for r in routes {
        let ns = r["metadata"]["namespace"].as_str().unwrap_or("default");
        let hosts = r["spec"]["hostnames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !hosts
            .iter()
            .filter_map(Value::as_str)
            .any(|h| host_matches(h, host))
        {
            continue;
        }
        for rule in r["spec"]["rules"].as_array().into_iter().flatten() {
            for b in rule["backendRefs"].as_array().into_iter().flatten() {
                let kind = b["kind"].as_str().unwrap_or("Service");
                if let (true, Some(name)) = (kind == "Service", b["name"].as_str()) {
                    let bns = b["namespace"].as_str().unwrap_or(ns);
                    return Some((bns.to_string(), name.to_string()));
                }
            }
        }
    }
    for i in ingresses {
        let ns = i["metadata"]["namespace"].as_str().unwrap_or("default");
        for rule in i["spec"]["rules"].as_array().into_iter().flatten() {
            if !rule["host"].as_str().is_some_and(|h| host_matches(h, host)) {
                continue;
            }
            for p in rule["http"]["paths"].as_array().into_iter().flatten() {
                if let Some(name) = p["backend"]["service"]["name"].as_str() {
                    return Some((ns.to_string(), name.to_string()));
                }
            }
        }
    }
    None
}

/// A Service's pod selector as a label selector string (`k=v,k2=v2`).
pub fn selector_of(service: &Service) -> Option<String> {
    let sel = service.spec.as_ref()?.selector.as_ref()?;
    if sel.is_empty() {
        return None;
    }
    Some(
        sel.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

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

/// Usage per container from a PodMetrics object (metrics.k8s.io/v1beta1), with the limits of
/// `pod`'s spec.
pub fn memory_usage(pod: &Pod, pod_metrics: &Value) -> Vec<MemoryUsage> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod_metrics["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let container = c["name"].as_str()?.to_string();
            let usage_bytes = quantity_bytes(c["usage"]["memory"].as_str()?)?;
            let limit_bytes = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|x| x.name == container))
                .and_then(|x| x.resources.as_ref())
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(|q| quantity_bytes(&q.0));
            Some(MemoryUsage {
                pod: name.clone(),
                container,
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

    #[test]
    fn a_hostname_leads_to_the_service_behind_the_route_or_ingress() {
        let routes: Vec<Value> = vec![serde_json::json!({
            "metadata": {"name": "metrics-app", "namespace": "metrics-app"},
            "spec": {"hostnames": ["metrics-app.localtest.me"],
                     "rules": [{"backendRefs": [{"name": "metrics-app", "port": 80}]}]}
        })];
        let ingresses: Vec<Value> = vec![serde_json::json!({
            "metadata": {"name": "legacy", "namespace": "legacy"},
            "spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
                {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        })];
        assert_eq!(
            backend_for_host("metrics-app.localtest.me", &routes, &ingresses),
            Some(("metrics-app".into(), "metrics-app".into()))
        );
        assert_eq!(
            backend_for_host("shop.example.com", &routes, &ingresses),
            Some(("legacy".into(), "web".into()))
        );
        assert_eq!(backend_for_host("example.com", &routes, &ingresses), None);
    }

    #[test]
    fn service_selectors_become_label_selectors() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "metrics-app"},
            "spec": {"selector": {"app.kubernetes.io/instance": "metrics-app",
                                  "app.kubernetes.io/name": "metrics-app"}}
        }))
        .unwrap_or_default();
        assert_eq!(
            selector_of(&svc).as_deref(),
            Some("app.kubernetes.io/instance=metrics-app,app.kubernetes.io/name=metrics-app")
        );
    }

    #[test]
    fn memory_near_the_limit_is_found_from_pod_metrics() {
        let pods: Vec<Pod> = {
            #[derive(serde::Deserialize)]
            struct L {
                items: Vec<Pod>,
            }
            serde_json::from_str::<L>(include_str!("../../tests/data/pods-oomkilled.json"))
                .map(|l| l.items)
                .unwrap_or_default()
        };
        let metrics = serde_json::json!({"containers": [
            {"name": "metrics-app", "usage": {"cpu": "12m", "memory": "240Mi"}}]});
        let usage = memory_usage(&pods[0], &metrics);
        assert_eq!(usage[0].limit_bytes, Some(268_435_456.0));
        let f = near_limit(&usage).expect("near");
        assert!(
            f.evidence[0].contains("240 MiB of 256 MiB"),
            "{:?}",
            f.evidence
        );
        let low = serde_json::json!({"containers": [
            {"name": "metrics-app", "usage": {"memory": "40Mi"}}]});
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
