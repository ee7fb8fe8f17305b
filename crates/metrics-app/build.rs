//! Records the git commit the binary is built from, for `--version` and `metrics_app_build_info`.
//!
//! `GIT_COMMIT` wins (the container build passes it, as `.git` is not in the build context);
//! otherwise `git rev-parse` is asked; otherwise the commit is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=METRICS_APP_GIT_COMMIT={commit}");
}
