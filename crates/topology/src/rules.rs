//! Alert rules for the local Prometheus, taken from the Helm chart's PrometheusRule so there is
//! one source of truth: `helm template … --show-only templates/prometheusrule.yaml`, then the
//! object's `.spec.groups` become a Prometheus rules file. `for:` durations can be shortened
//! for tests; the result is checked with `promtool check rules`.
//!
//! The chart is rendered as release `metrics-app` in namespace `metrics-app`, so its selectors
//! (`job="metrics-app", namespace="metrics-app"`) match the labels [`crate::monitoring`] gives
//! the scraped replicas ([`JOB`], [`NAMESPACE`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The `job` label the chart's rules select (the chart's fullname for release `metrics-app`).
pub const JOB: &str = "metrics-app";
/// The `namespace` label the chart's rules select (the release namespace).
pub const NAMESPACE: &str = "metrics-app";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// helm from `scripts/install-tools` (`.tools/bin/helm`), else `helm` on `PATH`.
pub fn helm_bin() -> PathBuf {
    let local = workspace_root().join(".tools/bin/helm");
    if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    }
}

/// Renders the chart's PrometheusRule and returns a rules file (`groups:` at the top level).
pub fn from_chart(sets: &[&str]) -> Result<String> {
    render_with(&helm_bin(), sets)
}

/// [`from_chart`] with the helm binary `helm`.
fn render_with(helm: &Path, sets: &[&str]) -> Result<String> {
    let chart = workspace_root().join("charts/metrics-app");
    if !chart.join("templates/prometheusrule.yaml").exists() {
        bail!("{} has no templates/prometheusrule.yaml", chart.display());
    }
    let mut cmd = Command::new(helm);
    cmd.args(["template", JOB])
        .arg(&chart)
        .args(["--namespace", NAMESPACE])
        .args(["--show-only", "templates/prometheusrule.yaml"])
        // Required to render at all; irrelevant to the rules.
        .args(["--set", "prometheusRule.enabled=true"])
        .args(["--set", "secret.existingSecret.name=metrics-app"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "helm is missing: it renders the alert rules from the chart. Install it into .tools/bin with `bash scripts/install-tools` (from the repository root), or put helm v3+ on PATH"
        ),
        Err(error) => return Err(error).context("running helm template"),
    };
    if !out.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    spec_groups(&String::from_utf8_lossy(&out.stdout))
}

/// The `.spec` block of a rendered PrometheusRule, de-indented, so `groups:` is top level.
/// (The manifest is block-style YAML as helm renders it; this avoids a YAML dependency.)
pub fn spec_groups(manifest: &str) -> Result<String> {
    let mut out = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        if line.starts_with("spec:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.is_empty() && !line.starts_with(' ') {
                break;
            }
            out.push_str(line.strip_prefix("  ").unwrap_or(line));
            out.push('\n');
        }
    }
    if !out.contains("groups:") {
        bail!("no .spec.groups in the rendered PrometheusRule");
    }
    Ok(out)
}

/// Replaces every `for:` duration with `duration` (test-only shortening).
pub fn override_for(rules: &str, duration: &str) -> String {
    let mut out = String::new();
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("for:") {
            let indent = &line[..line.len() - trimmed.len()];
            // Keep instant alerts (`for: 0m`) instant.
            let keep = matches!(rest.trim(), "0" | "0s" | "0m");
            let value = if keep { rest.trim() } else { duration };
            out.push_str(&format!("{indent}for: {value}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The chart's rules, `for:` optionally overridden, written to `path` and checked with
/// `promtool check rules`. Returns the alert names.
pub fn write_checked(path: &Path, for_override: Option<&str>) -> Result<Vec<String>> {
    let rules = from_chart(&[])?;
    let names = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    let rules = match for_override {
        Some(d) => override_for(&rules, d),
        None => rules,
    };
    std::fs::write(path, rules)?;
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(path)
        .output()
        .context("running promtool (Debian package prometheus)")?;
    if !out.status.success() {
        bail!(
            "promtool check rules failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MANIFEST: &str = "---\napiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: x\nspec:\n  groups:\n    - name: g\n      rules:\n        - alert: A\n          expr: up == 0\n          for: 5m\n        - alert: B\n          expr: up == 1\n          for: 0m\n";

    #[test]
    fn spec_groups_become_a_top_level_rules_file() {
        let rules = spec_groups(MANIFEST).unwrap();
        assert!(rules.starts_with("groups:\n  - name: g\n"), "{rules}");
        assert!(!rules.contains("metadata"));
    }

    #[test]
    fn for_durations_are_shortened_but_instant_alerts_stay_instant() {
        let rules = override_for(&spec_groups(MANIFEST).unwrap(), "5s");
        assert!(rules.contains("      for: 5s\n"), "{rules}");
        assert!(rules.contains("      for: 0m\n"), "{rules}");
        assert!(!rules.contains("5m"));
    }

    #[test]
    fn the_charts_rules_render_and_pass_promtool() {
        let dir = tempfile::tempdir().unwrap();
        let names = write_checked(&dir.path().join("rules.yaml"), Some("5s")).unwrap();
        assert!(
            names.iter().any(|n| n == "MetricsAppHighLatency"),
            "{names:?}"
        );
    }

    #[test]
    fn a_missing_helm_is_named_with_how_to_install_it() {
        let error = render_with(Path::new("/nonexistent/bin/helm"), &[]).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("helm is missing") && message.contains("bash scripts/install-tools"),
            "{message}"
        );
    }
}
