//! `appctl status`: each environment's image wanted (git) and running, sync and health, its
//! gateway's answer, the Applications or Flux Kustomizations, pods and HPAs; as tables or
//! JSON.

use std::time::Duration;

use serde::Serialize;

use crate::platform::cluster::{self, EnvApp, HpaLine, PodLine};
use crate::platform::plan::AppState;
use crate::platform::up;
use crate::platform::{Error, Result};

/// Output formats of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// One environment in `status`: what its Application asks for and what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvStatus {
    /// e.g. `dev`.
    pub env: String,
    /// Its Application (`metrics-app-dev`), sync and health.
    pub application: AppState,
    /// Its namespace.
    pub namespace: String,
    /// The image its Application asks for (from git).
    pub wants: String,
    /// The image its Deployment runs (`None`: no Deployment yet).
    pub runs: Option<String>,
    /// The Deployment's pods: `updated/ready/desired`.
    pub pods: Option<String>,
    /// Its public URL and what it answered.
    pub url: String,
    /// `200 Counter value: 7`, or why not.
    pub gateway: String,
}

impl EnvStatus {
    /// From the environment's Application, its Deployment (image and rollout) and the answer
    /// of its URL.
    pub fn new(e: EnvApp, deployment: Option<(String, String)>, gateway: String) -> Self {
        let (runs, pods) = deployment.unzip();
        Self {
            url: up::app_url(&e.host),
            env: e.env,
            application: e.app,
            namespace: e.namespace,
            wants: e.image,
            runs,
            pods,
            gateway,
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every environment: image wanted and running, sync, health, gateway.
    pub environments: Vec<EnvStatus>,
    /// Applications.
    pub applications: Vec<AppState>,
    /// metrics-app pods of every environment (namespace, pod).
    pub pods: Vec<(String, PodLine)>,
    /// metrics-app HPAs of every environment (namespace, HPA).
    pub hpas: Vec<(String, HpaLine)>,
    /// Flux's Kustomizations in flux-system (name, Ready, Ready's message): empty unless
    /// `appctl up --gitops flux` made this cluster.
    pub flux: Vec<(String, bool, String)>,
}

impl Status {
    /// Which GitOps engine runs the cluster, as far as `status` sees it.
    pub fn engine(&self) -> &'static str {
        match (self.applications.is_empty(), self.flux.is_empty()) {
            (false, true) => "ArgoCD",
            (true, false) => "Flux",
            (false, false) => {
                "ArgoCD and Flux (two engines: `appctl down --yes`, then `appctl up`)"
            }
            (true, true) => "none yet (appctl up)",
        }
    }
}

/// GET `url`: `200 Counter value: 7`, or why not.
async fn probe(url: &str) -> Result<String> {
    Ok(
        match crate::http()
            .timeout(Duration::from_secs(3))
            .no_proxy()
            .build()
            .map_err(Error::http(format!("a client for {url}")))?
            .get(url)
            .send()
            .await
        {
            Ok(r) => format!(
                "{} {}",
                r.status().as_u16(),
                r.text().await.unwrap_or_default().trim()
            ),
            Err(e) => format!("unreachable: {e}"),
        },
    )
}

/// Without ArgoCD (a Flux cluster) its Application kind is not served: the API server answers
/// 404, which means "no Applications", not an error.
fn unless_not_served<T: Default>(r: Result<T>) -> Result<T> {
    match r {
        Err(Error::Kube {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 404 => Ok(T::default()),
        other => other,
    }
}

/// Collects `status` from the cluster (each environment's gateway from an HTTP probe).
pub async fn collect_status(client: &kube::Client) -> Result<Status> {
    let mut envs = Vec::new();
    let mut pods = Vec::new();
    let mut hpas = Vec::new();
    let mut apps = unless_not_served(cluster::env_apps(client).await)?;
    apps.extend(cluster::flux_env_apps(client).await?);
    for e in apps {
        let deployment = cluster::deployment_image(client, &e.namespace, "metrics-app").await?;
        let gateway = probe(&up::app_url(&e.host)).await?;
        for p in cluster::pods(client, &e.namespace).await? {
            pods.push((e.namespace.clone(), p));
        }
        for h in cluster::hpas(client, &e.namespace).await? {
            hpas.push((e.namespace.clone(), h));
        }
        envs.push(EnvStatus::new(e, deployment, gateway));
    }
    let applications = unless_not_served(cluster::application_states(client).await)?;
    Ok(Status {
        environments: envs,
        applications,
        pods,
        hpas,
        flux: cluster::flux_kustomizations(client).await?,
    })
}

/// Renders `status` as tables.
pub fn status_text(s: &Status) -> String {
    let mut o = format!("GitOps engine: {}\n\n", s.engine());
    o.push_str(
        "ENVIRONMENT  SYNC        HEALTH       WANTS                       RUNS                        PODS (updated/ready/desired)\n",
    );
    if s.environments.is_empty() && !s.flux.is_empty() {
        o.push_str(
            "(no environment HelmRelease yet: Flux runs this cluster, see its Kustomizations below)\n",
        );
    } else if s.environments.is_empty() {
        o.push_str("(no environment Application yet: appctl up)\n");
    }
    for e in &s.environments {
        let runs = match &e.runs {
            Some(r) if *r == e.wants => r.clone(),
            Some(r) => format!("{r} (rolling out)"),
            None => "-".into(),
        };
        o.push_str(&format!(
            "{:<12} {:<11} {:<12} {:<27} {:<27} {}\n",
            e.env,
            e.application.sync,
            e.application.health,
            e.wants,
            runs,
            e.pods.as_deref().unwrap_or("-")
        ));
    }
    for e in &s.environments {
        o.push_str(&format!("{:<12} {} → {}\n", e.env, e.url, e.gateway));
    }
    o.push_str("\nAPPLICATION            SYNC        HEALTH       REVISION\n");
    for a in &s.applications {
        o.push_str(&format!(
            "{:<22} {:<11} {:<12} {}\n",
            a.name,
            a.sync,
            a.health,
            a.revision.chars().take(12).collect::<String>()
        ));
    }
    o.push_str(
        "\nNAMESPACE            POD                                      READY  RESTARTS  LAST TERMINATION\n",
    );
    for (ns, p) in &s.pods {
        o.push_str(&format!(
            "{:<20} {:<40} {:<6} {:<9} {}\n",
            ns,
            p.name,
            p.ready,
            p.restarts,
            p.last_termination.as_deref().unwrap_or("-")
        ));
    }
    if !s.flux.is_empty() {
        o.push_str("\nFLUX KUSTOMIZATION     READY  MESSAGE\n");
        for (name, ready, message) in &s.flux {
            o.push_str(&format!(
                "{name:<22} {:<6} {}\n",
                if *ready { "True" } else { "False" },
                message.lines().next().unwrap_or_default()
            ));
        }
    }
    for (ns, h) in &s.hpas {
        o.push_str(&format!(
            "\nHPA {ns}/{}: {} current, {} desired ({}..{})\n",
            h.name, h.current, h.desired, h.min, h.max
        ));
    }
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
