//! The plan of `up` for named scenarios: a fresh machine, a second run, a new commit on an
//! existing cluster, lost secrets, missing prerequisites, Flux.

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
fn partly_synced_platform_waits_and_rewrites_a_password_openbao_lost() {
    // OpenBao restarted (dev mode): the synced Kubernetes Secret is still there, but
    // OpenBao answers 404 for the password.
    let mut o = everything_up();
    o.backend = Backend::from_kv_status(404);
    o.apps[0].health = "Progressing".into();
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps),
        vec![
            &Action::WritePassword,
            &Action::WaitSynced,
            &Action::CheckGateway
        ]
    );
    assert!(
        step(&steps, &Action::WritePassword)
            .reason
            .contains("password lost from OpenBao")
    );
    assert!(
        step(&steps, &Action::WaitSynced)
            .reason
            .starts_with("waiting")
    );
}

#[test]
fn a_lost_openbao_root_token_restarts_openbao_and_writes_the_password_again() {
    // The token Secret was deleted: a new token is made, OpenBao (still running with the
    // old one) is restarted with it, and the password written into the empty OpenBao.
    let mut o = everything_up();
    o.backend_token_present = false;
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps)[..3],
        [
            &Action::CreateBackendToken,
            &Action::RestartSecretBackend,
            &Action::WritePassword
        ]
    );
    assert!(
        step(&steps, &Action::CreateBackendToken)
            .reason
            .contains("lost")
    );
    // The token Secret is present but OpenBao refuses it.
    let mut o = everything_up();
    o.backend = Backend::from_kv_status(403);
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps)[..2],
        [&Action::RestartSecretBackend, &Action::WritePassword]
    );
    assert!(
        step(&steps, &Action::RestartSecretBackend)
            .reason
            .contains("rejects the token")
    );
}

#[test]
fn openbao_not_running_yet_is_not_restarted_and_gets_the_password_later() {
    let mut o = everything_up();
    o.backend = Backend::NotRunning {
        reason: "no ready pod".into(),
    };
    let steps = plan(&o, &local()).expect("plan");
    assert!(!step(&steps, &Action::RestartSecretBackend).run);
    let write = step(&steps, &Action::WritePassword);
    assert!(
        write.run && write.reason.contains("once OpenBao runs"),
        "{write:?}"
    );
    assert_eq!(Backend::from_kv_status(200), Backend::PasswordPresent);
    assert_eq!(Backend::from_kv_status(401), Backend::TokenRejected);
    assert!(matches!(
        Backend::from_kv_status(503),
        Backend::NotRunning { .. }
    ));
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

fn flux(selected: &[&str]) -> UpOptions {
    UpOptions {
        gitops: GitOps::Flux,
        environments: envs(selected),
        ..local()
    }
}

fn names(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match &s.action {
            Action::Flux(a) => a.describe(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn flux_on_a_fresh_machine_installs_flux_and_applies_deploy_flux_instead_of_argocd() {
    let steps = plan(&tools(), &flux(&["dev", "prod"])).expect("plan");
    assert_eq!(
        names(&steps),
        [
            "CreateCluster".to_string(),
            "BuildImage { tag: \"3f2a1c0\" }".into(),
            "LoadImage { tag: \"3f2a1c0\" }".into(),
            FluxAction::InstallFlux.describe(),
            FluxAction::WaitControllers.describe(),
            "ApplyGitServer".into(),
            "CreateBackendToken".into(),
            "RestartSecretBackend".into(),
            "PushCheckout { commit: \"3f2a1c0\" }".into(),
            "CommitImage { env: \"dev\", tag: \"3f2a1c0\" }".into(),
            format!("apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)"),
            "apply deploy/flux/bootstrap/platform.yaml".into(),
            "apply deploy/flux/bootstrap/metrics-app-dev.yaml".into(),
            "apply deploy/flux/bootstrap/metrics-app-prod.yaml".into(),
            "WritePassword".into(),
            "wait for Kustomizations platform, gateway-api-crds, platform-operators, \
             platform-addons, platform-manifests, metrics-app-dev, metrics-app-prod Ready"
                .into(),
            "CheckGateway".into(),
        ]
    );
    assert!(
        steps
            .iter()
            .all(|s| s.run != (s.action == Action::RestartSecretBackend)),
        "{steps:#?}"
    );
    let install = step(&steps, &Action::Flux(FluxAction::InstallFlux));
    assert!(install.reason.contains("pinned by digest"), "{install:?}");
}

#[test]
fn flux_a_second_time_skips_the_install_the_git_server_and_the_commit() {
    let mut o = everything_up();
    o.argocd_installed = false;
    o.root_app = None;
    o.apps.clear();
    o.flux_installed = true;
    o.git_server_applied = true;
    let steps = plan(&o, &flux(&["dev"])).expect("plan");
    let run: Vec<String> = names(&steps)
        .into_iter()
        .zip(&steps)
        .filter(|(_, s)| s.run)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        run,
        [
            FluxAction::WaitControllers.describe(),
            format!("apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)"),
            "apply deploy/flux/bootstrap/platform.yaml".into(),
            "apply deploy/flux/bootstrap/metrics-app-dev.yaml".into(),
            "wait for Kustomizations platform, gateway-api-crds, platform-operators, \
             platform-addons, platform-manifests, metrics-app-dev Ready"
                .into(),
            "CheckGateway".into(),
        ]
    );
    assert!(
        step(&steps, &Action::Flux(FluxAction::InstallFlux))
            .reason
            .contains("skipping")
    );
    // A changed git-server.yaml is applied again.
    o.bootstrap_digest = Some("b0".into());
    let steps = plan(&o, &flux(&["dev"])).expect("plan");
    let git = step(&steps, &Action::ApplyGitServer);
    assert!(git.run && git.reason.contains("changed"), "{git:?}");
}

#[test]
fn flux_with_a_remote_repository_reads_it_and_pushes_nothing() {
    let opts = UpOptions {
        source: Source::Remote {
            url: "https://github.com/you/metrics-app.git".into(),
            revision: "v1.2.0".into(),
        },
        ..flux(&["staging"])
    };
    let steps = plan(&tools(), &opts).expect("plan");
    assert!(!steps.iter().any(|s| matches!(
        s.action,
        Action::PushCheckout { .. } | Action::CommitImage { .. }
    )));
    step(
        &steps,
        &Action::Flux(FluxAction::ApplyGitRepository {
            url: "https://github.com/you/metrics-app.git".into(),
            revision: "v1.2.0".into(),
        }),
    );
    // Nothing is committed there: the built image overrides the overlay's tag.
    step(
        &steps,
        &Action::Flux(FluxAction::ApplyEnvironment {
            env: "staging".into(),
            image_tag: Some("3f2a1c0".into()),
        }),
    );
}

#[test]
fn no_argocd_step_runs_under_flux_and_no_flux_step_under_argocd() {
    let flux_steps = plan(&tools(), &flux(&["dev"])).expect("plan");
    assert!(!flux_steps.iter().any(|s| matches!(
        s.action,
        Action::InstallArgoCd
            | Action::ApplyBootstrap
            | Action::ApplyRootApp { .. }
            | Action::WaitSynced
    )));
    let argo = plan(&tools(), &local()).expect("plan");
    assert!(
        !argo
            .iter()
            .any(|s| matches!(s.action, Action::Flux(_) | Action::ApplyGitServer))
    );
    // The JSON of a Flux step names both.
    let json = serde_json::to_value(step(&flux_steps, &Action::Flux(FluxAction::InstallFlux)))
        .expect("serializes");
    assert_eq!(json["action"], "flux");
    assert_eq!(json["flux"], "install-flux");
}

#[test]
fn a_cluster_running_the_other_engine_is_refused_saying_how_to_switch() {
    let mut o = everything_up();
    assert_eq!(engine_conflict(&o, GitOps::ArgoCd), None);
    let e = engine_conflict(&o, GitOps::Flux).expect("refused");
    assert!(
        e.starts_with("the cluster runs ArgoCD and --gitops chose Flux")
            && e.contains("appctl up --gitops argocd")
            && e.contains("appctl down --yes"),
        "{e}"
    );
    o.argocd_installed = false;
    o.flux_installed = true;
    assert_eq!(engine_conflict(&o, GitOps::Flux), None);
    assert!(engine_conflict(&o, GitOps::ArgoCd).is_some());
    assert_eq!(engine_conflict(&Observed::nothing(), GitOps::Flux), None);
}
