//! `appctl up`: observe, plan, then carry out each step that needs to run, saying what it does
//! and why. Idempotent: every step is skipped when the observed state already has it. With
//! `--gitops flux` the engine's steps are Flux's ([`super::flux`]), carried out here too.
//!
//! - `observe`: what is there (tools, cluster, platform), read-only;
//! - `bootstrap`: deploy/bootstrap, namespaces and Secrets;
//! - `flux_steps`: the steps of `--gitops flux`;
//! - `download`: pinned manifests over HTTPS, checked before use.

mod bootstrap;
mod download;
mod flux_steps;
mod observe;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::flux;
use super::gitops::{commit_images, push_checkout};
use super::openbao::{OPENBAO_PODS, write_password};
use super::plan::{self, Action, GitOps, Source, Step, UpOptions};
use super::runner::Runner;
use super::tools::{self, CLUSTER};
use super::{Error, Result, cluster};
use bootstrap::{apply_bootstrap, ensure_namespace};
use flux_steps::run_flux;

pub(super) use bootstrap::apply_secret;
pub use bootstrap::{
    GIT_SERVER_FILE, bootstrap_digest, bootstrap_files, engine_bootstrap_files, random_hex,
};
pub use download::{fetch_https, fetch_verified, verify_sha256};
pub use observe::{kind_client, observe, observe_tools};

/// ArgoCD release installed (docs/deploy.md).
// renovate: datasource=github-releases depName=argoproj/argo-cd
pub const ARGOCD_VERSION: &str = "v3.3.14";
/// SHA-256 of `manifests/install.yaml` at [`ARGOCD_VERSION`]: what is applied to the cluster is
/// exactly what was pinned, not whatever the URL serves today. Bump it with the version:
/// `git show <version>:manifests/install.yaml | sha256sum` in a clone of argoproj/argo-cd.
pub const ARGOCD_MANIFEST_SHA256: &str =
    "74fe2e5b57b1ca652078c262e057b563efc4dcd317d734479185c2623177aea8";
/// Where its install manifest is fetched from.
pub fn argocd_manifest_url() -> String {
    format!(
        "https://raw.githubusercontent.com/argoproj/argo-cd/{ARGOCD_VERSION}/manifests/install.yaml"
    )
}
/// The app's URL through the gateway in the environment with hostname `host`.
pub fn app_url(host: &str) -> String {
    format!("http://{host}/counter")
}

/// One environment `up` brings up: its name, hostname and password path in OpenBao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedEnv {
    /// e.g. `dev`.
    pub name: String,
    /// e.g. `dev.metrics-app.localtest.me`.
    pub host: String,
    /// e.g. `metrics-app/dev`.
    pub secret_path: String,
}

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
    /// Every environment of deploy/argocd/values.yaml, in order, and whether `--env` selects it.
    pub environments: Vec<(String, bool)>,
    /// The selected ones.
    pub selected: Vec<SelectedEnv>,
    /// The GitOps engine (`--gitops`).
    pub gitops: GitOps,
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
        Action::RestartSecretBackend => "restart OpenBao".into(),
        Action::PushCheckout { commit } => format!("push {commit} to the git server"),
        Action::CommitImage { env, tag } => format!("commit {env}'s image tag {tag}"),
        Action::ApplyRootApp { revision, .. } => format!("apply root Application @ {revision}"),
        Action::WritePassword => "write PASSWORD into OpenBao".into(),
        Action::WaitSynced => "wait for Synced + Healthy".into(),
        Action::CheckGateway => "GET /counter of each environment".into(),
        Action::ApplyGitServer => format!("apply {GIT_SERVER_FILE}"),
        Action::Flux(a) => a.describe(),
    }
}

/// Runs `up`.
pub async fn run(r: &dyn Runner, cfg: &UpConfig) -> Result<()> {
    // Prerequisites first: nothing else runs (not even git) when one is missing, except for a
    // dry run, which shows the whole plan and what a real run would stop on.
    let machine = observe_tools(r);
    let missing = plan::prerequisites(&machine);
    if !missing.is_empty() && !cfg.dry_run {
        return Err(prerequisites_error(&missing));
    }
    let mut stoppers: Vec<String> = missing
        .iter()
        .map(|m| format!("  {}: {} — {}", m.tool, m.problem, m.fix))
        .collect();
    let (tag, commit) = if missing.iter().any(|m| m.tool == "git") {
        ("<commit>".to_string(), "<commit>".to_string())
    } else {
        match tools::image_tag(r, &path(&cfg.root)) {
            Ok(t) => t,
            Err(e) if cfg.dry_run => {
                stoppers.push(format!("  git: {e}"));
                ("<commit>".to_string(), "<commit>".to_string())
            }
            Err(e) => return Err(e.into()),
        }
    };
    let source = match &cfg.remote {
        Some((url, revision)) => Source::Remote {
            url: url.clone(),
            revision: revision.clone(),
        },
        None => Source::Local {
            commit: commit.clone(),
        },
    };
    let bootstrap = engine_bootstrap_files(&cfg.root, cfg.gitops)?;
    let secret_paths: Vec<String> = cfg.selected.iter().map(|e| e.secret_path.clone()).collect();
    let observed = observe(r, machine, &tag, &secret_paths).await;
    let opts = UpOptions {
        image_tag: tag.clone(),
        source,
        bootstrap_digest: bootstrap_digest(&bootstrap),
        environments: cfg.environments.clone(),
        gitops: cfg.gitops,
    };
    let steps = plan::steps(&observed, &opts);
    print_plan(&steps);
    // Two engines would fight over the same objects: refused before anything changes.
    if let Some(conflict) = plan::engine_conflict(&observed, cfg.gitops) {
        if !cfg.dry_run {
            return Err(Error::Usage(conflict));
        }
        stoppers.push(format!("  --gitops: {conflict}"));
    }
    if cfg.dry_run {
        if !stoppers.is_empty() {
            println!(
                "\nA real run would stop before step 1 (exit 2), changing nothing, on:\n{}",
                stoppers.join("\n")
            );
        }
        println!("\n--dry-run: nothing was changed");
        return Ok(());
    }
    let mut client: Option<kube::Client> = None;
    // The in-cluster environments file before this run's push replaced the history, for the
    // commit that carries each environment's image over.
    let mut kept: Option<Option<String>> = None;
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
                let url = argocd_manifest_url();
                let yaml = fetch_verified(&url, ARGOCD_MANIFEST_SHA256).await?;
                println!("    {url}: SHA-256 {ARGOCD_MANIFEST_SHA256} as pinned");
                let n = cluster::apply_yaml(&c, &yaml, Some("argocd")).await?;
                println!("    {n} objects applied (server-side)");
                // The root Application is created later: its kind must be served by then.
                cluster::wait_crd_established(
                    &c,
                    "applications.argoproj.io",
                    Duration::from_secs(120),
                )
                .await?;
            }
            Action::ApplyBootstrap => {
                let c = connect(&mut client).await?;
                apply_bootstrap(&c, &bootstrap, &opts.bootstrap_digest).await?;
                // argocd-server reads server.insecure at start.
                cluster::restart_deployment(&c, "argocd", "argocd-server").await?;
            }
            Action::ApplyGitServer => {
                let c = connect(&mut client).await?;
                // Its NetworkPolicy admits Flux's source-controller as well as ArgoCD.
                apply_bootstrap(&c, &bootstrap, &opts.bootstrap_digest).await?;
            }
            Action::Flux(a) => {
                let c = connect(&mut client).await?;
                run_flux(&c, &cfg.root, cfg.timeout, a).await?;
            }
            Action::CreateBackendToken => {
                let c = connect(&mut client).await?;
                let token = random_hex(24)?;
                for ns in ["openbao", "external-secrets"] {
                    ensure_namespace(&c, ns).await?;
                    apply_secret(&c, ns, "openbao-token", "token", &token).await?;
                }
            }
            Action::RestartSecretBackend => {
                let c = connect(&mut client).await?;
                // OpenBao's StatefulSet updates OnDelete (the chart's default), so a rollout
                // restart would not replace the pod: delete it and wait for the new one.
                let pod = cluster::replace_pods(&c, "openbao", OPENBAO_PODS, cfg.timeout).await?;
                println!("    {pod} runs with the token in Secret openbao-token");
            }
            Action::PushCheckout { commit } => {
                let c = connect(&mut client).await?;
                kept = Some(push_checkout(r, &c, &cfg.root, commit).await?);
            }
            Action::CommitImage { tag, .. } => {
                let c = connect(&mut client).await?;
                commit_images(r, &c, tag, kept.take()).await?;
                // The engine's source exists from the second run on: have it read the commit
                // now rather than at its next poll. On a first run it is created later.
                let asked = match cfg.gitops {
                    GitOps::ArgoCd => cluster::refresh_root(&c).await,
                    GitOps::Flux => {
                        cluster::request_flux_fetch(&c, "metrics-app", &random_hex(8)?).await
                    }
                };
                if let Err(e) = asked {
                    tracing::debug!("asking {} to read the commit now: {e}", cfg.gitops.name());
                }
            }
            Action::ApplyRootApp {
                repo_url,
                revision,
                parameters,
            } => {
                let c = connect(&mut client).await?;
                let obj = serde_json::from_value(cluster::root_application(
                    repo_url, revision, parameters,
                ))
                .map_err(Error::manifest("the root Application"))?;
                cluster::apply_object(&c, obj, None).await?;
            }
            Action::WritePassword => {
                let c = connect(&mut client).await?;
                let w =
                    write_password(&c, cfg.password.as_deref(), &secret_paths, cfg.timeout).await?;
                if let Some(p) = &w.generated {
                    println!(
                        "    generated PASSWORD for {} (shown once, not stored anywhere else): {p}",
                        w.paths.join(", ")
                    );
                } else {
                    println!("    written to {}", w.paths.join(", "));
                }
            }
            Action::WaitSynced => {
                let c = connect(&mut client).await?;
                cluster::wait_synced(&c, cfg.timeout, |states| {
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
            Action::CheckGateway => {
                for e in &cfg.selected {
                    check_gateway(&app_url(&e.host), cfg.timeout).await?;
                }
            }
        }
        println!("    done in {:.0?}", started.elapsed());
    }
    println!();
    for e in &cfg.selected {
        println!(
            "{:<16} {}",
            format!("metrics-app {}", e.name),
            app_url(&e.host)
        );
    }
    let first = cfg
        .selected
        .first()
        .map(|e| app_url(&e.host))
        .unwrap_or_default();
    if cfg.gitops == GitOps::Flux {
        println!(
            "Flux             kubectl -n {} get kustomizations,helmreleases",
            flux::FLUX_NAMESPACE
        );
    } else {
        println!("ArgoCD           http://localhost:8080  (user admin)");
    }
    println!(
        "Grafana          http://localhost:3000\ncredentials      appctl credentials\n\
         next             appctl status | appctl promote --from A --to B | appctl diagnose {first} --kube"
    );
    Ok(())
}

/// The error listing missing prerequisites, each with how to fix it (exit 2).
pub fn prerequisites_error(missing: &[plan::Missing]) -> Error {
    Error::Prerequisites(
        missing
            .iter()
            .map(|m| format!("  {}: {} — {}", m.tool, m.problem, m.fix))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

pub(super) fn path(p: &Path) -> String {
    p.display().to_string()
}

async fn connect(slot: &mut Option<kube::Client>) -> Result<kube::Client> {
    if let Some(c) = slot {
        return Ok(c.clone());
    }
    let c = kind_client().await?;
    *slot = Some(c.clone());
    Ok(c)
}

async fn check_gateway(url: &str, timeout: Duration) -> Result<()> {
    let client = crate::http()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(Error::http(format!("a client for {url}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                println!("    {url} → {}", body.trim());
                return Ok(());
            }
            other => {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: url.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_digest_accepts_exactly_the_pinned_bytes() {
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(verify_sha256("https://x/install.yaml", b"abc", abc).is_ok());
        assert!(
            verify_sha256("https://x/install.yaml", b"abc", &abc.to_uppercase()).is_ok(),
            "hex case does not matter"
        );
        let err = verify_sha256("https://x/install.yaml", b"abd", abc).expect_err("mismatch");
        let msg = err.to_string();
        assert!(
            msg.contains("https://x/install.yaml")
                && msg.contains(&format!("expected {abc}"))
                && msg.contains(
                    "got a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9"
                ),
            "names the URL and both digests: {msg}"
        );
        assert!(matches!(err, Error::Checksum { .. }));
        assert_eq!(err.exit_code(), crate::platform::exit::FAILED);
    }

    #[test]
    fn flux_applies_only_the_git_server_of_deploy_bootstrap_and_argocd_all_of_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let names = |g: GitOps| -> Vec<String> {
            engine_bootstrap_files(&root, g)
                .expect("deploy/bootstrap")
                .iter()
                .map(|(f, _)| f.file_name().unwrap_or_default().to_string_lossy().into())
                .collect()
        };
        assert_eq!(names(GitOps::Flux), ["git-server.yaml"]);
        let argocd = names(GitOps::ArgoCd);
        assert!(argocd.len() > 1 && argocd.contains(&"argocd-ui.yaml".to_string()));
        // The digest follows what is applied: switching engines re-applies the git server.
        let flux = engine_bootstrap_files(&root, GitOps::Flux).expect("deploy/bootstrap");
        let all = engine_bootstrap_files(&root, GitOps::ArgoCd).expect("deploy/bootstrap");
        assert_ne!(bootstrap_digest(&flux), bootstrap_digest(&all));
        let empty = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(empty.path().join("deploy/bootstrap")).expect("mkdir");
        let e = engine_bootstrap_files(empty.path(), GitOps::Flux).expect_err("no git server");
        assert!(e.to_string().contains("git-server.yaml"), "{e}");
    }

    #[test]
    fn the_argocd_pin_is_a_sha256_next_to_its_version() {
        assert_eq!(ARGOCD_MANIFEST_SHA256.len(), 64);
        assert!(
            ARGOCD_MANIFEST_SHA256
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert!(argocd_manifest_url().contains(&format!("/{ARGOCD_VERSION}/manifests/")));
    }

    #[test]
    fn the_bootstrap_digest_changes_with_any_file_and_reads_the_real_directory() {
        let a = vec![(PathBuf::from("d/a.yaml"), "x: 1".to_string())];
        let mut b = a.clone();
        b.push((PathBuf::from("d/argocd-cm.yaml"), "y: 2".into()));
        let mut c = a.clone();
        c[0].1 = "x: 2".into();
        let digests = [
            bootstrap_digest(&a),
            bootstrap_digest(&b),
            bootstrap_digest(&c),
        ];
        assert!(digests[0] != digests[1] && digests[0] != digests[2] && digests[1] != digests[2]);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let files = bootstrap_files(&root).expect("deploy/bootstrap");
        let names: Vec<String> = files
            .iter()
            .map(|(f, _)| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(
            names.contains(&"git-server.yaml".to_string())
                && names.contains(&"argocd-ui.yaml".to_string()),
            "{names:?}"
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "applied in a stable order");
    }
}
