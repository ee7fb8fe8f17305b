//! Pods, Deployments and HorizontalPodAutoscalers: the status lines of `appctl status`,
//! restarts and replacements, waiting for a Deployment or a ready pod, and the image a
//! Deployment runs.

use std::pin::pin;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde::Serialize;

use super::wait_for;
use crate::platform::{Error, Result};

/// Restarts a Deployment's pods as `kubectl rollout restart` does (kube-rs's
/// [`Api::restart`]), so they pick up changed configuration.
pub async fn restart_deployment(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
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

/// Waits until Deployment `ns/name` is Available (condition `Available` is `True`).
pub async fn wait_deployment_available(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
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

/// The images the containers named `container` of Deployment `ns/name` run, and its
/// rollout (`updated/ready/desired`); `None` when there is no such Deployment.
pub async fn deployment_image(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<(String, String)>> {
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
