//! The commands that need a cluster, without one (exit 3, saying to run `up`), `down`
//! without a terminal or without kind, conflicting flags, and the exit-code table in `--help`.

use super::*;

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
fn down_without_a_terminal_and_without_yes_refuses_with_exit_2() {
    let out = appctl().arg("down").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
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
