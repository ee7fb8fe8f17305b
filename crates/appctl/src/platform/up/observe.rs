//! What `appctl up` observes before planning: the tools on this machine, then the cluster and
//! the platform in it. Read-only; anything that cannot be read counts as absent.

use crate::platform::cluster::{self, StateKey};
use crate::platform::flux;
use crate::platform::openbao::observe_backend;
use crate::platform::plan::{self, Observed};
use crate::platform::runner::Runner;
use crate::platform::tools::{self, CLUSTER};
use crate::platform::{Error, Result};

/// The tools on this machine.
pub fn observe_tools(r: &dyn Runner) -> Observed {
    Observed {
        docker: tools::docker(r),
        kind: tools::kind(r),
        kubectl: tools::kubectl(r),
        git: tools::git(r),
        ..Observed::nothing()
    }
}

/// Observes, on top of the tools in `machine`, the cluster and the platform in it when it
/// exists. Read-only; anything that cannot be read counts as absent.
pub async fn observe(
    r: &dyn Runner,
    machine: Observed,
    tag: &str,
    secret_paths: &[String],
) -> Observed {
    let mut o = machine;
    if !matches!(o.kind, plan::Tool::Present { .. }) {
        return o;
    }
    o.cluster_exists = tools::cluster_exists(r);
    if !o.cluster_exists {
        return o;
    }
    o.image_loaded = tools::image_loaded(r, tag);
    let Ok(client) = kind_client().await else {
        return o;
    };
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::Api;
    let dep = |ns: &str| Api::<Deployment>::namespaced(client.clone(), ns);
    o.argocd_installed = dep("argocd")
        .get_opt("argocd-server")
        .await
        .ok()
        .flatten()
        .is_some();
    let mut flux_found = 0;
    for name in flux::REQUIRED_CONTROLLERS {
        if let Ok(Some(_)) = dep(flux::FLUX_NAMESPACE).get_opt(name).await {
            flux_found += 1;
        }
    }
    o.flux_installed = flux_found == flux::REQUIRED_CONTROLLERS.len();
    o.git_server_applied = dep("gitops")
        .get_opt("git-server")
        .await
        .ok()
        .flatten()
        .is_some();
    o.bootstrap_applied = o.git_server_applied
        && Api::<Service>::namespaced(client.clone(), "argocd")
            .get_opt("argocd-server-nodeport")
            .await
            .ok()
            .flatten()
            .is_some();
    let token = |ns: &'static str| {
        let client = client.clone();
        async move {
            cluster::secret_value_opt(&client, ns, "openbao-token", "token")
                .await
                .ok()
                .flatten()
        }
    };
    let (bao_token, eso_token) = (token("openbao").await, token("external-secrets").await);
    // Both copies, and the same: External Secrets reads OpenBao with the second.
    o.backend_token_present = bao_token.is_some() && bao_token == eso_token;
    o.backend = observe_backend(&client, bao_token.as_deref(), secret_paths).await;
    let state = cluster::recorded_state(&client).await.unwrap_or_default();
    let recorded = |key: StateKey| state.get(key.key()).cloned();
    o.git_server_revision = recorded(StateKey::PushedCommit);
    o.deployed_image = recorded(StateKey::DeployedImage);
    o.bootstrap_digest = recorded(StateKey::BootstrapDigest);
    o.root_app = cluster::root_app(&client).await.ok().flatten();
    o.apps = cluster::application_states(&client)
        .await
        .unwrap_or_default();
    o
}

/// Where kube-rs looks for the kubeconfig: `KUBECONFIG`, else `~/.kube/config`.
fn kubeconfig_location() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(v) if !v.is_empty() => v,
        _ => std::env::var("HOME")
            .map(|h| format!("{h}/.kube/config"))
            .unwrap_or_else(|_| "~/.kube/config".into()),
    }
}

/// A client for the kind cluster's context; [`Error::NoCluster`] (exit 3) when there is no
/// kubeconfig or no `kind-metrics-app` context in it, [`Error::ClusterUnreachable`] (exit 3)
/// when its API server does not answer.
pub async fn kind_client() -> Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
    let context = format!("kind-{CLUSTER}");
    let no_cluster = |reason: String| Error::NoCluster {
        kubeconfig: kubeconfig_location(),
        reason,
    };
    let kc = Kubeconfig::read().map_err(|e| {
        no_cluster(match &e {
            KubeconfigError::ReadConfig(io, _) if io.kind() == std::io::ErrorKind::NotFound => {
                "no such file".into()
            }
            KubeconfigError::ReadConfig(io, _) => io.to_string(),
            other => other.to_string(),
        })
    })?;
    if !kc.contexts.iter().any(|c| c.name == context) {
        return Err(no_cluster(format!("no context {context}")));
    }
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| no_cluster(format!("context {context}: {e}")))?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(Error::kube(format!("a client for context {context}")))?;
    // One cheap call, so "the cluster is not there" is told apart from a failing request.
    match client.apiserver_version().await {
        Err(e) if !matches!(e, kube::Error::Api(_)) => Err(Error::ClusterUnreachable {
            context,
            server,
            source: Box::new(e),
        }),
        _ => Ok(client),
    }
}
