//! Environments and promotion as commits, planned by pure functions.
//!
//! The environments (dev, staging, prod, … in that order) are the `environments:` map of
//! [`ENVIRONMENTS_FILE`], which the root Application renders into one `metrics-app-<name>`
//! Application each. Their image tags are the one thing that changes between deploys, and
//! each change is a commit in the in-cluster repository ArgoCD reads:
//!
//! - [`plan_deploy`]: `appctl up` gives the first environment (dev) the image it built and
//!   keeps every other environment's image (or gives it its first one);
//! - [`plan_promotion`]: `appctl promote --from dev --to staging` gives staging dev's image;
//! - [`plan_rollback`]: `appctl rollback --env staging` finds staging's last promotion commit
//!   that is not reverted yet, for `git revert`.
//!
//! Each takes the file's text (and the git log) and returns the new text and the commit
//! message, or an error saying what to do; the git work is in [`super::gitops`]. The file is
//! edited as text, one line per image, so its comments survive; the result is parsed again
//! and compared, so an edit that changed anything else is refused.
//!
//! Flux reads the same tags from its own files: [`overlay_changes`] gives each environment
//! whose tag a change sets its `deploy/flux/apps/<env>/kustomization.yaml` with that tag, and
//! [`super::gitops`] writes both in the same commit, so `git revert` of a promotion rolls both
//! engines' files back.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::flux;
use super::{Error, Result};

/// The file holding the environments, relative to the repository root.
pub const ENVIRONMENTS_FILE: &str = "deploy/argocd/values.yaml";

/// Trailer naming the environment a promotion commit changed.
pub const PROMOTE_TRAILER: &str = "Appctl-Promote";
/// Trailer naming the commit a rollback commit reverts.
pub const REVERTS_TRAILER: &str = "Appctl-Reverts";

/// One environment as the file declares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Environment {
    /// Its name (`dev`): the Application is `metrics-app-<name>`.
    pub name: String,
    /// Whether the file enables it (appctl up overrides this with `--env`).
    pub enabled: bool,
    /// Its namespace.
    pub namespace: String,
    /// Its public hostname.
    pub host: String,
    /// Its image.
    pub image: Image,
    /// Where its password is in OpenBao (KV v2 under `secret/`).
    pub secret_path: String,
}

/// An image reference `repository:tag`; an empty tag means "no image yet".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// e.g. `metrics-app`.
    pub repository: String,
    /// e.g. `3f2a1c04b5d6`; empty: nothing deployed or promoted yet.
    pub tag: String,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// A change of the environments file: its new text and the commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The whole new file.
    pub content: String,
    /// The commit message (subject, blank line, body with trailers).
    pub message: String,
}

fn bad_file(what: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{ENVIRONMENTS_FILE}: {what}"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The environments of the file, in the file's order.
pub fn parse(text: &str) -> Result<Vec<Environment>> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(bad_file)?;
    let Some(map) = doc.get("environments").and_then(Value::as_mapping) else {
        return Err(bad_file("no `environments:` map"));
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let name = scalar(k).ok_or_else(|| bad_file("an environment name is not a string"))?;
        let field = |path: &[&str]| -> Result<String> {
            let mut cur = v;
            for p in path {
                cur = cur.get(*p).ok_or_else(|| {
                    bad_file(format!("environments.{name}.{} is missing", path.join(".")))
                })?;
            }
            if cur.is_null() {
                return Ok(String::new());
            }
            scalar(cur).ok_or_else(|| {
                bad_file(format!(
                    "environments.{name}.{} is not a string",
                    path.join(".")
                ))
            })
        };
        out.push(Environment {
            enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            namespace: field(&["namespace"])?,
            host: field(&["host"])?,
            image: Image {
                repository: field(&["image", "repository"])?,
                tag: field(&["image", "tag"])?,
            },
            secret_path: field(&["secretPath"])?,
            name,
        });
    }
    if out.is_empty() {
        return Err(bad_file("`environments:` is empty"));
    }
    Ok(out)
}

/// The environment called `name`, or a usage error listing the known ones.
pub fn find<'a>(envs: &'a [Environment], name: &str) -> Result<&'a Environment> {
    envs.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown environment {name:?}: {ENVIRONMENTS_FILE} declares {}",
            names(envs)
        ))
    })
}

fn names(envs: &[Environment]) -> String {
    envs.iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--env dev,staging` checked against the file: the names in the file's order, each once.
pub fn select(envs: &[Environment], arg: &str) -> Result<Vec<String>> {
    let mut wanted = Vec::new();
    for name in arg.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "--env {arg:?}: an empty name; pass names separated by commas, e.g. --env dev,staging"
            )));
        }
        find(envs, name)?;
        wanted.push(name);
    }
    Ok(envs
        .iter()
        .filter(|e| wanted.contains(&e.name.as_str()))
        .map(|e| e.name.clone())
        .collect())
}

/// A tag Docker accepts (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`): also what keeps the YAML line
/// written below a plain string.
fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{tag:?} is not an image tag (letters, digits, `_`, `.`, `-`, at most 128)"
        )))
    }
}

fn check_repository(repo: &str) -> Result<()> {
    let ok = !repo.is_empty()
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad_file(format!("{repo:?} is not an image repository")))
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The trailing ` # comment` of a line, if any (outside quotes is good enough here: the
/// lines edited hold a flow map of plain scalars).
fn trailing_comment(line: &str) -> &str {
    match line.find(" #") {
        // With the spaces before it, so the comment stays where it was.
        Some(i) => &line[line[..i].trim_end_matches(' ').len()..],
        None => "",
    }
}

/// `text` with environment `env`'s image set to `image`: its `image:` line rewritten as a flow
/// map (`image: {repository: R, tag: "T"}`), keeping indentation and a trailing comment;
/// then checked by parsing both: only that image changed.
pub fn set_image(text: &str, env: &str, image: &Image) -> Result<String> {
    check_repository(&image.repository)?;
    check_tag(&image.tag)?;
    let before = parse(text)?;
    find(&before, env)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "environments:")
        .ok_or_else(|| bad_file("no `environments:` line at the start of a line"))?;
    // The environment's block: its key line one level in, up to the next key at that level.
    let mut env_line = None;
    let mut level = None;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(l) {
            continue;
        }
        let ind = indent_of(l);
        if ind == 0 {
            break;
        }
        let lvl = *level.get_or_insert(ind);
        if ind == lvl && l.trim_start().trim_end() == format!("{env}:") {
            env_line = Some((i, lvl));
            break;
        }
    }
    let (env_i, lvl) = env_line.ok_or_else(|| {
        bad_file(format!(
            "environment {env} is not written as a `{env}:` block under `environments:`"
        ))
    })?;
    let mut image_i = None;
    for (i, l) in lines.iter().enumerate().skip(env_i + 1) {
        if !is_content(l) {
            continue;
        }
        if indent_of(l) <= lvl {
            break;
        }
        if l.trim_start().starts_with("image:") {
            image_i = Some(i);
            break;
        }
    }
    let image_i =
        image_i.ok_or_else(|| bad_file(format!("environments.{env} has no `image:` line")))?;
    let old = lines[image_i];
    let ind = indent_of(old);
    let rest = old.trim_start()["image:".len()..].trim();
    if !rest.starts_with('{') {
        return Err(bad_file(format!(
            "environments.{env}.image must be one line, `image: {{repository: R, tag: T}}`"
        )));
    }
    let newline = if old.ends_with('\n') { "\n" } else { "" };
    let new_line = format!(
        "{}image: {{repository: {}, tag: \"{}\"}}{}{newline}",
        " ".repeat(ind),
        image.repository,
        image.tag,
        trailing_comment(old.trim_end_matches('\n')),
    );
    let mut out = String::with_capacity(text.len() + 16);
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if i == image_i { &new_line } else { l });
    }
    let after = parse(&out)?;
    let expected: Vec<Environment> = before
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.name == env {
                e.image = image.clone();
            }
            e
        })
        .collect();
    if after != expected {
        return Err(bad_file(format!(
            "rewriting environments.{env}.image would change more than that image; edit it by hand"
        )));
    }
    // Everything outside `environments` too.
    let strip = |t: &str| -> Result<Value> {
        let mut v: Value = serde_yaml_ng::from_str(t).map_err(bad_file)?;
        if let Some(m) = v.as_mapping_mut() {
            m.remove("environments");
        }
        Ok(v)
    };
    if strip(text)? != strip(&out)? {
        return Err(bad_file(format!(
            "rewriting environments.{env}.image would change other values; edit it by hand"
        )));
    }
    Ok(out)
}

/// `appctl up`'s commit: the first environment (dev) runs `repository:tag`, the image just
/// built; every other environment keeps the image it has in `kept` (the in-cluster file before
/// this checkout was pushed over it), or gets `tag` too when it has none there (first `up`,
/// a new environment, an empty tag). `None` when `current` already says all that.
pub fn plan_deploy(current: &str, kept: Option<&str>, tag: &str) -> Result<Option<Change>> {
    check_tag(tag)?;
    let envs = parse(current)?;
    let kept = match kept {
        Some(k) => parse(k)?,
        None => Vec::new(),
    };
    let mut text = current.to_string();
    let mut lines = Vec::new();
    for (i, e) in envs.iter().enumerate() {
        let previous = kept
            .iter()
            .find(|k| k.name == e.name && !k.image.tag.is_empty());
        let (image, why) = match previous {
            _ if i == 0 => (
                Image {
                    repository: e.image.repository.clone(),
                    tag: tag.into(),
                },
                "built by appctl up",
            ),
            Some(k) => (k.image.clone(), "kept"),
            None => (
                Image {
                    repository: e.image.repository.clone(),
                    tag: tag.into(),
                },
                "its first image",
            ),
        };
        if image != e.image {
            text = set_image(&text, &e.name, &image)?;
        }
        lines.push(format!("{}: {image} ({why})", e.name));
    }
    if text == current {
        return Ok(None);
    }
    let first = &envs[0];
    Ok(Some(Change {
        content: text,
        message: format!(
            "deploy {}:{tag} to {}\n\n{}\n\nAppctl-Deploy: {}\n",
            first.image.repository,
            first.name,
            lines.join("\n"),
            first.name
        ),
    }))
}

/// `appctl promote --from FROM --to TO`: TO gets the image FROM has in `current`.
pub fn plan_promotion(current: &str, from: &str, to: &str) -> Result<Change> {
    let envs = parse(current)?;
    let source = find(&envs, from)?;
    let target = find(&envs, to)?;
    if from == to {
        return Err(Error::Usage(format!(
            "--from and --to are both {from}: promote from one environment to another"
        )));
    }
    if source.image.tag.is_empty() {
        return Err(Error::Usage(format!(
            "{from} has no image yet: `appctl up` deploys one to {}, `appctl promote --to {from}` gives it one",
            envs[0].name
        )));
    }
    if source.image == target.image {
        return Err(Error::Usage(format!(
            "{to} already runs {from}'s image {}: nothing to promote",
            source.image
        )));
    }
    let previous = if target.image.tag.is_empty() {
        "none".to_string()
    } else {
        target.image.to_string()
    };
    Ok(Change {
        content: set_image(current, to, &source.image)?,
        message: format!(
            "promote {to} to {} (from {from})\n\n{to}: {previous} -> {}, the image {from} runs.\n\n\
             {PROMOTE_TRAILER}: {to}\nAppctl-From: {from}\nAppctl-Image: {}\nAppctl-Previous: {previous}\n",
            source.image, source.image, source.image
        ),
    })
}

/// The Flux side of a change of the environments file from `before` to `after`: for each
/// environment whose image tag differs, its overlay (`overlays`: environment → the text of
/// [`flux::overlay_file`], for the environments that have one) with the new tag, as (file
/// relative to the repository root, new text), in the file's order. An environment without an
/// overlay runs under ArgoCD only and is left out; an overlay that cannot take the tag is an
/// error, so no commit changes one engine's files and not the other's.
pub fn overlay_changes(
    before: &str,
    after: &str,
    overlays: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>> {
    let old = parse(before)?;
    let mut out = Vec::new();
    for e in parse(after)? {
        let unchanged = old
            .iter()
            .any(|o| o.name == e.name && o.image.tag == e.image.tag);
        let Some(text) = overlays.get(&e.name) else {
            continue;
        };
        if unchanged || e.image.tag.is_empty() {
            continue;
        }
        let new = flux::set_overlay_image_tag(text, &e.name, &e.image.tag)?;
        if new != *text {
            out.push((flux::overlay_file(&e.name), new));
        }
    }
    Ok(out)
}

/// A commit of the in-cluster repository's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full hash.
    pub sha: String,
    /// Whole message.
    pub message: String,
}

/// The format [`parse_log`] reads: `git log --format=` this (hash, unit separator, body,
/// record separator).
pub const LOG_FORMAT: &str = "%H%x1f%B%x1e";

/// Commits from `git log --format=LOG_FORMAT`, newest first.
pub fn parse_log(out: &str) -> Vec<Commit> {
    out.split('\u{1e}')
        .filter_map(|rec| {
            let (sha, message) = rec.trim_start_matches('\n').split_once('\u{1f}')?;
            (!sha.trim().is_empty()).then(|| Commit {
                sha: sha.trim().to_string(),
                message: message.to_string(),
            })
        })
        .collect()
}

fn trailer<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// What `appctl rollback --env ENV` reverts: the commit, and the message of the revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlan {
    /// The promotion commit to revert.
    pub revert: String,
    /// The revert commit's message.
    pub message: String,
}

/// ENV's newest promotion commit in `log` (newest first) that no later rollback reverted.
pub fn plan_rollback(log: &[Commit], env: &str) -> Result<RollbackPlan> {
    let reverted: Vec<&str> = log
        .iter()
        .filter_map(|c| trailer(&c.message, REVERTS_TRAILER))
        .collect();
    let target = log.iter().find(|c| {
        trailer(&c.message, PROMOTE_TRAILER) == Some(env) && !reverted.contains(&c.sha.as_str())
    });
    let Some(c) = target else {
        return Err(Error::Usage(format!(
            "no promotion of {env} to roll back in the in-cluster repository's history (an \
             earlier one may be rolled back already, or gone: `appctl up` pushes the checkout's \
             history and carries each environment's image over in one commit); \
             `appctl promote --from A --to {env}` sets its image directly"
        )));
    };
    let previous = trailer(&c.message, "Appctl-Previous").unwrap_or("its previous image");
    let short: String = c.sha.chars().take(12).collect();
    Ok(RollbackPlan {
        revert: c.sha.clone(),
        message: format!(
            "roll back {env} to {previous} (revert {short})\n\nThis reverts commit {}:\n  {}\n\n\
             Appctl-Rollback: {env}\n{REVERTS_TRAILER}: {}\n",
            c.sha,
            c.message.lines().next().unwrap_or_default(),
            c.sha
        ),
    })
}

#[cfg(test)]
mod tests;
