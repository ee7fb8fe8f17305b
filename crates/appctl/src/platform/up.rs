//! `appctl up`: observe, plan, then carry out each step that needs to run, saying what it does
//! and why. Idempotent: every step is skipped when the observed state already has it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cluster;
use super::plan::{self, Action, Observed, Source, Step, UpOptions};
use super::runner::Runner;
use super::tools::{self, CLUSTER};
use super::{Error, Result};

/// ArgoCD release installed (docs/deploy.md).
pub const ARGOCD_VERSION: &str = "v3.3.0";
/// Where its install manifest is fetched from.
pub fn argocd_manifest_url() -> String {
    format!(
        "https://raw.githubusercontent.com/argoproj/argo-cd/{ARGOCD_VERSION}/manifests/install.yaml"
    )
}
/// The app URL through the gateway.
pub const APP_URL: &str = "http://metrics-app.localtest.me/counter";

/// Checked options of `up`.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Repository root (where deploy/ and the Dockerfile are).
    pub root: PathBuf,
    /// `--repo-url` and `--revision`, when given.
    pub remote: Option<(String, String)>,
    /// `--password` or `PASSWORD`, else generated.
    pub password: Option<String>,
    /// Print the plan only.
    pub dry_run: bool,
    /// How long to wait for the platform.
    pub timeout: Duration,
}

/// Observes the machine and, when the cluster exists, the platform in it.
pub async fn observe(r: &dyn Runner, tag: &str) -> Observed {
    let mut o = Observed {
        docker: tools::docker(r),
        kind: tools::kind(r),
        kubectl: tools::kubectl(r),
        git: tools::git(r),
        ..Observed::nothing()
    };
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
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
    use kube::Api;
    let dep = |ns: &str| Api::<Deployment>::namespaced(client.clone(), ns);
    o.argocd_installed = dep("argocd")
        .get_opt("argocd-server")
        .await
        .ok()
        .flatten()
        .is_some();
    o.bootstrap_applied = dep("gitops")
        .get_opt("git-server")
        .await
        .ok()
        .flatten()
        .is_some()
        && Api::<Service>::namespaced(client.clone(), "argocd")
            .get_opt("argocd-server-nodeport")
            .await
            .ok()
            .flatten()
            .is_some();
    let secret = |ns: &str| Api::<Secret>::namespaced(client.clone(), ns);
    o.backend_token_present = secret("openbao")
        .get_opt("openbao-token")
        .await
        .ok()
        .flatten()
        .is_some()
        && secret("external-secrets")
            .get_opt("openbao-token")
            .await
            .ok()
            .flatten()
            .is_some();
    o.git_server_revision = Api::<ConfigMap>::namespaced(client.clone(), "gitops")
        .get_opt("appctl-state")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data)
        .and_then(|d| d.get("pushed-commit").cloned());
    o.password_present = secret("metrics-app")
        .get_opt("metrics-app-password")
        .await
        .ok()
        .flatten()
        .is_some();
    o.root_app = cluster::root_app(&client).await.ok().flatten();
    o.apps = cluster::application_states(&client)
        .await
        .unwrap_or_default();
    o
}

/// A client for the kind cluster's context.
pub async fn kind_client() -> Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: Some(format!("kind-{CLUSTER}")),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&options)
        .await
        .map_err(|e| Error::NotFound(format!("kubeconfig context kind-{CLUSTER}: {e}")))?;
    Ok(kube::Client::try_from(config)?)
}

/// Prints the plan: one line per step, with `run` or `skip` and the reason.
pub fn print_plan(steps: &[Step]) {
    for (i, s) in steps.iter().enumerate() {
        println!(
            "{:>2}. {:<5} {:<40} {}",
            i + 1,
            if s.run { "run" } else { "skip" },
            describe(&s.action),
            s.reason
        );
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::CreateCluster => format!("create kind cluster {CLUSTER}"),
        Action::BuildImage { tag } => format!("build image metrics-app:{tag}"),
        Action::LoadImage { tag } => format!("load metrics-app:{tag} into kind"),
        Action::InstallArgoCd => format!("install ArgoCD {ARGOCD_VERSION}"),
        Action::ApplyBootstrap => "apply deploy/bootstrap".into(),
        Action::CreateBackendToken => "create the secret backend token".into(),
        Action::PushCheckout { commit } => format!("push {commit} to the git server"),
        Action::ApplyRootApp { revision, .. } => format!("apply root Application @ {revision}"),
        Action::WritePassword => "write PASSWORD into OpenBao".into(),
        Action::WaitSynced => "wait for Synced + Healthy".into(),
        Action::CheckGateway => format!("GET {APP_URL}"),
    }
}

/// Runs `up`.
pub async fn run(r: &dyn Runner, cfg: &UpConfig) -> Result<()> {
    // Prerequisites first: nothing else runs (not even git) when one is missing.
    let machine = Observed {
        docker: tools::docker(r),
        kind: tools::kind(r),
        kubectl: tools::kubectl(r),
        git: tools::git(r),
        ..Observed::nothing()
    };
    let missing = plan::prerequisites(&machine);
    if !missing.is_empty() {
        return Err(prerequisites_error(&missing));
    }
    let (tag, commit) = tools::image_tag(r)?;
    let source = match &cfg.remote {
        Some((url, revision)) => Source::Remote {
            url: url.clone(),
            revision: revision.clone(),
        },
        None => Source::Local {
            commit: commit.clone(),
        },
    };
    let observed = observe(r, &tag).await;
    let opts = UpOptions {
        image_tag: tag.clone(),
        source,
    };
    let steps = plan::plan(&observed, &opts).map_err(|m| prerequisites_error(&m))?;
    print_plan(&steps);
    if cfg.dry_run {
        println!("\n--dry-run: nothing was changed");
        return Ok(());
    }
    let mut password = cfg.password.clone();
    let mut client: Option<kube::Client> = None;
    for s in steps.iter().filter(|s| s.run) {
        println!("==> {}", describe(&s.action));
        let started = Instant::now();
        match &s.action {
            Action::CreateCluster => {
                let config = cfg.root.join("deploy/kind/cluster.yaml");
                r.run_visible(
                    "kind",
                    &[
                        "create",
                        "cluster",
                        "--name",
                        CLUSTER,
                        "--config",
                        &path(&config),
                        "--wait",
                        "120s",
                    ],
                )?;
            }
            Action::BuildImage { tag } => {
                let image = format!("metrics-app:{tag}");
                let arg = format!("GIT_COMMIT={tag}");
                r.run_visible(
                    "docker",
                    &["build", "--build-arg", &arg, "-t", &image, &path(&cfg.root)],
                )?;
            }
            Action::LoadImage { tag } => {
                r.run_visible(
                    "kind",
                    &[
                        "load",
                        "docker-image",
                        &format!("metrics-app:{tag}"),
                        "--name",
                        CLUSTER,
                    ],
                )?;
            }
            Action::InstallArgoCd => {
                let c = connect(&mut client).await?;
                ensure_namespace(&c, "argocd").await?;
                let yaml = fetch(&argocd_manifest_url()).await?;
                let n = cluster::apply_yaml(&c, &yaml, Some("argocd")).await?;
                println!("    {n} objects applied (server-side)");
            }
            Action::ApplyBootstrap => {
                let c = connect(&mut client).await?;
                for f in ["git-server.yaml", "argocd-ui.yaml"] {
                    let yaml = read(&cfg.root.join("deploy/bootstrap").join(f))?;
                    // Its own field manager: re-applying ArgoCD's install manifest (which has
                    // an empty argocd-cmd-params-cm) must not drop server.insecure.
                    cluster::apply_yaml_as(&c, &yaml, None, "appctl-bootstrap").await?;
                }
                // argocd-server reads server.insecure at start.
                cluster::restart_deployment(&c, "argocd", "argocd-server").await?;
            }
            Action::CreateBackendToken => {
                let c = connect(&mut client).await?;
                let token = random_hex(24)?;
                for ns in ["openbao", "external-secrets"] {
                    ensure_namespace(&c, ns).await?;
                    apply_secret(&c, ns, "openbao-token", "token", &token).await?;
                }
            }
            Action::PushCheckout { commit } => {
                let c = connect(&mut client).await?;
                push_checkout(r, &c, &cfg.root, commit).await?;
            }
            Action::ApplyRootApp {
                repo_url,
                revision,
                tag,
            } => {
                let c = connect(&mut client).await?;
                let obj =
                    serde_json::from_value(cluster::root_application(repo_url, revision, tag))
                        .map_err(|e| Error::Manifest(e.to_string()))?;
                cluster::apply_object(&c, obj, None).await?;
            }
            Action::WritePassword => {
                let c = connect(&mut client).await?;
                let pw = match password.take() {
                    Some(p) => p,
                    None => {
                        let p = random_hex(12)?;
                        println!(
                            "    generated PASSWORD (shown once, not stored anywhere else): {p}"
                        );
                        p
                    }
                };
                write_password(&c, &pw, cfg.timeout).await?;
            }
            Action::WaitSynced => {
                let c = connect(&mut client).await?;
                cluster::wait_synced(&c, cfg.timeout, Duration::from_secs(5), |states| {
                    let ready = states.iter().filter(|a| a.is_ready()).count();
                    let waiting: Vec<String> = states
                        .iter()
                        .filter(|a| !a.is_ready())
                        .map(|a| format!("{} {}/{}", a.name, a.sync, a.health))
                        .collect();
                    println!("    {ready}/{} ready  {}", states.len(), waiting.join("  "));
                })
                .await?;
            }
            Action::CheckGateway => check_gateway(cfg.timeout).await?,
        }
        println!("    done in {:.0?}", started.elapsed());
    }
    println!(
        "\nmetrics-app      {APP_URL}\nArgoCD           http://localhost:8080  (user admin)\n\
         Grafana          http://localhost:3000\ncredentials      appctl credentials\n\
         next             appctl status | appctl load {APP_URL} --watch-hpa | appctl diagnose {APP_URL} --kube"
    );
    Ok(())
}

fn prerequisites_error(missing: &[plan::Missing]) -> Error {
    Error::Prerequisites(
        missing
            .iter()
            .map(|m| format!("  {}: {} — {}", m.tool, m.problem, m.fix))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))
}

async fn connect(slot: &mut Option<kube::Client>) -> Result<kube::Client> {
    if let Some(c) = slot {
        return Ok(c.clone());
    }
    let c = kind_client().await?;
    *slot = Some(c.clone());
    Ok(c)
}

/// Random bytes as hex, from the OS.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

async fn ensure_namespace(c: &kube::Client, ns: &str) -> Result<()> {
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }))
    .map_err(|e| Error::Manifest(e.to_string()))?;
    cluster::apply_object(c, obj, None).await
}

async fn apply_secret(
    c: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": {key: value}
    }))
    .map_err(|e| Error::Manifest(e.to_string()))?;
    cluster::apply_object(c, obj, None).await
}

/// GETs an https:// URL (ArgoCD's pinned install manifest) with rustls, ring and the system's
/// root certificates.
async fn fetch(url: &str) -> Result<String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| Error::Http(format!("TLS roots: {e}")))?
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Http(format!("{url}: {e}")))?;
    let resp = tokio::time::timeout(Duration::from_secs(60), client.get(uri))
        .await
        .map_err(|_| Error::Http(format!("{url}: no answer within 60 s")))?
        .map_err(|e| Error::Http(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(Error::Http(format!("{url}: {}", resp.status())));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Http(format!("{url}: {e}")))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| Error::Http(format!("{url}: not UTF-8")))
}

/// Pushes HEAD to the in-cluster Gitea through a port-forward, as user `appctl` (created on
/// first use; password kept in Secret gitops/git-server-admin), then records the commit.
async fn push_checkout(r: &dyn Runner, c: &kube::Client, root: &Path, commit: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};

    let pod = cluster::running_pod(
        c,
        "gitops",
        "app.kubernetes.io/name=git-server",
        Duration::from_secs(300),
    )
    .await?;
    let admin = match cluster::secret_value(c, "gitops", "git-server-admin", "password").await {
        Ok(p) => p,
        Err(_) => {
            let p = random_hex(16)?;
            let pods: Api<Pod> = Api::namespaced(c.clone(), "gitops");
            let proc = pods
                .exec(
                    &pod,
                    [
                        "gitea",
                        "admin",
                        "user",
                        "create",
                        "--username",
                        "appctl",
                        "--password",
                        p.as_str(),
                        "--email",
                        "appctl@localhost",
                        "--admin",
                        "--must-change-password=false",
                    ],
                    &AttachParams::default(),
                )
                .await?;
            proc.join()
                .await
                .map_err(|e| Error::Io(format!("creating the git user: {e}")))?;
            apply_secret(c, "gitops", "git-server-admin", "password", &p).await?;
            p
        }
    };
    let (port, task) = cluster::port_forward(c, "gitops", &pod, 3000).await?;
    let url = format!("http://appctl:{admin}@127.0.0.1:{port}/appctl/metrics-app.git");
    let result = r.run(
        "git",
        &[
            "-C",
            &path(root),
            "push",
            "--force",
            &url,
            "HEAD:refs/heads/main",
        ],
    );
    task.abort();
    // The URL holds a password: never show the command line with it.
    result.map_err(|e| match e {
        super::runner::RunError::Failed { code, stderr, .. } => super::runner::RunError::Failed {
            command: "git push --force http://appctl:***@127.0.0.1/appctl/metrics-app.git HEAD:refs/heads/main".into(),
            code,
            stderr: stderr.replace(&admin, "***"),
        },
        other => other,
    })?;
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appctl-state", "namespace": "gitops"},
        "data": {"pushed-commit": commit}
    }))
    .map_err(|e| Error::Manifest(e.to_string()))?;
    cluster::apply_object(c, obj, None).await
}

/// Writes PASSWORD to OpenBao's KV v2 (`secret/metrics-app-password`, property `password`)
/// through a port-forward, with the generated token.
async fn write_password(c: &kube::Client, password: &str, timeout: Duration) -> Result<()> {
    let token = cluster::secret_value(c, "openbao", "openbao-token", "token").await?;
    let pod = cluster::running_pod(c, "openbao", "app.kubernetes.io/name=openbao", timeout).await?;
    let (port, task) = cluster::port_forward(c, "openbao", &pod, 8200).await?;
    let client = crate::http()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let resp = client
        .post(format!(
            "http://127.0.0.1:{port}/v1/secret/data/metrics-app-password"
        ))
        .header("X-Vault-Token", token)
        .body(serde_json::json!({"data": {"password": password}}).to_string())
        .send()
        .await
        .map_err(|e| Error::Http(e.to_string()));
    task.abort();
    let resp = resp?;
    if !resp.status().is_success() {
        return Err(Error::Http(format!("OpenBao answered {}", resp.status())));
    }
    Ok(())
}

async fn check_gateway(timeout: Duration) -> Result<()> {
    let client = crate::http()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match client.get(APP_URL).send().await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                println!("    {APP_URL} → {}", body.trim());
                return Ok(());
            }
            other => {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: APP_URL.into(),
                        after: timeout,
                        detail: match other {
                            Ok(r) => format!("last answer {}", r.status()),
                            Err(e) => e.to_string(),
                        },
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
