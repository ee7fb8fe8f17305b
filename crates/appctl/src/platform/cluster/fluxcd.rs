//! Flux's objects through the Kubernetes API, for `--gitops flux`: whether Kustomizations are
//! Ready, asking the GitRepository to fetch now, and the environments' HelmReleases in the shape
//! of ArgoCD's environment Applications.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use super::argocd::EnvApp;
use super::wait_for;
use crate::platform::plan::AppState;
use crate::platform::{Error, Result};

/// Flux's namespace.
pub const FLUX_NS: &str = crate::platform::flux::FLUX_NAMESPACE;

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
