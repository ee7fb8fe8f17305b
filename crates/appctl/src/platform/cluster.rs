//! Every Kubernetes API interaction of the platform commands, through kube-rs: server-side
//! apply of multi-document manifests, ArgoCD Application states, waiting, Secrets, pod and HPA
//! status, rollback patches, and port-forwards. Tested against a mocked API server
//! (tower-test) in `tests/platform_cluster.rs`.

use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde::Serialize;
use serde_json::json;

use super::plan::AppState;
use super::{Error, Result};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "appctl";
/// ArgoCD's namespace.
pub const ARGOCD_NS: &str = "argocd";

/// The ArgoCD Application resource.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Server-side applies every document of `yaml` (force: appctl owns what it applies);
/// objects without a namespace get `default_ns` when namespaced. Returns how many.
pub async fn apply_yaml(
    client: &kube::Client,
    yaml: &str,
    default_ns: Option<&str>,
) -> Result<usize> {
    apply_yaml_as(client, yaml, default_ns, FIELD_MANAGER).await
}

/// [`apply_yaml`] with another field manager: objects appctl changes on top of an upstream
/// manifest (ArgoCD's `argocd-cmd-params-cm`) keep their own manager, so re-applying the
/// upstream manifest does not remove those fields.
pub async fn apply_yaml_as(
    client: &kube::Client,
    yaml: &str,
    default_ns: Option<&str>,
    manager: &str,
) -> Result<usize> {
    let mut n = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value =
            serde_yaml_ng::Value::deserialize(doc).map_err(|e| Error::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_yaml_ng::from_value(value).map_err(|e| Error::Manifest(e.to_string()))?;
        apply_object_as(client, obj, default_ns, manager).await?;
        n += 1;
    }
    Ok(n)
}

use serde::Deserialize;

/// Server-side applies one object as appctl.
pub async fn apply_object(
    client: &kube::Client,
    obj: DynamicObject,
    default_ns: Option<&str>,
) -> Result<()> {
    apply_object_as(client, obj, default_ns, FIELD_MANAGER).await
}

/// Server-side applies one object as `manager`.
pub async fn apply_object_as(
    client: &kube::Client,
    obj: DynamicObject,
    default_ns: Option<&str>,
    manager: &str,
) -> Result<()> {
    let types = obj
        .types
        .clone()
        .ok_or_else(|| Error::Manifest("object without apiVersion/kind".into()))?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| Error::Manifest(e.to_string()))?;
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::Manifest(format!("{} without a name", types.kind)))?;
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .or_else(|| default_ns.map(str::to_string))
                .unwrap_or_else(|| "default".into());
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
    };
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// Restarts a Deployment's pods the way `kubectl rollout restart` does (a template
/// annotation), so they pick up changed configuration.
pub async fn restart_deployment(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": now.to_string()
            }}}}})),
        )
        .await?;
    Ok(())
}

/// The states of every Application in ArgoCD's namespace.
pub async fn application_states(client: &kube::Client) -> Result<Vec<AppState>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.iter().map(app_state).collect())
}

/// An Application's name, sync, health and revision.
pub fn app_state(o: &DynamicObject) -> AppState {
    let s = &o.data["status"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("Unknown").to_string();
    AppState {
        name: o.metadata.name.clone().unwrap_or_default(),
        sync: text(&s["sync"]["status"]),
        health: text(&s["health"]["status"]),
        revision: s["sync"]["revision"].as_str().unwrap_or("").to_string(),
    }
}

/// Polls Applications every `poll` until all are Synced and Healthy (at least one exists),
/// calling `progress` whenever the picture changes; fails after `timeout` naming the laggards.
pub async fn wait_synced(
    client: &kube::Client,
    timeout: Duration,
    poll: Duration,
    mut progress: impl FnMut(&[AppState]),
) -> Result<Vec<AppState>> {
    let deadline = Instant::now() + timeout;
    let mut last: Vec<AppState> = Vec::new();
    loop {
        let states = application_states(client).await?;
        if states != last {
            progress(&states);
            last = states.clone();
        }
        if !states.is_empty() && states.iter().all(AppState::is_ready) {
            return Ok(states);
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = states
                .iter()
                .filter(|a| !a.is_ready())
                .map(|a| format!("{} ({}/{})", a.name, a.sync, a.health))
                .collect();
            return Err(Error::Timeout {
                what: "Applications to be Synced and Healthy".into(),
                after: timeout,
                detail: if waiting.is_empty() {
                    "no Application exists yet".into()
                } else {
                    format!("still waiting for {}", waiting.join(", "))
                },
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// A Secret's value, decoded.
pub async fn secret_value(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String> {
    let s: Secret = Api::namespaced(client.clone(), ns).get(name).await?;
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::NotFound(format!("key {key} in Secret {ns}/{name}")))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| Error::NotFound(format!("text in {ns}/{name}")))
}

/// One pod line of `appctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodLine {
    /// Pod name.
    pub name: String,
    /// Ready containers / containers.
    pub ready: String,
    /// Restarts of all containers.
    pub restarts: i32,
    /// Last termination reason and exit code, e.g. `OOMKilled (137)`.
    pub last_termination: Option<String>,
}

/// Pods of `ns`.
pub async fn pods(client: &kube::Client, ns: &str) -> Result<Vec<PodLine>> {
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(list.items.iter().map(pod_line).collect())
}

/// Summarises a pod.
pub fn pod_line(p: &Pod) -> PodLine {
    let statuses = crate::diagnose::kube::container_statuses(p);
    let ready = statuses.iter().filter(|c| c.ready).count();
    let last = statuses.iter().find_map(|c| {
        c.last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| {
                format!(
                    "{} ({})",
                    t.reason.as_deref().unwrap_or("Terminated"),
                    t.exit_code
                )
            })
    });
    PodLine {
        name: p.metadata.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{}", statuses.len()),
        restarts: statuses.iter().map(|c| c.restart_count).sum(),
        last_termination: last,
    }
}

/// An HPA's name, current and desired replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HpaLine {
    /// Name.
    pub name: String,
    /// Current replicas.
    pub current: i32,
    /// Desired replicas.
    pub desired: i32,
    /// Bounds.
    pub min: i32,
    /// Bounds.
    pub max: i32,
}

/// HPAs of `ns`.
pub async fn hpas(client: &kube::Client, ns: &str) -> Result<Vec<HpaLine>> {
    let list = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .iter()
        .map(|h| HpaLine {
            name: h.metadata.name.clone().unwrap_or_default(),
            current: h
                .status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0),
            desired: h.status.as_ref().map(|s| s.desired_replicas).unwrap_or(0),
            min: h.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1),
            max: h.spec.as_ref().map(|s| s.max_replicas).unwrap_or(0),
        })
        .collect())
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollback {
    /// History id rolled back to.
    pub id: i64,
    /// Its revision.
    pub revision: String,
}

/// Rolls Application `app` back to history entry `to` (a revision or a history id), or the
/// one before the current one: disables automated sync of the root Application and of `app`
/// (ArgoCD refuses to roll back an auto-synced app, and auto-sync would undo it), then starts
/// a sync operation at that history entry's revision.
pub async fn rollback(client: &kube::Client, app: &str, to: Option<&str>) -> Result<Rollback> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let current = api.get(app).await?;
    let history = current.data["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let target = pick_history(&history, to)?;
    // The root Application (app of apps) would self-heal the child's sync policy straight back:
    // pause it first. `appctl up` re-applies it with automated sync.
    if app != "root" && api.get_opt("root").await?.is_some() {
        api.patch(
            "root",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
        )
        .await?;
    }
    api.patch(
        app,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
    )
    .await?;
    let source = target["source"].clone();
    let mut sync = json!({"revision": target["revision"]});
    if !source.is_null() {
        sync["source"] = source;
    }
    api.patch(
        app,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "operation": {
                "initiatedBy": {"username": "appctl"},
                "info": [{"name": "Reason", "value": "appctl rollback"}],
                "sync": sync,
            }
        })),
    )
    .await?;
    Ok(Rollback {
        id: target["id"].as_i64().unwrap_or_default(),
        revision: target["revision"].as_str().unwrap_or_default().to_string(),
    })
}

/// The history entry to roll back to: matching `to` (id or revision prefix), else the one
/// before the newest.
pub fn pick_history(history: &[serde_json::Value], to: Option<&str>) -> Result<serde_json::Value> {
    match to {
        Some(t) => history
            .iter()
            .find(|h| {
                h["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(t)
                    || h["revision"]
                        .as_str()
                        .is_some_and(|r| !t.is_empty() && r.starts_with(t))
            })
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "revision or history id {t} in the Application history"
                ))
            }),
        None => {
            if history.len() < 2 {
                return Err(Error::NotFound(
                    "an earlier revision: the Application has been synced only once".into(),
                ));
            }
            Ok(history[history.len() - 2].clone())
        }
    }
}

/// The root Application (app of apps) for `repo_url` at `revision` with image `tag`.
pub fn root_application(repo_url: &str, revision: &str, tag: &str) -> serde_json::Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "root", "namespace": ARGOCD_NS,
                     "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NS},
            "source": {
                "repoURL": repo_url,
                "targetRevision": revision,
                "path": "deploy/argocd",
                "helm": {"parameters": [
                    {"name": "repoURL", "value": repo_url},
                    {"name": "targetRevision", "value": revision},
                    {"name": "metricsApp.image.tag", "value": tag},
                ]},
            },
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                           "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}}},
        }
    })
}

/// What the root Application points at, if it exists.
pub async fn root_app(client: &kube::Client) -> Result<Option<super::plan::RootApp>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let Some(o) = api.get_opt("root").await? else {
        return Ok(None);
    };
    let src = &o.data["spec"]["source"];
    let tag = src["helm"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "metricsApp.image.tag")
        .and_then(|p| p["value"].as_str())
        .unwrap_or_default();
    Ok(Some(super::plan::RootApp {
        repo_url: src["repoURL"].as_str().unwrap_or_default().to_string(),
        revision: src["targetRevision"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        tag: tag.to_string(),
        auto_sync: o.data["spec"]["syncPolicy"]["automated"].is_object(),
    }))
}

/// Forwards a local port on 127.0.0.1 to `port` of pod `ns/pod` until the returned task is
/// aborted; returns the local port.
pub async fn port_forward(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    port: u16,
) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Io(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?
        .port();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pod.to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (pods, pod) = (pods.clone(), pod.clone());
            tokio::spawn(async move {
                let Ok(mut pf) = pods.portforward(&pod, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = pf.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
                drop(pf);
            });
        }
    });
    Ok((local, task))
}

/// The name of a Running pod matching `selector` in `ns`, waiting up to `timeout`.
pub async fn running_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    timeout: Duration,
) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let ready = list.items.iter().find(|p| {
            let c = crate::diagnose::kube::container_statuses(p);
            !c.is_empty() && c.iter().all(|c| c.ready)
        });
        if let Some(p) = ready {
            return Ok(p.metadata.name.clone().unwrap_or_default());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("a ready pod {selector} in {ns}"),
                after: timeout,
                detail: format!("{} pod(s) found, none ready", list.items.len()),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
