//! Which pods serve a hostname: the HTTPRoute (gateway.networking.k8s.io/v1) or Ingress
//! (networking.k8s.io/v1) naming it, its backend Service, and that Service's selector. The
//! matching is a pure function over typed objects; [`discover`] fetches them and turns a list
//! it could not make (RBAC, an API not installed) into a note, never into "no route".

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde::Deserialize;

use crate::kubeapi::{self, KubeError};

/// The parts of a Gateway API HTTPRoute used here (k8s-openapi has no Gateway API types).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpRoute {
    /// Name and namespace.
    #[serde(default)]
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    /// Hostnames and rules.
    #[serde(default)]
    pub spec: HttpRouteSpec,
}

/// `spec` of an HTTPRoute.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpRouteSpec {
    /// Hostnames it serves (exact or `*.example.com`).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Routing rules.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// One rule of an HTTPRoute.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpRouteRule {
    /// Where matching requests go.
    #[serde(default, rename = "backendRefs")]
    pub backend_refs: Vec<BackendRef>,
}

/// A backend of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackendRef {
    /// `Service` when absent.
    pub kind: Option<String>,
    /// Object name.
    pub name: String,
    /// The route's namespace when absent.
    pub namespace: Option<String>,
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

/// The backend Service (namespace, name) serving `host`, from HTTPRoutes, then Ingresses.
pub fn backend_for_host(
    host: &str,
    routes: &[HttpRoute],
    ingresses: &[Ingress],
) -> Option<(String, String)> {
    for r in routes {
        let ns = r.metadata.namespace.as_deref().unwrap_or("default");
        if !r.spec.hostnames.iter().any(|h| host_matches(h, host)) {
            continue;
        }
        for b in r.spec.rules.iter().flat_map(|rule| &rule.backend_refs) {
            if b.kind.as_deref().unwrap_or("Service") == "Service" {
                let bns = b.namespace.as_deref().unwrap_or(ns);
                return Some((bns.to_string(), b.name.clone()));
            }
        }
    }
    for i in ingresses {
        let ns = i.metadata.namespace.as_deref().unwrap_or("default");
        let rules = i.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            if !rule.host.as_deref().is_some_and(|h| host_matches(h, host)) {
                continue;
            }
            let paths = rule
                .http
                .as_ref()
                .map(|h| h.paths.as_slice())
                .unwrap_or_default();
            for p in paths {
                if let Some(svc) = &p.backend.service {
                    return Some((ns.to_string(), svc.name.clone()));
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

/// The HTTP paths of the pods' probes (`readinessProbe`, `livenessProbe`, `startupProbe`
/// with `httpGet`), as (path, "KIND of POD/CONTAINER"), one per distinct path.
pub fn probe_paths(pods: &[k8s_openapi::api::core::v1::Pod]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            for (kind, probe) in [
                ("readinessProbe", &c.readiness_probe),
                ("livenessProbe", &c.liveness_probe),
                ("startupProbe", &c.startup_probe),
            ] {
                let Some(path) = probe
                    .as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .and_then(|g| g.path.clone())
                else {
                    continue;
                };
                if !out.iter().any(|(p, _)| *p == path) {
                    out.push((path, format!("{kind} of {name}/{}", c.name)));
                }
            }
        }
    }
    out
}

/// The HTTPRoute API.
fn http_routes() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// The (namespace, selector) of the pods serving `host`, if a route or ingress names it.
/// Lists that fail are added to `notes` (so "no route" is only said when both lists ran).
pub async fn discover(
    client: &kube::Client,
    host: &str,
    notes: &mut Vec<String>,
) -> Option<(String, String)> {
    let routes: Vec<HttpRoute> = match kubeapi::list(
        &Api::<DynamicObject>::all_with(client.clone(), &http_routes()),
        &ListParams::default(),
        "httproutes",
        kubeapi::scope(None),
    )
    .await
    {
        Ok(items) => items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Err(e) => {
            notes.push(format!("route discovery: {}", e.note()));
            Vec::new()
        }
    };
    let ingresses: Vec<Ingress> = match kubeapi::list(
        &Api::<Ingress>::all(client.clone()),
        &ListParams::default(),
        "ingresses",
        kubeapi::scope(None),
    )
    .await
    {
        Ok(items) => items,
        Err(e) => {
            notes.push(format!("route discovery: {}", e.note()));
            Vec::new()
        }
    };
    let (ns, svc) = backend_for_host(host, &routes, &ingresses)?;
    match Api::<Service>::namespaced(client.clone(), &ns)
        .get(&svc)
        .await
    {
        Ok(service) => {
            let sel = selector_of(&service);
            if sel.is_none() {
                notes.push(format!(
                    "route discovery: Service {svc} in namespace {ns} has no selector"
                ));
            }
            Some((ns, sel?))
        }
        Err(source) => {
            let e = KubeError::Get {
                what: format!("Service {svc}"),
                scope: kubeapi::scope(Some(&ns)),
                source,
            };
            notes.push(format!("route discovery: {}", e.note()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostname_leads_to_the_service_behind_the_route_or_ingress() {
        let routes: Vec<HttpRoute> = vec![
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "metrics-app", "namespace": "metrics-app"},
                "spec": {"hostnames": ["metrics-app.localtest.me"],
                         "rules": [{"backendRefs": [{"name": "metrics-app", "port": 80}]}]}
            }))
            .unwrap_or_default(),
        ];
        let ingresses: Vec<Ingress> = vec![
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "legacy", "namespace": "legacy"},
                "spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap_or_default(),
        ];
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
    fn probe_paths_come_from_the_pod_spec_once_each() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [{"name": "web",
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "startupProbe": {"tcpSocket": {"port": 8080}}}]}
        }))
        .unwrap_or_default();
        let paths = probe_paths(&[pod.clone(), pod]);
        assert_eq!(
            paths,
            vec![
                (
                    "/readyz".to_string(),
                    "readinessProbe of web-1/web".to_string()
                ),
                (
                    "/healthz".to_string(),
                    "livenessProbe of web-1/web".to_string()
                ),
            ]
        );
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
}
