//! ArgoCD's Applications through the Kubernetes API: their states, waiting until they are
//! Synced and Healthy, the root Application (app of apps), the environments' Applications and
//! rollback.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde::Serialize;
use serde_json::json;

use crate::platform::plan::AppState;
use crate::platform::{Error, Result};

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
/// ([`crate::platform::plan::root_parameters`]).
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
pub async fn root_app(client: &kube::Client) -> Result<Option<crate::platform::plan::RootApp>> {
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
    Ok(Some(crate::platform::plan::RootApp {
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
