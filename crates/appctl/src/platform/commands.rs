//! The platform subcommands' flags and what they do (besides `up` and `load`, which have
//! their own modules): `status`, `credentials`, `rollback`, `down`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::cluster::{self, HpaLine, PodLine};
use super::plan::{self, AppState, Observed, Tool};
use super::runner::Runner;
use super::tools::{self, CLUSTER};
use super::up::{self, UpConfig};
use super::{Error, Result};

/// Output formats of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

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
        Ok(UpConfig {
            root: self.root,
            remote: self.repo_url.zip(self.revision),
            password: self.password,
            dry_run: self.dry_run,
            timeout: self.timeout,
        })
    }
}

/// Runs `up`.
pub async fn up(r: &dyn Runner, args: UpArgs) -> Result<()> {
    up::run(r, &args.validate()?).await
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Applications.
    pub applications: Vec<AppState>,
    /// metrics-app pods.
    pub pods: Vec<PodLine>,
    /// metrics-app HPAs.
    pub hpas: Vec<HpaLine>,
    /// Whether /counter answers through the gateway, and what.
    pub gateway: String,
}

/// Collects `status` from the cluster (`gateway` from an HTTP probe).
pub async fn collect_status(client: &kube::Client) -> Result<Status> {
    let gateway = match crate::http()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
        .map_err(Error::http(format!("a client for {}", up::APP_URL)))?
        .get(up::APP_URL)
        .send()
        .await
    {
        Ok(r) => format!(
            "{} {}",
            r.status().as_u16(),
            r.text().await.unwrap_or_default().trim()
        ),
        Err(e) => format!("unreachable: {e}"),
    };
    Ok(Status {
        applications: cluster::application_states(client).await?,
        pods: cluster::pods(client, "metrics-app").await?,
        hpas: cluster::hpas(client, "metrics-app").await?,
        gateway,
    })
}

/// Renders `status` as a table.
pub fn status_text(s: &Status) -> String {
    let mut o = String::from("APPLICATION            SYNC        HEALTH       REVISION\n");
    for a in &s.applications {
        o.push_str(&format!(
            "{:<22} {:<11} {:<12} {}\n",
            a.name,
            a.sync,
            a.health,
            a.revision.chars().take(12).collect::<String>()
        ));
    }
    o.push_str("\nPOD                                      READY  RESTARTS  LAST TERMINATION\n");
    for p in &s.pods {
        o.push_str(&format!(
            "{:<40} {:<6} {:<9} {}\n",
            p.name,
            p.ready,
            p.restarts,
            p.last_termination.as_deref().unwrap_or("-")
        ));
    }
    for h in &s.hpas {
        o.push_str(&format!(
            "\nHPA {}: {} current, {} desired ({}..{})\n",
            h.name, h.current, h.desired, h.min, h.max
        ));
    }
    o.push_str(&format!("\ngateway {}: {}\n", up::APP_URL, s.gateway));
    o
}

/// Runs `status`.
pub async fn status(format: Format) -> Result<()> {
    let client = up::kind_client().await?;
    let s = collect_status(&client).await?;
    match format {
        Format::Text => print!("{}", status_text(&s)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(Error::manifest("the status as JSON"))?
        ),
    }
    Ok(())
}

/// The logins `credentials` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// ArgoCD admin password.
    pub argocd_password: String,
    /// Grafana user.
    pub grafana_user: String,
    /// Grafana password.
    pub grafana_password: String,
}

/// Reads the logins from the cluster's Secrets.
pub async fn read_credentials(client: &kube::Client) -> Result<Credentials> {
    Ok(Credentials {
        argocd_password: cluster::secret_value(
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
    println!(
        "ArgoCD   http://localhost:8080   user admin   password {}",
        c.argocd_password
    );
    println!(
        "Grafana  http://localhost:3000   user {}   password {}",
        c.grafana_user, c.grafana_password
    );
    Ok(())
}

/// Flags of `rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// Revision (commit prefix) or ArgoCD history id to roll back to (default: the previous
    /// one).
    #[arg(long)]
    pub to: Option<String>,
    /// Application to roll back.
    #[arg(long, default_value = "metrics-app")]
    pub app: String,
}

/// Runs `rollback`.
pub async fn rollback(args: RollbackArgs) -> Result<()> {
    let client = up::kind_client().await?;
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
