//! The edits appctl makes to deploy/flux: where Flux's GitRepository reads this repository, an
//! environment's Kustomization, and an environment's image tag in its overlay.

use serde_json::Value;

use super::{FluxError, GIT_REPOSITORY_FILE, environment_file, overlay_file};

/// `spec.ref` of a GitRepository for `revision`: a 40-hex commit, a full ref name
/// (`refs/tags/v1`, `refs/heads/x`), else a branch.
pub fn git_ref(revision: &str) -> Value {
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        serde_json::json!({ "commit": revision.to_ascii_lowercase() })
    } else if revision.starts_with("refs/") {
        serde_json::json!({ "name": revision })
    } else {
        serde_json::json!({ "branch": revision })
    }
}

/// [`GIT_REPOSITORY_FILE`]'s object (`text`) with `url` and `revision` (see [`git_ref`]).
pub fn git_repository(text: &str, url: &str, revision: &str) -> Result<Value, FluxError> {
    let bad = |detail: String| FluxError::File {
        file: GIT_REPOSITORY_FILE.into(),
        detail,
    };
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("ssh://")) {
        return Err(FluxError::Usage(format!(
            "--repo-url {url:?}: Flux needs an http(s):// or ssh:// URL"
        )));
    }
    if revision.trim().is_empty() {
        return Err(FluxError::Usage("--revision is empty".into()));
    }
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut obj = serde_json::to_value(value).map_err(|e| bad(e.to_string()))?;
    if obj["kind"] != "GitRepository" || obj["metadata"]["name"] != "metrics-app" {
        return Err(bad("expected the GitRepository metrics-app".into()));
    }
    obj["spec"]["url"] = Value::String(url.into());
    obj["spec"]["ref"] = git_ref(revision);
    Ok(obj)
}

/// The Kustomization of environment `env` (`text`: [`environment_file`]), with `image_tag`
/// when given: a JSON patch appended to `spec.patches` that sets the metrics-app
/// HelmRelease's `spec.values.image.tag` after the overlay's own patches (which give every
/// environment `values.image`). The target's name is a kustomize regex, so it matches before
/// and after the overlay's `nameSuffix`; redis-ha's HelmRelease is not matched.
pub fn environment_kustomization(
    text: &str,
    env: &str,
    image_tag: Option<&str>,
) -> Result<Value, FluxError> {
    let file = environment_file(env);
    let bad = |detail: String| FluxError::File {
        file: file.clone(),
        detail,
    };
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut obj = serde_json::to_value(value).map_err(|e| bad(e.to_string()))?;
    let name = format!("metrics-app-{env}");
    if obj["kind"] != "Kustomization" || obj["metadata"]["name"] != name.as_str() {
        return Err(bad(format!("expected the Flux Kustomization {name}")));
    }
    if let Some(tag) = image_tag {
        check_tag(tag)?;
        let patch = serde_json::json!({
            "target": {"group": "helm.toolkit.fluxcd.io", "kind": "HelmRelease", "name": "metrics-app.*"},
            "patch": serde_json::json!([
                {"op": "add", "path": "/spec/values/image/tag", "value": tag}
            ]).to_string()
        });
        match obj["spec"]["patches"].as_array_mut() {
            Some(patches) => patches.push(patch),
            None => obj["spec"]["patches"] = Value::Array(vec![patch]),
        }
    }
    Ok(obj)
}

/// A tag Docker accepts, which also keeps the YAML written with it a plain string.
fn check_tag(tag: &str) -> Result<(), FluxError> {
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || tag.starts_with(['.', '-'])
    {
        return Err(FluxError::Usage(format!(
            "image tag {tag:?}: up to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )));
    }
    Ok(())
}

/// Overlay `text` (`deploy/flux/apps/<env>/kustomization.yaml`) with the image tag `tag`:
/// what `up` (dev's built image) and a promotion commit. Edited as text, one line, so the
/// comments survive; the result is parsed again and must carry the new tag.
pub fn set_overlay_image_tag(text: &str, env: &str, tag: &str) -> Result<String, FluxError> {
    let file = overlay_file(env);
    let bad = |detail: String| FluxError::File {
        file: file.clone(),
        detail,
    };
    check_tag(tag)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let tag_lines: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("tag:"))
        .map(|(i, _)| i)
        .collect();
    let [i] = tag_lines[..] else {
        return Err(bad(format!(
            "expected exactly one `tag:` line (the image tag in the HelmRelease patch), found {}",
            tag_lines.len()
        )));
    };
    let line = lines[i];
    let indent = &line[..line.len() - line.trim_start().len()];
    let newline = if line.ends_with('\n') { "\n" } else { "" };
    let mut out = String::with_capacity(text.len() + tag.len());
    for (j, l) in lines.iter().enumerate() {
        if j == i {
            out.push_str(&format!("{indent}tag: \"{tag}\"{newline}"));
        } else {
            out.push_str(l);
        }
    }
    if overlay_image_tag(&out).map_err(bad)? != tag {
        return Err(bad(
            "the `tag:` line is not the HelmRelease's values.image.tag".into(),
        ));
    }
    Ok(out)
}

/// The image tag an overlay gives its HelmRelease (`spec.values.image.tag` in its patch).
pub fn overlay_image_tag(text: &str) -> Result<String, String> {
    let k: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let patches = k
        .get("patches")
        .and_then(|p| p.as_sequence())
        .ok_or("no patches")?;
    let mut tags = Vec::new();
    for p in patches {
        let Some(body) = p.get("patch").and_then(|b| b.as_str()) else {
            continue;
        };
        let hr: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(body).map_err(|e| format!("a patch is not YAML: {e}"))?;
        if hr.get("kind").and_then(|k| k.as_str()) != Some("HelmRelease") {
            continue;
        }
        let tag = hr
            .get("spec")
            .and_then(|s| s.get("values"))
            .and_then(|v| v.get("image"))
            .and_then(|i| i.get("tag"));
        match tag {
            Some(serde_yaml_ng::Value::String(s)) => tags.push(s.clone()),
            Some(serde_yaml_ng::Value::Number(n)) => tags.push(n.to_string()),
            _ => {}
        }
    }
    match &tags[..] {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one HelmRelease patch with spec.values.image.tag, found {}",
            tags.len()
        )),
    }
}
