//! `up` without the tools (exit 2, each tool named with how to install it), `--dry-run`
//! (the plan with its reasons, Argo CD or Flux, touching nothing), and environments `up` refuses.

use super::*;

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
