//! The platform commands as a user runs them: missing prerequisites (nothing on PATH, HOME in
//! an empty temp dir), `--dry-run` with and without the tools (fake docker/kind/kubectl on PATH
//! that record their calls, the real git), no cluster, the exit codes, `down` without a
//! terminal, the git push's password handling against a real git, and `load` against the real
//! metrics-app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod git_push;
mod load;
mod no_cluster;
mod up;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn appctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_appctl"))
}

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// appctl with nothing on PATH and HOME (so `~/.kube/config`) in an empty temp dir.
fn bare(home: &Path) -> Command {
    let mut c = appctl();
    c.env("PATH", home.join("bin"))
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("PASSWORD")
        .stdin(Stdio::null());
    c
}

/// The absolute path of a system tool (the tests run with a PATH of their own).
fn which(tool: &str) -> String {
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{tool} not found");
}
