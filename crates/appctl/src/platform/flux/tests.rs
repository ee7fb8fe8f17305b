//! Flux's pinned release, the check of its install manifest, the plan of `up --gitops flux`
//! and the edits of deploy/flux, against the repository's own files.

use serde_json::Value;

use super::*;

// The repository's own files: include_str! resolves relative to this file, so the tests
// fail when deploy/flux and these constants drift apart.
const GIT_REPOSITORY_YAML: &str =
    include_str!("../../../../../deploy/flux/bootstrap/git-repository.yaml");
const PLATFORM_YAML: &str = include_str!("../../../../../deploy/flux/bootstrap/platform.yaml");
const LAYERS_YAML: &str = include_str!("../../../../../deploy/flux/platform/layers.yaml");
const DEV_OVERLAY: &str = include_str!("../../../../../deploy/flux/apps/dev/kustomization.yaml");
const PROD_OVERLAY: &str = include_str!("../../../../../deploy/flux/apps/prod/kustomization.yaml");
const DEV_BOOTSTRAP: &str =
    include_str!("../../../../../deploy/flux/bootstrap/metrics-app-dev.yaml");

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: flux-system\n\
         spec:\n  template:\n    spec:\n      containers:\n        - name: manager\n          image: {image}\n"
    )
}

fn crd(name: &str, versions: &[(&str, bool)]) -> String {
    let mut s = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {name}\nspec:\n  versions:\n"
    );
    for (v, served) in versions {
        s.push_str(&format!("    - name: {v}\n      served: {served}\n"));
    }
    s
}

/// A manifest shaped like Flux's install.yaml: namespace, CRDs, RBAC, one Deployment per
/// controller image.
fn manifest() -> String {
    let mut docs = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n".to_string(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: crd-controller-flux-system\n".to_string(),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: helm-controller\n  namespace: flux-system\n".to_string(),
    ];
    for (name, version) in REQUIRED_APIS {
        docs.push(crd(name, &[("v1beta2", true), (version, true)]));
    }
    for image in FLUX_IMAGES {
        let name = image.name.rsplit('/').next().expect("valid");
        docs.push(deployment(name, &image.tagged()));
    }
    docs.join("---\n")
}

fn err(r: Result<VerifiedManifest, FluxError>) -> String {
    r.expect_err("the manifest must be refused").to_string()
}

#[test]
fn the_pinned_release_and_its_images_are_well_formed() {
    assert!(FLUX_VERSION.starts_with("v2."));
    assert_eq!(
        flux_manifest_url(),
        "https://github.com/fluxcd/flux2/releases/download/v2.9.4/install.yaml"
    );
    assert_eq!(FLUX_IMAGES.len(), 7);
    for i in FLUX_IMAGES {
        let hex = i.digest.strip_prefix("sha256:").expect("sha256: prefix");
        assert_eq!(hex.len(), 64, "{}", i.name);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{}", i.name);
        assert!(i.name.starts_with("ghcr.io/fluxcd/"), "{}", i.name);
    }
    let names: BTreeSet<_> = FLUX_IMAGES.iter().map(|i| i.name).collect();
    assert_eq!(names.len(), FLUX_IMAGES.len(), "an image is listed twice");
}

#[test]
fn a_manifest_like_fluxs_passes_with_every_image_pinned_by_digest() {
    let v = verify_install_manifest(&manifest()).expect("verified");
    assert_eq!(v.objects.len(), 3 + REQUIRED_APIS.len() + FLUX_IMAGES.len());
    for c in REQUIRED_CONTROLLERS {
        assert!(v.deployments.iter().any(|d| d == c), "{c}");
    }
    let sc = v
        .objects
        .iter()
        .find(|o| o["metadata"]["name"] == "source-controller")
        .expect("valid");
    assert_eq!(
        sc["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/fluxcd/source-controller:v1.9.4@sha256:8a8ed0a57b8b86f561d5a4309a69f65e62f0cebe4de8801593c5ff35a3bc3c23"
    );
}

#[test]
fn an_image_that_is_not_a_pinned_controller_is_refused() {
    let m = manifest().replace(
        "ghcr.io/fluxcd/helm-controller:v1.6.3",
        "ghcr.io/fluxcd/helm-controller:v1.6.4",
    );
    let e = err(verify_install_manifest(&m));
    assert!(
        e.contains(
            "\"ghcr.io/fluxcd/helm-controller:v1.6.4\" is not one of the v2.9.4 controller images"
        ),
        "{e}"
    );
    let extra = format!("{}---\n{}", manifest(), deployment("miner", "evil/miner:1"));
    assert!(err(verify_install_manifest(&extra)).contains("evil/miner:1"));
}

#[test]
fn an_image_already_carrying_a_digest_is_refused_rather_than_trusted() {
    let m = manifest().replace(
        "ghcr.io/fluxcd/source-controller:v1.9.4",
        "ghcr.io/fluxcd/source-controller:v1.9.4@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert!(err(verify_install_manifest(&m)).contains("is not one of"));
}

#[test]
fn another_release_is_refused_because_a_controller_image_is_missing() {
    let m = manifest().replace(
        &deployment("source-watcher", "ghcr.io/fluxcd/source-watcher:v2.2.3"),
        "",
    );
    let e = err(verify_install_manifest(&m));
    assert!(
        e.contains("no Deployment runs ghcr.io/fluxcd/source-watcher:v2.2.3"),
        "{e}"
    );
}

#[test]
fn kinds_and_namespaces_outside_fluxs_installation_are_refused() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: flux-system\n";
    let e = err(verify_install_manifest(&format!(
        "{}---\n{secret}",
        manifest()
    )));
    assert!(
        e.contains("Secret/x: Flux's installation has no Secret objects"),
        "{e}"
    );
    let other_ns = manifest().replacen(
        "name: helm-controller\n  namespace: flux-system",
        "name: helm-controller\n  namespace: kube-system",
        1,
    );
    let e = err(verify_install_manifest(&other_ns));
    assert!(
        e.contains("ServiceAccount/helm-controller is in namespace Some(\"kube-system\")"),
        "{e}"
    );
    let ns = manifest().replace("name: flux-system\n---", "name: default\n---");
    assert!(err(verify_install_manifest(&ns)).contains("only the flux-system namespace"));
}

#[test]
fn a_manifest_that_does_not_serve_the_apis_deploy_flux_uses_is_refused() {
    let m = manifest().replace(
        &crd(
            "helmreleases.helm.toolkit.fluxcd.io",
            &[("v1beta2", true), ("v2", true)],
        ),
        &crd(
            "helmreleases.helm.toolkit.fluxcd.io",
            &[("v1beta2", true), ("v2", false)],
        ),
    );
    let e = err(verify_install_manifest(&m));
    assert!(
        e.contains("helmreleases.helm.toolkit.fluxcd.io does not serve v2"),
        "{e}"
    );
}

#[test]
fn text_that_is_not_a_manifest_is_refused() {
    let e = err(verify_install_manifest("kind: [Deployment\n"));
    assert!(e.contains("not YAML"), "{e}");
    // An HTML error page is a YAML string, not an object.
    let e = err(verify_install_manifest("<html>rate limited</html>\n"));
    assert!(e.contains("without kind or metadata.name"), "{e}");
    let e = err(verify_install_manifest("kind: Deployment\n"));
    assert!(e.contains("without kind or metadata.name"), "{e}");
    // An empty body is not Flux either.
    assert!(err(verify_install_manifest("")).contains("no Deployment runs"));
}

fn envs(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_plan_installs_flux_then_the_platform_then_each_chosen_environment() {
    let available = envs(&["dev", "prod", "staging"]);
    let plan = plan(&envs(&["dev", "prod"]), &available, None, None).expect("valid");
    assert_eq!(
        plan,
        vec![
            FluxAction::InstallFlux,
            FluxAction::WaitControllers,
            FluxAction::ApplyGitRepository {
                url: IN_CLUSTER_REPO.into(),
                revision: "main".into()
            },
            FluxAction::ApplyFile {
                file: "deploy/flux/bootstrap/platform.yaml".into()
            },
            FluxAction::ApplyEnvironment {
                env: "dev".into(),
                image_tag: None
            },
            FluxAction::ApplyEnvironment {
                env: "prod".into(),
                image_tag: None
            },
            FluxAction::WaitReady {
                kustomizations: envs(&[
                    "platform",
                    "gateway-api-crds",
                    "platform-operators",
                    "platform-addons",
                    "platform-manifests",
                    "metrics-app-dev",
                    "metrics-app-prod"
                ])
            },
        ]
    );
    assert_eq!(
        plan[2].describe(),
        format!("apply deploy/flux/bootstrap/git-repository.yaml ({IN_CLUSTER_REPO} at main)")
    );
    let install = plan[0].describe();
    assert!(
        install.contains("7 controller images pinned by digest"),
        "{install}"
    );
}

fn plan_of(names: &[&str], remote: Option<(&str, &str)>, tag: Option<&str>) -> Vec<FluxAction> {
    plan(&envs(names), &envs(names), remote, tag).expect("valid")
}

#[test]
fn an_environment_runs_the_given_tag_through_a_patch_after_its_overlays() {
    let obj = environment_kustomization(DEV_BOOTSTRAP, "dev", None).expect("valid");
    let as_is: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEV_BOOTSTRAP).expect("valid");
    assert_eq!(
        obj,
        serde_json::to_value(as_is).expect("valid"),
        "unchanged"
    );
    let obj = environment_kustomization(DEV_BOOTSTRAP, "dev", Some("3f2a1c0")).expect("valid");
    let patches = obj["spec"]["patches"].as_array().expect("patches");
    let last = patches.last().expect("one");
    assert_eq!(last["target"]["kind"], "HelmRelease");
    // A kustomize regex: metrics-app before the overlay's nameSuffix, metrics-app-dev
    // after it; not redis-ha.
    assert_eq!(last["target"]["name"], "metrics-app.*");
    let ops: Value =
        serde_json::from_str(last["patch"].as_str().expect("text")).expect("JSON patch");
    assert_eq!(
        ops,
        serde_json::json!([{"op": "add", "path": "/spec/values/image/tag", "value": "3f2a1c0"}])
    );
    // The path exists in every overlay's HelmRelease patch (values.image), so `add`
    // replaces the overlay's tag.
    assert_eq!(overlay_image_tag(DEV_OVERLAY).expect("valid"), "dev");
    assert_eq!(overlay_image_tag(PROD_OVERLAY).expect("valid"), "dev");
    assert!(matches!(
        environment_kustomization(DEV_BOOTSTRAP, "dev", Some("a b")),
        Err(FluxError::Usage(_))
    ));
    let e = environment_kustomization(DEV_BOOTSTRAP, "prod", None).expect_err("wrong file");
    assert!(
        e.to_string()
            .contains("expected the Flux Kustomization metrics-app-prod"),
        "{e}"
    );
}

#[test]
fn the_plan_reads_a_remote_repository_when_given() {
    let plan = plan_of(
        &["dev"],
        Some(("https://github.com/you/metrics-app.git", "feature")),
        Some("3f2a1c0"),
    );
    assert_eq!(
        plan[4],
        FluxAction::ApplyEnvironment {
            env: "dev".into(),
            image_tag: Some("3f2a1c0".into())
        }
    );
    assert_eq!(
        plan[4].describe(),
        "apply deploy/flux/bootstrap/metrics-app-dev.yaml (image tag 3f2a1c0, not the overlay's)"
    );
    // In-cluster, the tags are commits: no override even when a tag is given.
    let local = plan_of(&["dev"], None, Some("3f2a1c0"));
    assert_eq!(
        local[4],
        FluxAction::ApplyEnvironment {
            env: "dev".into(),
            image_tag: None
        }
    );
    assert_eq!(
        plan[2],
        FluxAction::ApplyGitRepository {
            url: "https://github.com/you/metrics-app.git".into(),
            revision: "feature".into()
        }
    );
}

#[test]
fn the_plan_refuses_unknown_repeated_or_no_environments_saying_what_to_do() {
    let available = envs(&["dev", "staging"]);
    let e = plan(&envs(&["qa"]), &available, None, None)
        .expect_err("must be refused")
        .to_string();
    assert_eq!(
        e,
        "no Flux environment qa: deploy/flux has dev, staging; add deploy/flux/apps/qa/kustomization.yaml and deploy/flux/bootstrap/metrics-app-qa.yaml"
    );
    let e = plan(&envs(&["dev", "dev"]), &available, None, None)
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("--env names dev twice"), "{e}");
    let e = plan(&[], &available, None, None)
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("--env needs at least one"), "{e}");
}

#[test]
fn environments_come_from_the_bootstrap_file_names() {
    let names = [
        "git-repository.yaml",
        "kustomization.yaml",
        "metrics-app-staging.yaml",
        "metrics-app-dev.yaml",
        "metrics-app-.yaml",
        "platform.yaml",
    ];
    assert_eq!(environments_from_files(&names), envs(&["dev", "staging"]));
}

#[test]
fn the_repository_files_match_the_constants() {
    // The bootstrap GitRepository reads the in-cluster repository by default.
    let obj = git_repository(GIT_REPOSITORY_YAML, IN_CLUSTER_REPO, "main").expect("valid");
    let as_is: serde_yaml_ng::Value = serde_yaml_ng::from_str(GIT_REPOSITORY_YAML).expect("valid");
    assert_eq!(obj, serde_json::to_value(as_is).expect("valid"));
    // The root builds deploy/flux/platform, whose layers are the ones waited for.
    assert!(PLATFORM_YAML.contains("path: ./deploy/flux/platform"));
    let layers: Vec<String> = serde_yaml_ng::Deserializer::from_str(LAYERS_YAML)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).expect("valid");
            v["metadata"]["name"].as_str().expect("valid").to_string()
        })
        .collect();
    assert_eq!(layers, PLATFORM_KUSTOMIZATIONS[1..]);
    assert!(DEV_BOOTSTRAP.contains("name: metrics-app-dev\n"));
    assert!(DEV_BOOTSTRAP.contains("path: ./deploy/flux/apps/dev\n"));
    assert_eq!(overlay_image_tag(DEV_OVERLAY).expect("valid"), "dev");
}

#[test]
fn the_git_server_admits_fluxs_source_controller_on_the_port_argocd_uses() {
    const GIT_SERVER_YAML: &str = include_str!("../../../../../deploy/bootstrap/git-server.yaml");
    let policy: serde_json::Value = serde_yaml_ng::Deserializer::from_str(GIT_SERVER_YAML)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).expect("valid");
            serde_json::to_value(v).expect("valid")
        })
        .find(|v| v["kind"] == "NetworkPolicy")
        .expect("git-server.yaml has a NetworkPolicy");
    let rule = &policy["spec"]["ingress"][0];
    let flux = rule["from"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| {
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == FLUX_NAMESPACE
        })
        .expect("a peer in Flux's namespace");
    // Only the source-controller (it fetches), on the port ArgoCD uses.
    assert_eq!(
        flux["podSelector"]["matchLabels"]["app"],
        "source-controller"
    );
    assert_eq!(rule["ports"][0]["port"], "http");
}

#[test]
fn git_refs_are_commits_full_ref_names_or_branches() {
    let sha = "3F2A1C04B5D6E7F8091A2B3C4D5E6F708192A3B4";
    assert_eq!(
        git_ref(sha),
        serde_json::json!({"commit": sha.to_ascii_lowercase()})
    );
    assert_eq!(
        git_ref("refs/tags/v1.0.0"),
        serde_json::json!({"name": "refs/tags/v1.0.0"})
    );
    assert_eq!(git_ref("main"), serde_json::json!({"branch": "main"}));
    assert_eq!(git_ref("3f2a1c"), serde_json::json!({"branch": "3f2a1c"}));
}

#[test]
fn the_git_repository_takes_a_remote_url_and_revision_and_refuses_bad_ones() {
    let obj = git_repository(
        GIT_REPOSITORY_YAML,
        "https://example.com/r.git",
        "refs/tags/v2",
    )
    .expect("valid");
    assert_eq!(obj["spec"]["url"], "https://example.com/r.git");
    assert_eq!(
        obj["spec"]["ref"],
        serde_json::json!({"name": "refs/tags/v2"})
    );
    assert_eq!(
        obj["spec"]["interval"], "1m",
        "the rest of the file is kept"
    );
    let e = git_repository(GIT_REPOSITORY_YAML, "git@github.com:you/r.git", "main")
        .expect_err("must be refused");
    assert!(
        e.to_string()
            .contains("Flux needs an http(s):// or ssh:// URL"),
        "{e}"
    );
    assert!(git_repository(GIT_REPOSITORY_YAML, IN_CLUSTER_REPO, " ").is_err());
    let e = git_repository(PLATFORM_YAML, IN_CLUSTER_REPO, "main").expect_err("must be refused");
    assert!(
        e.to_string()
            .contains("expected the GitRepository metrics-app"),
        "{e}"
    );
}

#[test]
fn an_overlays_image_tag_is_one_line_changed_and_comments_survive() {
    let out = set_overlay_image_tag(DEV_OVERLAY, "dev", "3f2a1c04b5d6").expect("valid");
    assert_eq!(overlay_image_tag(&out).expect("valid"), "3f2a1c04b5d6");
    let changed: Vec<(&str, &str)> = DEV_OVERLAY
        .lines()
        .zip(out.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].1.trim(), "tag: \"3f2a1c04b5d6\"");
    assert_eq!(DEV_OVERLAY.lines().count(), out.lines().count());
    // prod's overlay also patches redis-ha: still exactly the one image tag.
    let out = set_overlay_image_tag(PROD_OVERLAY, "prod", "3f2a1c04b5d6").expect("valid");
    assert_eq!(overlay_image_tag(&out).expect("valid"), "3f2a1c04b5d6");
    // Numeric-looking tags stay strings.
    let out = set_overlay_image_tag(DEV_OVERLAY, "dev", "1234").expect("valid");
    assert_eq!(overlay_image_tag(&out).expect("valid"), "1234");
}

#[test]
fn bad_tags_and_overlays_without_one_tag_line_are_refused() {
    for tag in ["", "-x", "a b", "a:b", &"x".repeat(129)] {
        let e = set_overlay_image_tag(DEV_OVERLAY, "dev", tag).expect_err("must be refused");
        assert!(matches!(e, FluxError::Usage(_)), "{tag:?}: {e}");
    }
    let two = format!("{DEV_OVERLAY}tag: old\n");
    let e = set_overlay_image_tag(&two, "dev", "x")
        .expect_err("must be refused")
        .to_string();
    assert!(
        e.starts_with("deploy/flux/apps/dev/kustomization.yaml: expected exactly one `tag:` line"),
        "{e}"
    );
    // A tag line that is not the HelmRelease's image tag.
    let wrong = "patches:\n  - patch: |-\n      kind: HelmRelease\n      spec:\n        values:\n          redis:\n            tag: x\n";
    let e = set_overlay_image_tag(wrong, "dev", "y")
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("found 0"), "{e}");
}
