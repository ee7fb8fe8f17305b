//! What `appctl up` applies before the GitOps engine takes over: the files of deploy/bootstrap
//! (with their digest, so a second `up` re-applies them only when they changed), namespaces
//! and Secrets; and the random hex strings of generated passwords and tokens, temporary
//! directories and Flux fetch requests.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::platform::cluster::{self, StateKey};
use crate::platform::plan::GitOps;
use crate::platform::{Error, Result};

/// The one bootstrap file Flux needs: the others configure ArgoCD.
pub const GIT_SERVER_FILE: &str = "deploy/bootstrap/git-server.yaml";

/// The bootstrap files `gitops` applies: every one for ArgoCD, [`GIT_SERVER_FILE`] for Flux.
pub fn engine_bootstrap_files(root: &Path, gitops: GitOps) -> Result<Vec<(PathBuf, String)>> {
    let mut files = bootstrap_files(root)?;
    if gitops == GitOps::Flux {
        files.retain(|(f, _)| f.ends_with(GIT_SERVER_FILE));
        if files.is_empty() {
            return Err(Error::NotFound(format!(
                "{GIT_SERVER_FILE} in the checkout"
            )));
        }
    }
    Ok(files)
}

/// Applies the bootstrap `files` and records their `digest` in ConfigMap gitops/appctl-state.
pub(super) async fn apply_bootstrap(
    c: &kube::Client,
    files: &[(PathBuf, String)],
    digest: &str,
) -> Result<()> {
    for (file, yaml) in files {
        let n = cluster::apply_yaml_as(c, yaml, None, cluster::BOOTSTRAP_MANAGER).await?;
        println!("    {}: {n} objects applied", file.display());
    }
    cluster::record_state(c, StateKey::BootstrapDigest, digest).await
}

/// Every `deploy/bootstrap/*.yaml` of the checkout, by name, with its text.
pub fn bootstrap_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let dir = root.join("deploy/bootstrap");
    let entries =
        std::fs::read_dir(&dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let file = entry
            .map_err(Error::io(format!("listing {}", dir.display())))?
            .path();
        if file.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&file)
                .map_err(Error::io(format!("reading {}", file.display())))?;
            files.push((file, text));
        }
    }
    files.sort();
    Ok(files)
}

/// SHA-256 over the bootstrap files' names and contents: changes when a file is added,
/// removed or edited.
pub fn bootstrap_digest(files: &[(PathBuf, String)]) -> String {
    let mut h = Sha256::new();
    for (file, text) in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// Random bytes as hex, from the OS.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Error::Io {
        what: "reading random bytes from the OS".into(),
        source: e
            .raw_os_error()
            .map(std::io::Error::from_raw_os_error)
            .unwrap_or_else(|| std::io::Error::other(e.to_string())),
    })?;
    Ok(hex(&b))
}

/// `bytes` as lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) async fn ensure_namespace(c: &kube::Client, ns: &str) -> Result<()> {
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }))
    .map_err(Error::manifest(format!("Namespace {ns}")))?;
    cluster::apply_object(c, obj, None).await
}

pub(in crate::platform) async fn apply_secret(
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
    .map_err(Error::manifest(format!("Secret {ns}/{name}")))?;
    cluster::apply_object(c, obj, None).await
}
