//! Every Kubernetes API interaction of the platform commands, through kube-rs: server-side
//! apply of multi-document manifests, ArgoCD Application states, waiting (kube-runtime's
//! watchers and `await_condition`, never a polling loop), restarts, Secrets, pod and HPA
//! status, rollback patches, and port-forwards; for `--gitops flux`, Flux's Kustomizations
//! and GitRepository. Tested against a mocked API server
//! (tower-test) in `tests/platform_cluster.rs`.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::watcher::{self, Event, watcher};
use serde::Serialize;
use serde_json::json;

use super::plan::AppState;
use super::{Error, Result};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "appctl";
/// ArgoCD's namespace.
pub const ARGOCD_NS: &str = "argocd";
/// Flux's namespace.
pub const FLUX_NS: &str = super::flux::FLUX_NAMESPACE;

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
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .map_err(Error::manifest(format!("YAML document {}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml_ng::from_value(value)
            .map_err(Error::manifest(format!("YAML document {}", i + 1)))?;
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
    let Some(types) = obj.types.clone() else {
        return Err(Error::NotFound(format!(
            "apiVersion/kind of object {:?}",
            obj.metadata.name.as_deref().unwrap_or("(no name)")
        )));
    };
    let gvk = GroupVersionKind::try_from(&types).map_err(Error::manifest(format!(
        "apiVersion {:?} of a {}",
        types.api_version, types.kind
    )))?;
    let name =
        obj.metadata.name.clone().ok_or_else(|| {
            Error::NotFound(format!("the name of a {} in the manifest", types.kind))
        })?;
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(Error::kube(format!(
            "discover {}/{}",
            types.api_version, types.kind
        )))?;
    let (api, at): (Api<DynamicObject>, String) = match caps.scope {
        Scope::Cluster => (Api::all_with(client.clone(), &ar), name.clone()),
        Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .or_else(|| default_ns.map(str::to_string))
                .unwrap_or_else(|| "default".into());
            (
                Api::namespaced_with(client.clone(), &ns, &ar),
                format!("{ns}/{name}"),
            )
        }
    };
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(Error::kube(format!("apply {} {at}", types.kind)))?;
    Ok(())
}

/// Restarts a Deployment's pods as `kubectl rollout restart` does (kube-rs's
/// [`Api::restart`]), so they pick up changed configuration.
pub async fn restart_deployment(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .restart(name)
        .await
        .map_err(Error::kube(format!("restart Deployment {ns}/{name}")))?;
    Ok(())
}

/// Replaces the pods matching `selector` in `ns`: deletes them and waits for a ready pod
/// that is not one of them; returns its name. For StatefulSets with the `OnDelete` update
/// strategy (OpenBao's chart default), where a rollout restart would change nothing.
pub async fn replace_pods(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    timeout: Duration,
) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let old = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(Error::kube(format!("list pods {selector} in {ns}")))?;
    let mut gone = Vec::new();
    for p in &old.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        api.delete(&name, &Default::default())
            .await
            .map_err(Error::kube(format!("delete pod {ns}/{name}")))?;
        gone.extend(p.metadata.uid.clone());
    }
    ready_pod(client, ns, selector, &gone, timeout).await
}

/// Waits with kube-runtime's [`await_condition`] until object `name` satisfies `cond`, for at
/// most `timeout`; `what` names it in the error.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    timeout: Duration,
    what: &str,
) -> Result<Option<K>>
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(source)) => Err(Error::Wait {
            what: what.into(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            what: what.into(),
            after: timeout,
            detail: "the condition never held".into(),
        }),
    }
}

/// Waits until the CustomResourceDefinition `name` is Established (its kind can be served),
/// e.g. `applications.argoproj.io` after installing ArgoCD and before creating an Application.
pub async fn wait_crd_established(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    wait_for(
        Api::<CustomResourceDefinition>::all(client.clone()),
        name,
        conditions::is_crd_established(),
        timeout,
        &format!("CustomResourceDefinition {name} to be Established"),
    )
    .await
    .map(|_| ())
}

/// The states of every Application in ArgoCD's namespace.
pub async fn application_states(client: &kube::Client) -> Result<Vec<AppState>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list Applications in {ARGOCD_NS}")))?;
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

/// Watches the Applications (kube-runtime's watcher: a list, then a watch) until all are
/// Synced and Healthy (at least one exists), calling `progress` whenever the picture changes;
/// fails after `timeout` naming the laggards. Watch errors are retried with backoff (the API
/// server may restart under load) and the last one is reported if time runs out.
pub async fn wait_synced(
    client: &kube::Client,
    timeout: Duration,
    mut progress: impl FnMut(&[AppState]),
) -> Result<Vec<AppState>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let mut apps: BTreeMap<String, AppState> = BTreeMap::new();
    let mut last_error: Option<String> = None;
    let watch = async {
        let mut events = pin!(watcher(api, watcher::Config::default()).default_backoff());
        // Filled during a (re-)list, swapped in when it is complete.
        let mut listing: Option<BTreeMap<String, AppState>> = None;
        let mut listed = false;
        let mut shown: Option<Vec<AppState>> = None;
        loop {
            match events.try_next().await {
                Ok(Some(Event::Init)) => listing = Some(BTreeMap::new()),
                Ok(Some(Event::InitApply(o))) => {
                    let a = app_state(&o);
                    listing.get_or_insert_default().insert(a.name.clone(), a);
                    continue;
                }
                Ok(Some(Event::InitDone)) => {
                    apps = listing.take().unwrap_or_default();
                    listed = true;
                }
                Ok(Some(Event::Apply(o))) => {
                    let a = app_state(&o);
                    apps.insert(a.name.clone(), a);
                }
                Ok(Some(Event::Delete(o))) => {
                    apps.remove(o.metadata.name.as_deref().unwrap_or_default());
                }
                Ok(None) => return None,
                Err(e) => {
                    last_error = Some(e.to_string());
                    continue;
                }
            }
            if !listed {
                continue;
            }
            let states: Vec<AppState> = apps.values().cloned().collect();
            if shown.as_ref() != Some(&states) {
                progress(&states);
                shown = Some(states.clone());
            }
            if !states.is_empty() && states.iter().all(AppState::is_ready) {
                return Some(states);
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, watch).await;
    if let Ok(Some(states)) = outcome {
        return Ok(states);
    }
    let waiting: Vec<String> = apps
        .values()
        .filter(|a| !a.is_ready())
        .map(|a| format!("{} ({}/{})", a.name, a.sync, a.health))
        .collect();
    let mut detail = if waiting.is_empty() {
        "no Application exists yet".to_string()
    } else {
        format!("still waiting for {}", waiting.join(", "))
    };
    if let Some(e) = last_error {
        detail.push_str(&format!("; last watch error: {e}"));
    }
    Err(Error::Timeout {
        what: "Applications to be Synced and Healthy".into(),
        after: timeout,
        detail,
    })
}

/// A Secret's value, decoded; an error when the Secret or the key is missing.
pub async fn secret_value(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String> {
    secret_value_opt(client, ns, name, key)
        .await?
        .ok_or_else(|| Error::NotFound(format!("key {key} in Secret {ns}/{name}")))
}

/// A Secret's value, decoded; `None` when the Secret or the key does not exist (other API
/// errors are errors).
pub async fn secret_value_opt(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>> {
    let Some(s) = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?
    else {
        return Ok(None);
    };
    let Some(bytes) = s.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    String::from_utf8(bytes.0.clone())
        .map(Some)
        .map_err(Error::manifest(format!(
            "key {key} of Secret {ns}/{name} (not UTF-8)"
        )))
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
        .await
        .map_err(Error::kube(format!("list pods in {ns}")))?;
    Ok(list.items.iter().map(pod_line).collect())
}

/// Summarises a pod.
pub fn pod_line(p: &Pod) -> PodLine {
    let statuses = container_statuses(p);
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
        .await
        .map_err(Error::kube(format!(
            "list HorizontalPodAutoscalers in {ns}"
        )))?;
    Ok(list.items.iter().map(hpa_line).collect())
}

/// Summarises an HPA.
pub fn hpa_line(h: &HorizontalPodAutoscaler) -> HpaLine {
    HpaLine {
        name: h.metadata.name.clone().unwrap_or_default(),
        current: h
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
            .unwrap_or(0),
        desired: h.status.as_ref().map(|s| s.desired_replicas).unwrap_or(0),
        min: h.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1),
        max: h.spec.as_ref().map(|s| s.max_replicas).unwrap_or(0),
    }
}

/// Calls `each` with every change of the HPAs of `ns` (kube-runtime's watcher, retried with
/// backoff) until the returned task is aborted.
pub fn watch_hpas(
    client: &kube::Client,
    ns: &str,
    mut each: impl FnMut(HpaLine) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut hpas = pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        loop {
            match hpas.try_next().await {
                Ok(Some(h)) => each(hpa_line(&h)),
                Ok(None) => return,
                Err(_) => continue,
            }
        }
    })
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
    let current = api
        .get(app)
        .await
        .map_err(Error::kube(format!("get Application {ARGOCD_NS}/{app}")))?;
    let history = current.data["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let target = pick_history(&history, to)?;
    // The root Application (app of apps) would self-heal the child's sync policy straight back:
    // pause it first. `appctl up` re-applies it with automated sync.
    let root = api
        .get_opt("root")
        .await
        .map_err(Error::kube(format!("get Application {ARGOCD_NS}/root")))?;
    if app != "root" && root.is_some() {
        api.patch(
            "root",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
        )
        .await
        .map_err(Error::kube(format!(
            "turn off automated sync of Application {ARGOCD_NS}/root"
        )))?;
    }
    api.patch(
        app,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
    )
    .await
    .map_err(Error::kube(format!(
        "turn off automated sync of Application {ARGOCD_NS}/{app}"
    )))?;
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
    .await
    .map_err(Error::kube(format!(
        "start a sync operation of Application {ARGOCD_NS}/{app}"
    )))?;
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

/// The root Application (app of apps) for `repo_url` at `revision` with Helm `parameters`
/// ([`super::plan::root_parameters`]).
pub fn root_application(
    repo_url: &str,
    revision: &str,
    parameters: &[(String, String)],
) -> serde_json::Value {
    let parameters: Vec<serde_json::Value> = parameters
        .iter()
        .map(|(name, value)| {
            // An image tag stays a string even when a short commit is all digits.
            if name.ends_with(".image.tag") {
                json!({"name": name, "value": value, "forceString": true})
            } else {
                json!({"name": name, "value": value})
            }
        })
        .collect();
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
                "helm": {"parameters": parameters},
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
    let Some(o) = api
        .get_opt("root")
        .await
        .map_err(Error::kube(format!("get Application {ARGOCD_NS}/root")))?
    else {
        return Ok(None);
    };
    let src = &o.data["spec"]["source"];
    Ok(Some(super::plan::RootApp {
        repo_url: src["repoURL"].as_str().unwrap_or_default().to_string(),
        revision: src["targetRevision"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        parameters: helm_parameters(&o.data["spec"]["source"]),
        auto_sync: o.data["spec"]["syncPolicy"]["automated"].is_object(),
    }))
}

/// An Application source's Helm parameters as (name, value) pairs.
pub fn helm_parameters(source: &serde_json::Value) -> Vec<(String, String)> {
    source["helm"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["value"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Asks ArgoCD to re-read the repository for the root Application now (annotation
/// `argocd.argoproj.io/refresh`), instead of at its next poll (3 minutes by default): a
/// commit appctl just pushed reaches the environments' Applications in seconds.
pub async fn refresh_root(client: &kube::Client) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    api.patch(
        "root",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
        ),
    )
    .await
    .map_err(Error::kube(format!("refresh Application {ARGOCD_NS}/root")))?;
    Ok(())
}

/// The Flux Kustomization resource (kustomize.toolkit.fluxcd.io/v1).
pub fn kustomization_resource() -> ApiResource {
    ApiResource {
        group: "kustomize.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
        kind: "Kustomization".into(),
        plural: "kustomizations".into(),
    }
}

/// The Flux GitRepository resource (source.toolkit.fluxcd.io/v1).
pub fn git_repository_resource() -> ApiResource {
    ApiResource {
        group: "source.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "source.toolkit.fluxcd.io/v1".into(),
        kind: "GitRepository".into(),
        plural: "gitrepositories".into(),
    }
}

/// Whether a Flux object is Ready for its current spec: condition `Ready` is `True` and it
/// was set for the object's generation (a `Ready` left from before an edit does not count);
/// with the condition's message, or why there is none.
pub fn flux_ready(o: &DynamicObject) -> (bool, String) {
    let status = &o.data["status"];
    let Some(ready) = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
    else {
        return (false, "no Ready condition yet".into());
    };
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    let observed = ready["observedGeneration"]
        .as_i64()
        .or_else(|| status["observedGeneration"].as_i64());
    let current = o.metadata.generation.is_none() || observed == o.metadata.generation;
    if !current {
        return (
            false,
            format!("not reconciled since the last change ({message})"),
        );
    }
    (ready["status"] == "True", message)
}

/// Waits until the Flux Kustomization `name` (in flux-system) is Ready ([`flux_ready`]), for
/// at most `timeout`; the error says what its Ready condition said last.
pub async fn wait_kustomization_ready(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), FLUX_NS, &kustomization_resource());
    let what = format!("Kustomization {FLUX_NS}/{name} to be Ready");
    let ready = |o: Option<&DynamicObject>| o.is_some_and(|o| flux_ready(o).0);
    match wait_for(api.clone(), name, ready, timeout, &what).await {
        Err(Error::Timeout { what, after, .. }) => {
            let detail = match api.get_opt(name).await {
                Ok(Some(o)) => flux_ready(&o).1,
                Ok(None) => "it does not exist".into(),
                Err(e) => format!("reading it failed: {e}"),
            };
            Err(Error::Timeout {
                what,
                after,
                detail,
            })
        }
        other => other.map(|_| ()),
    }
}

/// Waits until Deployment `ns/name` is Available (condition `Available` is `True`).
pub async fn wait_deployment_available(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let available = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()?.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            })
    };
    wait_for(
        Api::<Deployment>::namespaced(client.clone(), ns),
        name,
        available,
        timeout,
        &format!("Deployment {ns}/{name} to be Available"),
    )
    .await
    .map(|_| ())
}

/// Asks Flux to fetch the GitRepository `name` now (annotation
/// `reconcile.fluxcd.io/requestedAt`, what `flux reconcile source git` sets) rather than at its
/// next interval: a commit appctl just pushed is applied in seconds.
pub async fn request_flux_fetch(client: &kube::Client, name: &str, at: &str) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), FLUX_NS, &git_repository_resource());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": at}}}),
        ),
    )
    .await
    .map_err(Error::kube(format!(
        "annotate GitRepository {FLUX_NS}/{name}"
    )))?;
    Ok(())
}

/// The Flux HelmRelease resource (helm.toolkit.fluxcd.io/v2).
pub fn helm_release_resource() -> ApiResource {
    ApiResource {
        group: "helm.toolkit.fluxcd.io".into(),
        version: "v2".into(),
        api_version: "helm.toolkit.fluxcd.io/v2".into(),
        kind: "HelmRelease".into(),
        plural: "helmreleases".into(),
    }
}

/// An environment's HelmRelease `metrics-app-<env>` (`deploy/flux/apps/<env>`) as `status`
/// shows it, in the shape of an ArgoCD environment: its Ready condition for sync (`Ready` or
/// `NotReady`) and its reason for health, the image and hostname from its values. `None` for
/// any other HelmRelease (`redis-ha-<env>`, the platform's charts).
pub fn flux_env_app(o: &DynamicObject) -> Option<EnvApp> {
    let name = o.metadata.name.clone()?;
    let env = name.strip_prefix("metrics-app-")?.to_string();
    let spec = &o.data["spec"];
    let values = &spec["values"];
    let (ready, _) = flux_ready(o);
    let reason = o.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("Unknown");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Some(EnvApp {
        app: AppState {
            name,
            sync: if ready { "Ready" } else { "NotReady" }.into(),
            health: reason.into(),
            revision: text(&o.data["status"]["lastAttemptedRevision"]),
        },
        namespace: text(&spec["targetNamespace"]),
        host: text(&values["httpRoute"]["hostnames"][0]),
        image: format!(
            "{}:{}",
            text(&values["image"]["repository"]),
            values["image"]["tag"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| values["image"]["tag"].to_string())
        ),
        env,
    })
}

/// The environments' HelmReleases in flux-system ([`flux_env_app`]), by name; empty when
/// Flux is not installed.
pub async fn flux_env_apps(client: &kube::Client) -> Result<Vec<EnvApp>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), FLUX_NS, &helm_release_resource());
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            let mut out: Vec<EnvApp> = list.items.iter().filter_map(flux_env_app).collect();
            out.sort_by(|a, b| a.app.name.cmp(&b.app.name));
            Ok(out)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(Error::Kube {
            what: format!("list HelmReleases in {FLUX_NS}"),
            source: e,
        }),
    }
}

/// Where Flux's GitRepository `flux-system/metrics-app` reads (`spec.url`); `None` when there
/// is none (or Flux is not installed: its CRD is not served).
pub async fn flux_source_url(client: &kube::Client) -> Result<Option<String>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), FLUX_NS, &git_repository_resource());
    match api.get_opt("metrics-app").await {
        Ok(o) => Ok(o.and_then(|o| o.data["spec"]["url"].as_str().map(str::to_string))),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(Error::Kube {
            what: format!("get GitRepository {FLUX_NS}/metrics-app"),
            source: e,
        }),
    }
}

/// The Flux Kustomizations in flux-system, by name, each with whether it is Ready and its
/// Ready message; empty when Flux is not installed (its CRD is not served).
pub async fn flux_kustomizations(client: &kube::Client) -> Result<Vec<(String, bool, String)>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), FLUX_NS, &kustomization_resource());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .map(|o| {
                let (ready, message) = flux_ready(o);
                (o.metadata.name.clone().unwrap_or_default(), ready, message)
            })
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(Error::Kube {
            what: format!("list Kustomizations in {FLUX_NS}"),
            source: e,
        }),
    }
}

/// One environment's Application (label `metrics-app/environment`), as the root chart
/// rendered it: where it deploys and which image it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvApp {
    /// The environment (`dev`).
    pub env: String,
    /// Its Application's state.
    pub app: AppState,
    /// Its namespace.
    pub namespace: String,
    /// Its public hostname (parameter `httpRoute.hostnames[0]`).
    pub host: String,
    /// The image it asks for (`image.repository:image.tag`).
    pub image: String,
}

/// An environment's Application `metrics-app-<env>`; `None` for any other Application, also
/// one that belongs to an environment under another name (its `redis-ha-<env>`).
pub fn env_app(o: &DynamicObject) -> Option<EnvApp> {
    let env = o.metadata.labels.as_ref()?.get("metrics-app/environment")?;
    if o.metadata.name.as_deref() != Some(format!("metrics-app-{env}").as_str()) {
        return None;
    }
    let params = helm_parameters(&o.data["spec"]["source"]);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Some(EnvApp {
        env: env.to_string(),
        app: app_state(o),
        namespace: o.data["spec"]["destination"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        host: param("httpRoute.hostnames[0]"),
        image: format!("{}:{}", param("image.repository"), param("image.tag")),
    })
}

/// Every environment's Application, by name.
pub async fn env_apps(client: &kube::Client) -> Result<Vec<EnvApp>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ARGOCD_NS, &application_resource());
    let list = api
        .list(&ListParams::default().labels("metrics-app/environment"))
        .await
        .map_err(Error::kube(format!("list Applications in {ARGOCD_NS}")))?;
    let mut out: Vec<EnvApp> = list.items.iter().filter_map(env_app).collect();
    out.sort_by(|a, b| a.app.name.cmp(&b.app.name));
    Ok(out)
}

/// The images the containers named `container` of Deployment `ns/name` run, and its
/// rollout (`updated/ready/desired`); `None` when there is no such Deployment.
pub async fn deployment_image(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<(String, String)>> {
    use k8s_openapi::api::apps::v1::Deployment;
    let Some(d) = Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("get Deployment {ns}/{name}")))?
    else {
        return Ok(None);
    };
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == name))
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let st = d.status.unwrap_or_default();
    let desired = d.spec.and_then(|s| s.replicas).unwrap_or(1);
    Ok(Some((
        image,
        format!(
            "{}/{}/{}",
            st.updated_replicas.unwrap_or(0),
            st.ready_replicas.unwrap_or(0),
            desired
        ),
    )))
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
        .map_err(Error::io(format!(
            "binding 127.0.0.1:0 to forward to {ns}/{pod}:{port}"
        )))?;
    let local = listener
        .local_addr()
        .map_err(Error::io("reading the port-forward's local address"))?
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

/// The name of a ready pod matching `selector` in `ns` (not one being deleted), watching the
/// pods (kube-runtime's watcher) for up to `timeout`.
pub async fn running_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    timeout: Duration,
) -> Result<String> {
    ready_pod(client, ns, selector, &[], timeout).await
}

/// [`running_pod`], ignoring the pods whose UID is in `not`.
async fn ready_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    not: &[String],
    timeout: Duration,
) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut seen = 0usize;
    let mut last_error: Option<String> = None;
    let watch = async {
        let mut pods = pin!(
            watcher(api, watcher::Config::default().labels(selector))
                .default_backoff()
                .applied_objects()
        );
        loop {
            match pods.try_next().await {
                Ok(Some(p)) => {
                    seen += 1;
                    let replaced = p.metadata.uid.as_ref().is_some_and(|u| not.contains(u));
                    if pod_ready(&p) && !replaced {
                        return p.metadata.name;
                    }
                }
                Ok(None) => return None,
                Err(e) => last_error = Some(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(Some(name)) => Ok(name),
        _ => Err(Error::Timeout {
            what: format!("a ready pod {selector} in {ns}"),
            after: timeout,
            detail: match last_error {
                Some(e) => format!("last watch error: {e}"),
                None => format!("{seen} pod update(s) seen, none ready"),
            },
        }),
    }
}

/// A pod's container statuses (none before it is scheduled).
pub fn container_statuses(p: &Pod) -> &[k8s_openapi::api::core::v1::ContainerStatus] {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[])
}

/// Every container ready, and the pod not on its way out.
pub fn pod_ready(p: &Pod) -> bool {
    let c = container_statuses(p);
    p.metadata.deletion_timestamp.is_none() && !c.is_empty() && c.iter().all(|c| c.ready)
}
