//! The plan under Flux: installed once, `deploy/flux` applied instead of Argo CD, a remote
//! repository read and never pushed, and a cluster running the other engine refused.

use super::*;

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
