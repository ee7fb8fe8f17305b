//! The platform commands as a user runs them: missing prerequisites, `--dry-run` against fake
//! docker/kind/kubectl on PATH (the real git), `down` without a terminal, and `load` against
//! the real metrics-app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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

#[test]
fn up_without_the_tools_exits_2_naming_each_and_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let out = appctl()
        .args(["up", "--dry-run", "--root"])
        .arg(workspace_root())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for tool in [
        "docker: not found on PATH",
        "kind: not found",
        "kubectl: not found",
        "git: not found",
    ] {
        assert!(err.contains(tool), "{err}");
    }
    assert!(err.contains("https://kind.sigs.k8s.io"), "{err}");
}

#[test]
fn up_dry_run_prints_the_plan_with_reasons_and_touches_nothing() {
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls.log");
    let log = calls.display();
    script(
        bin.path(),
        "docker",
        &format!("echo \"docker $*\" >> {log}; echo 27.3.1"),
    );
    script(
        bin.path(),
        "kind",
        &format!(
            "echo \"kind $*\" >> {log}\ncase \"$1\" in version) echo 'kind v0.29.0 go1.24.2 linux/amd64';; get) ;; *) exit 1;; esac"
        ),
    );
    script(
        bin.path(),
        "kubectl",
        r#"echo '{"clientVersion":{"gitVersion":"v1.33.9"}}'"#,
    );
    let git = which("git");
    script(bin.path(), "git", &format!("exec {git} \"$@\""));
    let out = appctl()
        .current_dir(workspace_root())
        .args(["up", "--dry-run", "--root", "."])
        .env("PATH", bin.path())
        .env_remove("PASSWORD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("run   create kind cluster metrics-app"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no kind cluster named metrics-app"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--dry-run: nothing was changed"),
        "{stdout}"
    );
    let calls = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        !calls.contains("create") && !calls.contains("build") && !calls.contains("load"),
        "{calls}"
    );
}

fn which(tool: &str) -> String {
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{tool} not found");
}

#[test]
fn down_without_a_terminal_and_without_yes_refuses_with_exit_2() {
    let out = appctl().arg("down").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
}

#[test]
fn load_runs_for_its_duration_with_a_progress_line_and_a_summary() {
    let app = common::metrics_app(&[]);
    let out = appctl()
        .args([
            "load",
            &app.url("/counter"),
            "--concurrency",
            "2",
            "--duration",
            "2s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("requests") && stderr.contains("p99"),
        "progress line: {stderr}"
    );
    assert!(
        stdout.contains("requests in 2s") && stdout.contains(" 0 errors"),
        "{stdout}"
    );
    // The service counted what the load sent.
    let n: u64 = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n > 10, "{stdout}");
}

#[test]
fn load_rejects_bad_flags_with_exit_2() {
    for args in [
        vec!["load", "http://127.0.0.1:1/", "--rate", "0"],
        vec!["load", "http://127.0.0.1:1/", "--duration", "1h"],
        vec!["load", "ftp://x/"],
    ] {
        let out = appctl().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
