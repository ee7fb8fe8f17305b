//! Observing the machine: which tools exist at which version, whether the kind cluster exists
//! and whether an image is already loaded into its node. Parsing is pure and tested.

use super::plan::Tool;
use super::runner::{RunError, Runner};

/// The kind cluster's name (docs/platform-contract.md).
pub const CLUSTER: &str = "metrics-app";

fn tool_state(result: Result<String, RunError>) -> Tool {
    match result {
        Ok(version) if !version.is_empty() => Tool::Present { version },
        Ok(_) => Tool::Broken {
            reason: "printed no version".into(),
        },
        Err(RunError::NotFound { .. }) => Tool::Missing,
        Err(RunError::Failed { stderr, .. }) => Tool::Broken {
            reason: stderr.lines().next().unwrap_or("failed").trim().to_string(),
        },
        Err(e) => Tool::Broken {
            reason: e.to_string(),
        },
    }
}

/// `docker version` asks the daemon too: an unreachable daemon is "broken", not "present".
pub fn docker(r: &dyn Runner) -> Tool {
    tool_state(
        r.run("docker", &["version", "--format", "{{.Server.Version}}"])
            .map(|o| o.stdout.trim().to_string()),
    )
}

/// `kind version` prints `kind v0.29.0 go1.24.2 linux/amd64`.
pub fn kind(r: &dyn Runner) -> Tool {
    tool_state(
        r.run("kind", &["version"])
            .map(|o| parse_kind_version(&o.stdout)),
    )
}

/// The version word of `kind version`'s output.
pub fn parse_kind_version(s: &str) -> String {
    s.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| w.trim_start_matches('v').to_string())
        .unwrap_or_default()
}

/// `kubectl version --client -o json` → `clientVersion.gitVersion`.
pub fn kubectl(r: &dyn Runner) -> Tool {
    tool_state(
        r.run("kubectl", &["version", "--client", "-o", "json"])
            .map(|o| parse_kubectl_version(&o.stdout)),
    )
}

/// `clientVersion.gitVersion` of kubectl's JSON.
pub fn parse_kubectl_version(s: &str) -> String {
    serde_json::from_str::<serde_json::Value>(s)
        .ok()
        .and_then(|v| {
            v["clientVersion"]["gitVersion"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// `git --version` prints `git version 2.47.3`.
pub fn git(r: &dyn Runner) -> Tool {
    tool_state(r.run("git", &["--version"]).map(|o| {
        o.stdout
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }))
}

/// True when `kind get clusters` lists the cluster.
pub fn cluster_exists(r: &dyn Runner) -> bool {
    r.run("kind", &["get", "clusters"])
        .map(|o| o.stdout.lines().any(|l| l.trim() == CLUSTER))
        .unwrap_or(false)
}

/// True when the node's containerd already has `metrics-app:TAG`.
pub fn image_loaded(r: &dyn Runner, tag: &str) -> bool {
    let node = format!("{CLUSTER}-control-plane");
    r.run("docker", &["exec", &node, "crictl", "images", "-o", "json"])
        .map(|o| o.stdout.contains(&format!("metrics-app:{tag}\"")))
        .unwrap_or(false)
}

/// The image tag for the checkout at `root`: the short commit, `-dirty` with uncommitted
/// changes; and the commit.
pub fn image_tag(r: &dyn Runner, root: &str) -> Result<(String, String), RunError> {
    let commit = r
        .run("git", &["-C", root, "rev-parse", "--short=12", "HEAD"])?
        .stdout
        .trim()
        .to_string();
    let dirty = !r
        .run("git", &["-C", root, "status", "--porcelain"])?
        .stdout
        .trim()
        .is_empty();
    let tag = if dirty {
        format!("{commit}-dirty")
    } else {
        commit.clone()
    };
    Ok((tag, commit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::runner::{Cmd, Output};
    use std::collections::HashMap;

    /// Answers by program name; absent programs are "not found".
    struct Fake(HashMap<&'static str, Result<&'static str, &'static str>>);

    impl Runner for Fake {
        fn run_cmd(&self, cmd: &Cmd) -> Result<Output, RunError> {
            let program = cmd.program.as_str();
            match self.0.get(program) {
                None => Err(RunError::NotFound {
                    program: program.into(),
                }),
                Some(Ok(out)) => Ok(Output {
                    code: Some(0),
                    stdout: out.to_string(),
                    stderr: String::new(),
                }),
                Some(Err(err)) => Err(RunError::Failed {
                    command: cmd.line(),
                    code: Some(1),
                    stderr: err.to_string(),
                }),
            }
        }
    }

    #[test]
    fn tools_are_found_missing_or_broken() {
        let f = Fake(HashMap::from([
            (
                "docker",
                Err("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"),
            ),
            ("kind", Ok("kind v0.29.0 go1.24.2 linux/amd64\n")),
            ("git", Ok("git version 2.47.3\n")),
        ]));
        assert_eq!(
            docker(&f),
            Tool::Broken {
                reason: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
                    .into()
            }
        );
        assert_eq!(
            kind(&f),
            Tool::Present {
                version: "0.29.0".into()
            }
        );
        assert_eq!(kubectl(&f), Tool::Missing);
        assert_eq!(
            git(&f),
            Tool::Present {
                version: "2.47.3".into()
            }
        );
    }

    #[test]
    fn kubectl_version_comes_from_its_json() {
        let json = r#"{"clientVersion":{"major":"1","minor":"33","gitVersion":"v1.33.9"},"kustomizeVersion":"v5.6.0"}"#;
        assert_eq!(parse_kubectl_version(json), "v1.33.9");
        assert_eq!(parse_kubectl_version("not json"), "");
    }
}
