//! The platform commands as a user runs them: missing prerequisites (nothing on PATH, HOME in
//! an empty temp dir), `--dry-run` with and without the tools (fake docker/kind/kubectl on PATH
//! that record their calls, the real git), no cluster, the exit codes, `down` without a
//! terminal, the git push's password handling against a real git, and `load` against the real
//! metrics-app.
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

#[test]
fn up_without_the_tools_exits_2_naming_each_and_how_to_install_it() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(home.path())
        .args(["up", "--root"])
        .arg(workspace_root())
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
    assert!(out.stdout.is_empty(), "no plan, nothing done");
}

#[test]
fn up_dry_run_without_the_tools_prints_the_whole_plan_and_what_a_real_run_would_stop_on() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(home.path())
        .args(["up", "--dry-run", "--root"])
        .arg(workspace_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        " 1. run   create kind cluster metrics-app",
        "build image metrics-app:<commit>",
        "install ArgoCD v3.",
        "apply root Application @ main",
        "write PASSWORD into OpenBao",
        "GET /counter of each environment",
    ] {
        assert!(stdout.contains(step), "{step}:\n{stdout}");
    }
    let stop = stdout
        .split("A real run would stop before step 1 (exit 2)")
        .nth(1)
        .unwrap_or_else(|| panic!("the stoppers are listed:\n{stdout}"));
    for tool in [
        "docker: not found",
        "kind: not found",
        "kubectl: not found",
        "git: not found",
    ] {
        assert!(stop.contains(tool), "{tool}:\n{stdout}");
    }
    assert!(
        stdout
            .trim_end()
            .ends_with("--dry-run: nothing was changed"),
        "{stdout}"
    );
}

#[test]
fn up_dry_run_with_flux_prints_flux_steps_and_no_argocd_step() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(home.path())
        .args([
            "up",
            "--dry-run",
            "--gitops",
            "flux",
            "--env",
            "dev,prod",
            "--root",
        ])
        .arg(workspace_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut at = 0;
    for step in [
        " 1. run   create kind cluster metrics-app",
        "install Flux v2.9.4 (https://github.com/fluxcd/flux2/releases/download/v2.9.4/install.yaml; 7 controller images pinned by digest)",
        "wait for the Flux CRDs and source-controller, kustomize-controller, helm-controller",
        "apply deploy/bootstrap/git-server.yaml",
        "push <commit> to the git server",
        "apply deploy/flux/bootstrap/git-repository.yaml (http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git at main)",
        "apply deploy/flux/bootstrap/platform.yaml",
        "apply deploy/flux/bootstrap/metrics-app-dev.yaml",
        "apply deploy/flux/bootstrap/metrics-app-prod.yaml",
        "write PASSWORD into OpenBao",
        "wait for Kustomizations platform,",
        "GET /counter of each environment",
    ] {
        let found = stdout[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step} (in this order):\n{stdout}"));
        at += found + step.len();
    }
    for argocd in [
        "install ArgoCD",
        "root Application",
        "apply deploy/bootstrap ",
    ] {
        assert!(!stdout.contains(argocd), "{argocd}:\n{stdout}");
    }
    assert!(
        stdout.contains("--dry-run: nothing was changed"),
        "{stdout}"
    );
}

#[test]
fn flux_refuses_an_environment_deploy_flux_lacks_and_a_url_flux_cannot_read() {
    // A checkout whose deploy/flux has no prod: the files --gitops flux needs, and no more.
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("checkout");
    let src = workspace_root();
    for f in [
        "deploy/kind/cluster.yaml",
        "deploy/argocd/values.yaml",
        "deploy/bootstrap/git-server.yaml",
        "deploy/bootstrap/argocd-ui.yaml",
        "deploy/flux/bootstrap/git-repository.yaml",
        "deploy/flux/bootstrap/metrics-app-dev.yaml",
    ] {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::copy(src.join(f), root.join(f)).unwrap();
    }
    let out = bare(home.path())
        .args([
            "up",
            "--dry-run",
            "--gitops",
            "flux",
            "--env",
            "dev,prod",
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "nothing planned");
    assert!(
        err.contains("no Flux environment prod: deploy/flux has dev; add deploy/flux/apps/prod/kustomization.yaml"),
        "{err}"
    );
    // ArgoCD does not need deploy/flux: the same checkout plans.
    let out = bare(home.path())
        .args(["up", "--dry-run", "--env", "dev,prod", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bare(home.path())
        .args([
            "up",
            "--dry-run",
            "--gitops",
            "flux",
            "--repo-url",
            "git@github.com:you/r.git",
        ])
        .args(["--revision", "main", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Flux needs an http(s):// or ssh:// URL"),
        "{err}"
    );
    let out = bare(home.path())
        .args(["up", "--gitops", "helm", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown engine");
}

#[test]
fn an_unknown_environment_stops_up_with_exit_2_naming_the_known_ones() {
    let home = tempfile::tempdir().unwrap();
    for env in ["dev,qa", "dev,,prod"] {
        let out = bare(home.path())
            .args(["up", "--dry-run", "--env", env, "--root"])
            .arg(workspace_root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}: {err}");
        assert!(out.stdout.is_empty(), "nothing planned for {env}");
        assert!(
            err.contains("--env") || err.contains("unknown environment"),
            "{err}"
        );
    }
    let out = bare(home.path())
        .args(["up", "--dry-run", "--env", "dev,qa", "--root"])
        .arg(workspace_root())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "unknown environment \"qa\": deploy/argocd/values.yaml declares dev, staging, prod"
    ));
}

#[test]
fn rollback_by_environment_and_by_argocd_history_do_not_mix() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(home.path())
        .args(["rollback", "--env", "staging", "--to", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn status_credentials_promote_and_rollback_without_a_cluster_exit_3_and_say_to_run_up() {
    let home = tempfile::tempdir().unwrap();
    for cmd in [
        &["status"][..],
        &["credentials"],
        &["rollback"],
        &["rollback", "--env", "staging"],
        &["promote", "--from", "dev", "--to", "staging"],
        &["status", "--output", "json"],
    ] {
        let out = bare(home.path()).args(cmd).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {err}");
        let config = home.path().join(".kube/config");
        assert!(
            err.contains(&format!(
                "no cluster found (kubeconfig {}: no such file): run `appctl up` first",
                config.display()
            )),
            "{cmd:?}: {err}"
        );
        assert!(!err.contains("failed to read kubeconfig"), "{err}");
    }
}

#[test]
fn a_kubeconfig_without_the_kind_context_is_no_cluster_too() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("other-config");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\nusers:\n- name: me\n  user: {}\n",
    )
    .unwrap();
    let out = bare(home.path())
        .env("KUBECONFIG", &config)
        .args(["rollback", "--to", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "no cluster found (kubeconfig {}: no context kind-metrics-app): run `appctl up` first",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn a_cluster_whose_api_server_does_not_answer_exits_3_too() {
    // The context is there (kind made it) but nothing listens: Docker stopped, say.
    let home = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = home.path().join("kind-config");
    std::fs::write(
        &config,
        format!("apiVersion: v1\nkind: Config\ncurrent-context: kind-metrics-app\nclusters:\n- name: kind-metrics-app\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: kind-metrics-app\n  context:\n    cluster: kind-metrics-app\n    user: kind-metrics-app\nusers:\n- name: kind-metrics-app\n  user:\n    token: t\n"),
    )
    .unwrap();
    let out = bare(home.path())
        .env("KUBECONFIG", &config)
        .arg("credentials")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "cluster kind-metrics-app does not answer at https://127.0.0.1:{port}/"
        )) && err.contains("caused by:"),
        "{err}"
    );
}

#[test]
fn down_yes_without_kind_exits_2_like_up() {
    let home = tempfile::tempdir().unwrap();
    let down = bare(home.path()).args(["down", "--yes"]).output().unwrap();
    let err = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(2), "{err}");
    assert!(
        err.contains("missing prerequisites") && err.contains("kind: not found on PATH"),
        "{err}"
    );
    let up = bare(home.path())
        .args(["up", "--root"])
        .arg(workspace_root())
        .output()
        .unwrap();
    assert_eq!(up.status.code(), down.status.code(), "one code per cause");
}

#[test]
fn help_shows_the_exit_code_table() {
    let out = appctl().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for line in [
        "Exit codes:",
        "  0  ok",
        "  1  failed while running",
        "  2  usage or configuration error, or a missing prerequisite",
        "  3  no cluster",
    ] {
        assert!(help.contains(line), "{line}:\n{help}");
    }
    // clap's own usage errors use the same code as appctl's.
    let bad = appctl().args(["up", "--timeout", "soon"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
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
fn load_against_a_closed_port_says_the_requests_were_refused() {
    let port = common::free_port();
    let out = appctl()
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/counter"),
            "--rate",
            "20",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("refused ×"), "summary: {stdout}");
    assert!(
        stderr.contains("requests failed: refused ×"),
        "error: {stderr}"
    );
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

/// Standard base64 (RFC 4648), for the expected `Authorization: Basic` value.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A git smart-HTTP server that only asks for credentials: 401 with a Basic challenge until a
/// request carries an `Authorization` other than `refuse` (curl first sends the URL's user
/// with an empty password), which it records and refuses (403). Serves at most 10
/// connections; returns the port and the recorded header.
fn credential_catcher(refuse: String) -> (u16, std::thread::JoinHandle<Option<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for conn in listener.incoming().take(10) {
            let mut conn = conn.ok()?;
            let mut reader = BufReader::new(conn.try_clone().ok()?);
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Authorization: ") {
                    auth = Some(v.trim().to_string()).filter(|a| *a != refuse);
                }
            }
            if auth.is_some() {
                let _ = conn.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return auth;
            }
            let _ = conn.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"gitea\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        None
    });
    (port, server)
}

#[test]
fn git_push_authenticates_with_the_password_from_its_environment_and_never_shows_it() {
    use appctl::platform::gitops::{AskPass, git_push_command};
    use appctl::platform::runner::{RunError, Runner, System};

    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new(which("git"))
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@localhost",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    ]);
    let (port, server) = credential_catcher(format!("Basic {}", base64(b"appctl:")));
    let secret = "pw-9f8e7d-never-in-argv";
    let askpass = AskPass::create().unwrap();
    let cmd = git_push_command(
        repo.path(),
        &format!("http://127.0.0.1:{port}"),
        &askpass.path(),
        secret,
    );
    let err = System
        .run_cmd(&cmd)
        .expect_err("the server refuses the push");
    let auth = server.join().unwrap();
    assert_eq!(
        auth.as_deref(),
        Some(format!("Basic {}", base64(format!("appctl:{secret}").as_bytes())).as_str()),
        "git sent the password it got from GIT_ASKPASS"
    );
    let RunError::Failed {
        command, stderr, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert!(
        !command.contains(secret) && !stderr.contains(secret),
        "{err}"
    );
    assert!(!err.to_string().contains(secret));
}
