//! Every Kubernetes API interaction of the platform commands, through kube-rs. Tested against a
//! mocked API server (tower-test) in `tests/platform_cluster/`.
//!
//! This module holds what every command needs: server-side apply of multi-document manifests,
//! waiting (kube-runtime's `await_condition` and watchers, never a polling loop), Secrets,
//! port-forwards, and what appctl records about the cluster between runs (ConfigMap
//! gitops/appctl-state). The rest is by subject, re-exported here:
//! - `argocd`: ArgoCD's Applications: states, waiting for sync, the root Application,
//!   environments, rollback patches;
//! - `fluxcd`: for `--gitops flux`, Flux's Kustomizations, GitRepository and HelmReleases;
//! - `workloads`: pods, Deployments and HPAs: status lines, restarts, ready pods.

mod argocd;
mod fluxcd;
mod workloads;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::wait::{Condition, await_condition, conditions};
use serde::Deserialize;

use super::{Error, Result};

pub use argocd::*;
pub use fluxcd::*;
pub use workloads::*;

/// Field manager of every server-side apply, unless said otherwise.
pub const FIELD_MANAGER: &str = "appctl";
/// Field manager of what appctl applies on top of ArgoCD's install manifest (deploy/bootstrap):
/// its own, so that re-applying the upstream manifest, which has an empty `argocd-cm`, does not
/// drop our settings.
pub const BOOTSTRAP_MANAGER: &str = "appctl-bootstrap";

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

/// What appctl records about the cluster between runs, in ConfigMap gitops/appctl-state, for
/// `up` to read back: one key each, applied by a field manager of its own ([`record_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey {
    /// The commit `up` pushed to the in-cluster git server.
    PushedCommit,
    /// The image tag `up` committed for the first environment.
    DeployedImage,
    /// The digest of the deploy/bootstrap files `up` applied.
    BootstrapDigest,
}

impl StateKey {
    /// Every key.
    pub const ALL: [StateKey; 3] = [
        StateKey::PushedCommit,
        StateKey::DeployedImage,
        StateKey::BootstrapDigest,
    ];

    /// The key in the ConfigMap.
    pub fn key(self) -> &'static str {
        match self {
            StateKey::PushedCommit => "pushed-commit",
            StateKey::DeployedImage => "deployed-image",
            StateKey::BootstrapDigest => "bootstrap-sha256",
        }
    }

    /// The field manager that applies it, a different one per key: server-side apply removes
    /// the fields a manager applied before and no longer applies, so two keys under one manager
    /// would remove each other.
    pub fn manager(self) -> &'static str {
        match self {
            StateKey::PushedCommit => FIELD_MANAGER,
            StateKey::DeployedImage => "appctl-images",
            StateKey::BootstrapDigest => BOOTSTRAP_MANAGER,
        }
    }
}

/// Records `value` under `key` in ConfigMap gitops/appctl-state, as the key's own field manager.
pub async fn record_state(client: &kube::Client, key: StateKey, value: &str) -> Result<()> {
    let state = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appctl-state", "namespace": "gitops"},
        "data": {key.key(): value}
    }))
    .map_err(Error::manifest("ConfigMap gitops/appctl-state"))?;
    apply_object_as(client, state, None, key.manager()).await
}

/// What [`record_state`] recorded; empty when nothing was (or the namespace does not exist).
pub async fn recorded_state(client: &kube::Client) -> Result<BTreeMap<String, String>> {
    let state = Api::<ConfigMap>::namespaced(client.clone(), "gitops")
        .get_opt("appctl-state")
        .await
        .map_err(Error::kube("get ConfigMap gitops/appctl-state"))?;
    Ok(state.and_then(|c| c.data).unwrap_or_default())
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
