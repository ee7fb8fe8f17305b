//! The steps of `appctl up --gitops flux` ([`FluxAction`]), carried out against the cluster:
//! install the checked Flux release, wait for its controllers, apply the GitRepository, the
//! platform and the environments, wait until their Kustomizations are Ready.

use std::path::Path;
use std::time::{Duration, Instant};

use super::download::fetch_https;
use crate::platform::flux::{self, FluxAction};
use crate::platform::{Error, Result, cluster};

/// Carries out one of Flux's steps: the files it applies are read from the checkout at `root`,
/// and each wait lasts at most `timeout`.
pub(super) async fn run_flux(
    c: &kube::Client,
    root: &Path,
    timeout: Duration,
    a: &FluxAction,
) -> Result<()> {
    match a {
        FluxAction::InstallFlux => install_flux(c).await,
        FluxAction::WaitControllers => wait_flux_controllers(c, timeout).await,
        FluxAction::ApplyGitRepository { url, revision } => {
            let text = read_file(root, flux::GIT_REPOSITORY_FILE)?;
            let obj = flux::git_repository(&text, url, revision)?;
            let obj =
                serde_json::from_value(obj).map_err(Error::manifest(flux::GIT_REPOSITORY_FILE))?;
            cluster::apply_object(c, obj, Some(flux::FLUX_NAMESPACE)).await
        }
        FluxAction::ApplyFile { file } => {
            let text = read_file(root, file)?;
            let n = cluster::apply_yaml(c, &text, Some(flux::FLUX_NAMESPACE)).await?;
            println!("    {n} objects applied");
            Ok(())
        }
        FluxAction::ApplyEnvironment { env, image_tag } => {
            let file = flux::environment_file(env);
            let obj = flux::environment_kustomization(
                &read_file(root, &file)?,
                env,
                image_tag.as_deref(),
            )?;
            let obj = serde_json::from_value(obj).map_err(Error::manifest(file))?;
            cluster::apply_object(c, obj, Some(flux::FLUX_NAMESPACE)).await
        }
        FluxAction::WaitReady { kustomizations } => {
            wait_flux_ready(c, kustomizations, timeout).await
        }
    }
}

/// `file` (relative to the checkout's root), as text.
fn read_file(root: &Path, file: &str) -> Result<String> {
    let p = root.join(file);
    std::fs::read_to_string(&p).map_err(Error::io(format!("reading {}", p.display())))
}

/// Downloads Flux's install manifest, checks it ([`flux::verify_install_manifest`]: kinds,
/// namespace, every image one of the release's, pinned by digest) and applies the checked
/// objects; nothing is applied when the check fails.
async fn install_flux(c: &kube::Client) -> Result<()> {
    let url = flux::flux_manifest_url();
    let body = fetch_https(&url).await?;
    let text = String::from_utf8(body).map_err(Error::manifest(url.clone()))?;
    let manifest = flux::verify_install_manifest(&text)?;
    println!(
        "    {url}: {} objects, {} controller images pinned by digest",
        manifest.objects.len(),
        flux::FLUX_IMAGES.len()
    );
    for obj in manifest.objects {
        let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
        let obj = serde_json::from_value(obj).map_err(Error::manifest(what))?;
        cluster::apply_object(c, obj, Some(flux::FLUX_NAMESPACE)).await?;
    }
    println!("    applied (server-side)");
    Ok(())
}

/// Waits, within `timeout` in all, for the CRDs of [`flux::REQUIRED_APIS`] to be Established
/// and the Deployments of [`flux::REQUIRED_CONTROLLERS`] to be Available.
async fn wait_flux_controllers(c: &kube::Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    for (crd, _) in flux::REQUIRED_APIS {
        cluster::wait_crd_established(c, crd, left()).await?;
    }
    for name in flux::REQUIRED_CONTROLLERS {
        cluster::wait_deployment_available(c, flux::FLUX_NAMESPACE, name, left()).await?;
        println!("    {name} available");
    }
    Ok(())
}

/// Waits for each Kustomization to be Ready, in order, within `timeout` in all.
async fn wait_flux_ready(c: &kube::Client, names: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for name in names {
        let left = deadline.saturating_duration_since(Instant::now());
        cluster::wait_kustomization_ready(c, name, left).await?;
        println!("    {name} Ready");
    }
    Ok(())
}
