//! Flux's install manifest, checked before anything is applied: only the kinds of Flux's own
//! installation, in `flux-system`, serving the API versions deploy/flux uses, and every
//! container image one of the release's, rewritten to `image:tag@sha256:…`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    FLUX_IMAGES, FLUX_NAMESPACE, FLUX_VERSION, FluxError, PinnedImage, REQUIRED_APIS,
    REQUIRED_CONTROLLERS, flux_manifest_url,
};

/// The kinds Flux's installation consists of (fluxcd/flux2 `manifests/install`): anything else
/// in the downloaded manifest is refused.
pub const INSTALL_KINDS: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceQuota",
    "Service",
    "Deployment",
    "NetworkPolicy",
];
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

fn manifest_error(detail: impl Into<String>) -> FluxError {
    FluxError::Manifest {
        url: flux_manifest_url(),
        detail: detail.into(),
    }
}

/// The install manifest after [`verify_install_manifest`]: the objects to apply, in the
/// manifest's order, with every image pinned by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    /// The objects, as JSON.
    pub objects: Vec<Value>,
    /// The Deployments it creates (what to wait for).
    pub deployments: Vec<String>,
}

/// Checks the downloaded Flux install manifest and pins its images (see the module doc):
/// only [`INSTALL_KINDS`], namespaced objects only in [`FLUX_NAMESPACE`], every container image
/// one of [`FLUX_IMAGES`] by its tag (rewritten to tag@digest), each of them used, the
/// [`REQUIRED_APIS`] served, the [`REQUIRED_CONTROLLERS`] present.
pub fn verify_install_manifest(yaml: &str) -> Result<VerifiedManifest, FluxError> {
    let by_tag: BTreeMap<String, &PinnedImage> =
        FLUX_IMAGES.iter().map(|i| (i.tagged(), i)).collect();
    let mut objects = Vec::new();
    let mut deployments = Vec::new();
    let mut used = BTreeSet::new();
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| manifest_error(format!("not YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let mut obj: Value = serde_json::to_value(&value)
            .map_err(|e| manifest_error(format!("not a JSON-compatible object: {e}")))?;
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if kind.is_empty() || name.is_empty() {
            return Err(manifest_error("an object without kind or metadata.name"));
        }
        let what = format!("{kind}/{name}");
        if !INSTALL_KINDS.contains(&kind.as_str()) {
            return Err(manifest_error(format!(
                "{what}: Flux's installation has no {kind} objects; refusing the manifest"
            )));
        }
        let namespace = obj["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            if kind == "Namespace" && name != FLUX_NAMESPACE {
                return Err(manifest_error(format!(
                    "{what}: only the {FLUX_NAMESPACE} namespace may be created"
                )));
            }
        } else if namespace != Some(FLUX_NAMESPACE) {
            return Err(manifest_error(format!(
                "{what} is in namespace {namespace:?}, not {FLUX_NAMESPACE}"
            )));
        }
        match kind.as_str() {
            "Deployment" => {
                pin_images(&mut obj, &what, &by_tag, &mut used)?;
                deployments.push(name);
            }
            "CustomResourceDefinition" => {
                for v in obj["spec"]["versions"].as_array().into_iter().flatten() {
                    if let (Some(true), Some(version)) = (v["served"].as_bool(), v["name"].as_str())
                    {
                        served.insert((name.clone(), version.to_string()));
                    }
                }
            }
            _ => {}
        }
        objects.push(obj);
    }
    let unused: Vec<String> = FLUX_IMAGES
        .iter()
        .filter(|i| !used.contains(i.name))
        .map(PinnedImage::tagged)
        .collect();
    if !unused.is_empty() {
        return Err(manifest_error(format!(
            "no Deployment runs {}: this is not the {FLUX_VERSION} manifest",
            unused.join(", ")
        )));
    }
    for (crd, version) in REQUIRED_APIS {
        if !served.contains(&(crd.to_string(), version.to_string())) {
            return Err(manifest_error(format!(
                "CRD {crd} does not serve {version}, which deploy/flux uses"
            )));
        }
    }
    for c in REQUIRED_CONTROLLERS {
        if !deployments.iter().any(|d| d == c) {
            return Err(manifest_error(format!("no Deployment {c}")));
        }
    }
    Ok(VerifiedManifest {
        objects,
        deployments,
    })
}

fn pin_images(
    obj: &mut Value,
    what: &str,
    by_tag: &BTreeMap<String, &PinnedImage>,
    used: &mut BTreeSet<&'static str>,
) -> Result<(), FluxError> {
    let spec = &mut obj["spec"]["template"]["spec"];
    let mut count = 0;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let Some(pin) = by_tag.get(&image) else {
                return Err(manifest_error(format!(
                    "{what}: image {image:?} is not one of the {FLUX_VERSION} controller images"
                )));
            };
            c["image"] = Value::String(pin.pinned());
            used.insert(pin.name);
            count += 1;
        }
    }
    if count == 0 {
        return Err(manifest_error(format!("{what} has no containers")));
    }
    Ok(())
}
