//! The plan of `up` for named scenarios: a fresh machine, a second run, a new commit on an
//! existing cluster, lost secrets (`secrets`), missing prerequisites, Flux (`flux`).

mod flux;
mod secrets;

use super::*;

fn tools() -> Observed {
    Observed {
        docker: Tool::Present {
            version: "27.3.1".into(),
        },
        kind: Tool::Present {
            version: "0.29.0".into(),
        },
        kubectl: Tool::Present {
            version: "v1.33.1".into(),
        },
        git: Tool::Present {
            version: "2.47.3".into(),
        },
        ..Observed::nothing()
    }
}

fn envs(selected: &[&str]) -> Vec<(String, bool)> {
    ["dev", "staging", "prod"]
        .iter()
        .map(|e| (e.to_string(), selected.contains(e)))
        .collect()
}

fn local() -> UpOptions {
    UpOptions {
        image_tag: "3f2a1c0".into(),
        source: Source::Local {
            commit: "3f2a1c0".into(),
        },
        bootstrap_digest: "b1".into(),
        gitops: GitOps::ArgoCd,
        environments: envs(&["dev"]),
    }
}

fn running(steps: &[Step]) -> Vec<&Action> {
    steps.iter().filter(|s| s.run).map(|s| &s.action).collect()
}

#[test]
fn fresh_machine_runs_every_step_in_order() {
    let steps = plan(&tools(), &local()).expect("plan");
    assert!(
        steps
            .iter()
            .all(|s| s.run != (s.action == Action::RestartSecretBackend)),
        "everything runs but the restart of an OpenBao that does not exist yet: {steps:#?}"
    );
    let names: Vec<String> = steps
        .iter()
        .map(|s| {
            format!("{:?}", s.action)
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "CreateCluster",
            "BuildImage",
            "LoadImage",
            "InstallArgoCd",
            "ApplyBootstrap",
            "CreateBackendToken",
            "RestartSecretBackend",
            "PushCheckout",
            "CommitImage",
            "ApplyRootApp",
            "WritePassword",
            "WaitSynced",
            "CheckGateway"
        ]
    );
}

fn everything_up() -> Observed {
    Observed {
        cluster_exists: true,
        image_loaded: true,
        argocd_installed: true,
        bootstrap_applied: true,
        bootstrap_digest: Some("b1".into()),
        backend_token_present: true,
        git_server_revision: Some("3f2a1c0".into()),
        deployed_image: Some("3f2a1c0".into()),
        backend: Backend::PasswordPresent,
        root_app: Some(RootApp {
            repo_url: IN_CLUSTER_REPO.into(),
            revision: "main".into(),
            parameters: root_parameters(IN_CLUSTER_REPO, "main", &envs(&["dev"]), None),
            auto_sync: true,
        }),
        apps: vec![AppState {
            name: "metrics-app".into(),
            sync: "Synced".into(),
            health: "Healthy".into(),
            revision: "3f2a1c0".into(),
        }],
        ..tools()
    }
}

#[test]
fn second_up_only_verifies() {
    let steps = plan(&everything_up(), &local()).expect("plan");
    assert_eq!(
        running(&steps),
        vec![&Action::WaitSynced, &Action::CheckGateway]
    );
    assert!(steps[0].reason.contains("cluster exists, skipping"));
}

#[test]
fn existing_cluster_with_a_new_commit_builds_pushes_and_updates_the_root_app() {
    let mut o = everything_up();
    o.image_loaded = false;
    let opts = UpOptions {
        image_tag: "9b8c7d6-dirty".into(),
        source: Source::Local {
            commit: "9b8c7d6".into(),
        },
        bootstrap_digest: "b1".into(),
        gitops: GitOps::ArgoCd,
        environments: envs(&["dev"]),
    };
    let steps = plan(&o, &opts).expect("plan");
    let run = running(&steps);
    assert!(run.contains(&&Action::BuildImage {
        tag: "9b8c7d6-dirty".into()
    }));
    assert!(run.contains(&&Action::PushCheckout {
        commit: "9b8c7d6".into()
    }));
    // The force push replaces the history: dev's new image and the others' are committed.
    let commit = step(
        &steps,
        &Action::CommitImage {
            env: "dev".into(),
            tag: "9b8c7d6-dirty".into(),
        },
    );
    assert!(
        commit.run && commit.reason.contains("replaces"),
        "{commit:?}"
    );
    assert!(!run.contains(&&Action::CreateCluster) && !run.contains(&&Action::InstallArgoCd));
    // Same commit, uncommitted changes: nothing to push, but dev's image changes.
    let opts = UpOptions {
        image_tag: "3f2a1c0-dirty".into(),
        ..local()
    };
    let mut o = everything_up();
    o.image_loaded = false;
    let steps = plan(&o, &opts).expect("plan");
    assert_eq!(
        running(&steps),
        vec![
            &Action::BuildImage {
                tag: "3f2a1c0-dirty".into()
            },
            &Action::LoadImage {
                tag: "3f2a1c0-dirty".into()
            },
            &Action::CommitImage {
                env: "dev".into(),
                tag: "3f2a1c0-dirty".into()
            },
            &Action::WaitSynced,
            &Action::CheckGateway
        ]
    );
}

#[test]
fn selecting_other_environments_updates_the_root_application_only() {
    let opts = UpOptions {
        environments: envs(&["dev", "prod"]),
        ..local()
    };
    let steps = plan(&everything_up(), &opts).expect("plan");
    let root = steps
        .iter()
        .find(|s| matches!(s.action, Action::ApplyRootApp { .. }))
        .expect("root step");
    assert!(
        root.run && root.reason.contains("other environments"),
        "{root:?}"
    );
    assert_eq!(
        running(&steps).len(),
        3,
        "root app, wait and check: {steps:#?}"
    );
    let Action::ApplyRootApp { parameters, .. } = &root.action else {
        unreachable!()
    };
    let enabled: Vec<&str> = parameters
        .iter()
        .filter(|(k, v)| k.ends_with(".enabled") && v == "true")
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        enabled,
        ["environments.dev.enabled", "environments.prod.enabled"]
    );
    assert!(
        parameters
            .iter()
            .any(|(k, v)| k == "environments.staging.enabled" && v == "false")
    );
    assert!(
        !parameters.iter().any(|(k, _)| k.contains("image")),
        "in-cluster repository: images are commits, not parameters"
    );
}

fn step<'a>(steps: &'a [Step], action: &Action) -> &'a Step {
    steps
        .iter()
        .find(|s| &s.action == action)
        .expect("the step is planned")
}

#[test]
fn a_changed_bootstrap_directory_is_applied_again() {
    // E.g. a new deploy/bootstrap/argocd-cm.yaml on a cluster made before it existed.
    let mut o = everything_up();
    o.bootstrap_digest = Some("b0".into());
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps),
        vec![
            &Action::ApplyBootstrap,
            &Action::WaitSynced,
            &Action::CheckGateway
        ]
    );
    assert!(
        step(&steps, &Action::ApplyBootstrap)
            .reason
            .contains("changed")
    );
}

#[test]
fn after_a_rollback_up_re_enables_automated_sync() {
    let mut o = everything_up();
    if let Some(r) = o.root_app.as_mut() {
        r.auto_sync = false;
    }
    let steps = plan(&o, &local()).expect("plan");
    let root = steps
        .iter()
        .find(|s| matches!(s.action, Action::ApplyRootApp { .. }))
        .expect("root step");
    assert!(root.run && root.reason.contains("re-enabling"), "{root:?}");
}

#[test]
fn a_remote_repository_pushes_nothing() {
    let opts = UpOptions {
        image_tag: "3f2a1c0".into(),
        source: Source::Remote {
            url: "https://github.com/you/metrics-app.git".into(),
            revision: "v1.2.0".into(),
        },
        bootstrap_digest: "b1".into(),
        gitops: GitOps::ArgoCd,
        environments: envs(&["dev", "staging"]),
    };
    let steps = plan(&tools(), &opts).expect("plan");
    assert!(!steps.iter().any(|s| matches!(
        s.action,
        Action::PushCheckout { .. } | Action::CommitImage { .. }
    )));
    // Nothing is committed there: the selected environments' images are parameters.
    let url = "https://github.com/you/metrics-app.git";
    assert!(steps.iter().any(|s| s.action
        == Action::ApplyRootApp {
            repo_url: url.into(),
            revision: "v1.2.0".into(),
            parameters: vec![
                ("repoURL".into(), url.into()),
                ("targetRevision".into(), "v1.2.0".into()),
                ("environments.dev.enabled".into(), "true".into()),
                ("environments.staging.enabled".into(), "true".into()),
                ("environments.prod.enabled".into(), "false".into()),
                ("environments.dev.image.tag".into(), "3f2a1c0".into()),
                ("environments.staging.image.tag".into(), "3f2a1c0".into()),
            ]
        }));
}

#[test]
fn without_prerequisites_the_steps_are_still_the_fresh_machine_plan() {
    // What --dry-run shows on a machine without the tools: the whole plan, plus the list
    // of what a real run would stop on.
    let o = Observed::nothing();
    assert_eq!(prerequisites(&o).len(), 4);
    assert_eq!(steps(&o, &local()), plan(&tools(), &local()).expect("plan"));
}

#[test]
fn missing_prerequisites_are_all_reported_and_nothing_is_planned() {
    let mut o = tools();
    o.docker = Tool::Broken {
        reason: "Cannot connect to the Docker daemon".into(),
    };
    o.kind = Tool::Present {
        version: "0.20.0".into(),
    };
    o.kubectl = Tool::Missing;
    let missing = plan(&o, &local()).expect_err("must refuse");
    let tools: Vec<&str> = missing.iter().map(|m| m.tool).collect();
    assert_eq!(tools, ["docker", "kind", "kubectl"]);
    assert!(missing[1].problem.contains("older than 0.29"));
    assert!(missing[2].fix.contains("kubernetes.io"));
}

#[test]
fn versions_parse_with_or_without_v_and_suffixes() {
    assert_eq!(major_minor("v1.33.1"), Some((1, 33)));
    assert_eq!(major_minor("0.29.0"), Some((0, 29)));
    assert_eq!(major_minor("1.32.0-gke.1"), Some((1, 32)));
    assert_eq!(major_minor("garbage"), None);
}
