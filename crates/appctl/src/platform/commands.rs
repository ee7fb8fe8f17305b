//! The platform subcommands' flags and what they do (besides `up` and `load`, which have
//! their own modules): `status` (in the `status` module), `credentials`, `promote`, `rollback`,
//! `down`.

mod status;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::cluster;
use super::environments;
use super::flux;
use super::gitops;
use super::plan::{self, IN_CLUSTER_REPO, Observed, Tool};
use super::runner::Runner;
use super::tools::{self, CLUSTER};
use super::up::{self, SelectedEnv, UpConfig};
use super::{Error, Result};

pub use status::*;

/// Flags of `appctl up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Use this repository instead of pushing the checkout to the in-cluster git server.
    #[arg(long, requires = "revision")]
    pub repo_url: Option<String>,
    /// Branch, tag or commit of --repo-url.
    #[arg(long, requires = "repo_url")]
    pub revision: Option<String>,
    /// The admin PASSWORD (default: the PASSWORD environment variable, else generated and
    /// printed once).
    #[arg(long, env = "PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Print the plan, with the reason for each step, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the platform to become ready.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Repository root (where Dockerfile and deploy/ are).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Environments to run, comma-separated, from deploy/argocd/values.yaml (dev, staging,
    /// prod); the others are switched off. dev gets the image built here.
    #[arg(long = "env", default_value = "dev", value_name = "ENV,...")]
    pub environments: String,
    /// The GitOps engine: ArgoCD (deploy/argocd) or Flux (deploy/flux; its install manifest
    /// checked and its images pinned by digest). One per cluster.
    #[arg(long, value_enum, default_value_t = plan::GitOps::ArgoCd)]
    pub gitops: plan::GitOps,
}

impl UpArgs {
    /// Validates the flags.
    pub fn validate(self) -> Result<UpConfig> {
        if !self.root.join("deploy/kind/cluster.yaml").is_file() {
            return Err(Error::Usage(format!(
                "--root {}: no deploy/kind/cluster.yaml there; run appctl from the repository root or pass --root",
                self.root.display()
            )));
        }
        if let Some(p) = &self.password
            && p.trim().is_empty()
        {
            return Err(Error::Usage("--password/PASSWORD is empty".into()));
        }
        let file = self.root.join(environments::ENVIRONMENTS_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::Usage(format!("reading {}: {e}", file.display())))?;
        let envs = environments::parse(&text)?;
        let selected = environments::select(&envs, &self.environments)?;
        if self.gitops == plan::GitOps::Flux {
            check_flux(&self.root, &selected, self.repo_url.as_deref())?;
        }
        Ok(UpConfig {
            gitops: self.gitops,
            root: self.root,
            remote: self.repo_url.zip(self.revision),
            password: self.password,
            dry_run: self.dry_run,
            timeout: self.timeout,
            environments: envs
                .iter()
                .map(|e| (e.name.clone(), selected.contains(&e.name)))
                .collect(),
            selected: envs
                .iter()
                .filter(|e| selected.contains(&e.name))
                .map(|e| SelectedEnv {
                    name: e.name.clone(),
                    host: e.host.clone(),
                    secret_path: e.secret_path.clone(),
                })
                .collect(),
        })
    }
}

/// `--gitops flux`: deploy/flux has every selected environment, and Flux can read
/// `--repo-url` (http(s) or ssh).
fn check_flux(root: &std::path::Path, selected: &[String], repo_url: Option<&str>) -> Result<()> {
    let dir = root.join("deploy/flux/bootstrap");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::Usage(format!("--gitops flux: reading {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    flux::check_environments(selected, &flux::environments_from_files(&names))?;
    if let Some(url) = repo_url {
        let file = root.join(flux::GIT_REPOSITORY_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::Usage(format!("reading {}: {e}", file.display())))?;
        flux::git_repository(&text, url, "main")?;
    }
    Ok(())
}

/// Runs `up`.
pub async fn up(r: &dyn Runner, args: UpArgs) -> Result<()> {
    up::run(r, &args.validate()?).await
}

/// The logins `credentials` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// ArgoCD admin password; `None` without ArgoCD (`up --gitops flux`) or once its
    /// initial Secret was deleted.
    pub argocd_password: Option<String>,
    /// Grafana user.
    pub grafana_user: String,
    /// Grafana password.
    pub grafana_password: String,
}

/// Reads the logins from the cluster's Secrets.
pub async fn read_credentials(client: &kube::Client) -> Result<Credentials> {
    Ok(Credentials {
        argocd_password: cluster::secret_value_opt(
            client,
            "argocd",
            "argocd-initial-admin-secret",
            "password",
        )
        .await?,
        grafana_user: cluster::secret_value(
            client,
            "monitoring",
            "kube-prometheus-stack-grafana",
            "admin-user",
        )
        .await?,
        grafana_password: cluster::secret_value(
            client,
            "monitoring",
            "kube-prometheus-stack-grafana",
            "admin-password",
        )
        .await?,
    })
}

/// Runs `credentials`.
pub async fn credentials() -> Result<()> {
    let c = read_credentials(&up::kind_client().await?).await?;
    match &c.argocd_password {
        Some(p) => println!("ArgoCD   http://localhost:8080   user admin   password {p}"),
        None => println!(
            "ArgoCD   none: no Secret argocd/argocd-initial-admin-secret (a Flux cluster, or the \
             Secret was deleted)"
        ),
    }
    println!(
        "Grafana  http://localhost:3000   user {}   password {}",
        c.grafana_user, c.grafana_password
    );
    Ok(())
}

/// Flags of `promote`.
#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    /// The environment whose image is promoted (e.g. dev).
    #[arg(long)]
    pub from: String,
    /// The environment that gets it (e.g. staging).
    #[arg(long)]
    pub to: String,
}

/// The engine of this cluster, which must read the in-cluster repository: appctl commits
/// nowhere else. ArgoCD: the root Application; Flux: the GitRepository `metrics-app`.
enum Engine {
    ArgoCd(plan::RootApp),
    Flux,
}

async fn in_cluster_engine(client: &kube::Client, what: &str) -> Result<Engine> {
    let elsewhere = |url: &str| {
        Error::Usage(format!(
            "this cluster's GitOps engine reads {url}, not the in-cluster repository appctl \
             commits to: make the change there (environments.<env>.image in {}, and the tag in \
             deploy/flux/apps/<env>/kustomization.yaml), as a commit or a revert",
            environments::ENVIRONMENTS_FILE
        ))
    };
    if let Some(root) = cluster::root_app(client).await? {
        if root.repo_url != IN_CLUSTER_REPO {
            return Err(elsewhere(&root.repo_url));
        }
        return Ok(Engine::ArgoCd(root));
    }
    match cluster::flux_source_url(client).await? {
        Some(url) if url != IN_CLUSTER_REPO => Err(elsewhere(&url)),
        Some(_) => Ok(Engine::Flux),
        None => Err(Error::Usage(format!(
            "no root Application and no Flux GitRepository in this cluster: run `appctl up` \
             before `appctl {what}`"
        ))),
    }
}

/// Has the engine read the commit just pushed now, rather than at its next poll.
async fn read_now(client: &kube::Client, engine: &Engine) -> Result<()> {
    match engine {
        Engine::ArgoCd(_) => cluster::refresh_root(client).await,
        Engine::Flux => {
            cluster::request_flux_fetch(client, "metrics-app", &up::random_hex(8)?).await
        }
    }
}

/// Prints a commit appctl pushed: its short hash and message, indented.
fn print_commit(sha: &str, message: &str) {
    println!(
        "committed {} to main of the in-cluster repository:",
        &sha[..sha.len().min(12)]
    );
    for line in message.lines() {
        println!("    {line}");
    }
}

/// Runs `promote`: FROM's image for TO, as one commit in the in-cluster repository; ArgoCD
/// rolls it out.
pub async fn promote(r: &dyn Runner, args: PromoteArgs) -> Result<()> {
    let client = up::kind_client().await?;
    let engine = in_cluster_engine(&client, "promote").await?;
    let (sha, message) = gitops::promote(r, &client, &args.from, &args.to).await?;
    print_commit(&sha, &message);
    read_now(&client, &engine).await?;
    let Engine::ArgoCd(root) = engine else {
        println!(
            "Flux applies it where {to} runs (Kustomization metrics-app-{to}, when `appctl up \
             --gitops flux --env ...,{to}` started it); watch it with `kubectl -n flux-system get \
             kustomizations,helmreleases`. Undo: `appctl rollback --env {to}` (a revert commit).",
            to = args.to
        );
        return Ok(());
    };
    let enabled = format!("environments.{}.enabled", args.to);
    if root
        .parameters
        .iter()
        .any(|(k, v)| *k == enabled && v == "true")
    {
        println!(
            "ArgoCD rolls it out to {to} (Application metrics-app-{to}); watch it with `appctl status`. \
             Undo: `appctl rollback --env {to}` (a revert commit).",
            to = args.to
        );
    } else {
        println!(
            "{to} is not running in this cluster: `appctl up --env ...,{to}` starts it with this image.",
            to = args.to
        );
    }
    Ok(())
}

/// Flags of `rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The GitOps way: revert ENV's last promotion with a new commit in the in-cluster
    /// repository (automated sync stays on).
    #[arg(long, conflicts_with_all = ["to", "app"])]
    pub env: Option<String>,
    /// Revision (commit prefix) or ArgoCD history id to roll back to (default: the previous
    /// one).
    #[arg(long)]
    pub to: Option<String>,
    /// Application to roll back through its ArgoCD history.
    #[arg(long, default_value = "metrics-app-dev")]
    pub app: String,
}

/// Runs `rollback`: a revert commit with `--env`, else ArgoCD's history.
pub async fn rollback(r: &dyn Runner, args: RollbackArgs) -> Result<()> {
    let client = up::kind_client().await?;
    if let Some(env) = &args.env {
        let engine = in_cluster_engine(&client, "rollback --env").await?;
        let (sha, message) = gitops::revert_promotion(r, &client, env).await?;
        print_commit(&sha, &message);
        read_now(&client, &engine).await?;
        match engine {
            Engine::ArgoCd(_) => println!(
                "ArgoCD rolls {env} back (Application metrics-app-{env}); watch it with `appctl status`."
            ),
            Engine::Flux => println!(
                "Flux rolls {env} back (Kustomization metrics-app-{env}); watch it with \
                 `kubectl -n flux-system get kustomizations,helmreleases`."
            ),
        }
        return Ok(());
    }
    let done = cluster::rollback(&client, &args.app, args.to.as_deref()).await?;
    println!(
        "{} rolled back to history id {} (revision {}).\n\
         Automated sync is now OFF for {} and for the root Application (ArgoCD requires it for a \
         rollback; left on, the next sync would undo it).\n\
         When the fix is in git, turn it back on with `appctl up` (it re-applies the root \
         Application, which restores {}'s automated sync).\n\
         The GitOps way instead: `git revert <commit>` and push; ArgoCD syncs the previous state.",
        args.app, done.id, done.revision, args.app, args.app
    );
    Ok(())
}

/// Flags of `down`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Do not ask.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `down`: deletes the kind cluster, after asking unless `--yes`. Without kind it stops
/// as `up` does (a missing prerequisite, exit 2), before asking anything; flags are checked
/// before that.
pub fn down(r: &dyn Runner, args: DownArgs) -> Result<()> {
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "appctl down deletes the cluster and everything in it: pass --yes when not at a terminal".into(),
        ));
    }
    let kind = Observed {
        kind: tools::kind(r),
        ..Observed::nothing()
    };
    // Any kind can delete a cluster: only a missing or broken one stops `down`.
    if !matches!(kind.kind, Tool::Present { .. }) {
        let missing: Vec<_> = plan::prerequisites(&kind)
            .into_iter()
            .filter(|m| m.tool == "kind")
            .collect();
        return Err(up::prerequisites_error(&missing));
    }
    if !args.yes {
        eprint!("Delete the kind cluster {CLUSTER} and everything in it? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(Error::io("reading the answer from the terminal"))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing deleted");
            return Ok(());
        }
    }
    r.run_visible("kind", &["delete", "cluster", "--name", CLUSTER])?;
    println!("cluster {CLUSTER} deleted");
    Ok(())
}
