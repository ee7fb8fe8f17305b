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

mod file;

use std::collections::BTreeMap;

use super::flux;
use super::{Error, Result};
use file::check_tag;
pub use file::{ENVIRONMENTS_FILE, Environment, Image, find, parse, select, set_image};

/// Trailer naming the environment a promotion commit changed.
pub const PROMOTE_TRAILER: &str = "Appctl-Promote";
/// Trailer naming the commit a rollback commit reverts.
pub const REVERTS_TRAILER: &str = "Appctl-Reverts";

/// A change of the environments file: its new text and the commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The whole new file.
    pub content: String,
    /// The commit message (subject, blank line, body with trailers).
    pub message: String,
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
