//! The environments file, its checks, and the planning of deploys, promotions and rollbacks,
//! against examples and the repository's own deploy/argocd/values.yaml.

use super::*;

const FILE: &str = "\
# Values of the root Application.
repoURL: http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git
targetRevision: main

# -- the environments.
environments:
  dev:
    enabled: true
    namespace: metrics-app-dev
    host: dev.metrics-app.localtest.me
    valueFiles: [values-dev.yaml]
    image: {repository: metrics-app, tag: aaaaaaaaaaaa}   # appctl up
    secretPath: metrics-app/dev
    redisHA: false
  staging:
    enabled: true
    namespace: metrics-app-staging
    host: staging.metrics-app.localtest.me
    valueFiles: [values-staging.yaml]
    image: {repository: metrics-app, tag: \"\"}
    secretPath: metrics-app/staging
    redisHA: false
  prod:
    enabled: false
    namespace: metrics-app-prod
    host: prod.metrics-app.localtest.me
    valueFiles: [values-ha.yaml]
    image: {repository: metrics-app, tag: \"0123456\"}
    secretPath: metrics-app/prod
    redisHA: true

components:
  traefik:
    image: {repository: traefik, tag: v3}
";

fn image(tag: &str) -> Image {
    Image {
        repository: "metrics-app".into(),
        tag: tag.into(),
    }
}

fn tags(text: &str) -> Vec<(String, String)> {
    parse(text)
        .expect("parses")
        .into_iter()
        .map(|e| (e.name, e.image.tag))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn the_environments_are_read_in_the_files_order_with_everything_the_commands_need() {
    let envs = parse(FILE).expect("parses");
    assert_eq!(
        envs[0],
        Environment {
            name: "dev".into(),
            enabled: true,
            namespace: "metrics-app-dev".into(),
            host: "dev.metrics-app.localtest.me".into(),
            image: image("aaaaaaaaaaaa"),
            secret_path: "metrics-app/dev".into(),
        }
    );
    assert_eq!(
        tags(FILE),
        pairs(&[
            ("dev", "aaaaaaaaaaaa"),
            ("staging", ""),
            ("prod", "0123456")
        ])
    );
    assert!(!envs[2].enabled);
}

#[test]
fn the_committed_root_values_declare_dev_staging_and_prod() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(ENVIRONMENTS_FILE)).expect("readable");
    let envs = parse(&text).expect("parses");
    let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["dev", "staging", "prod"]);
    for e in &envs {
        assert_eq!(e.namespace, format!("metrics-app-{}", e.name));
        assert_eq!(e.host, format!("{}.metrics-app.localtest.me", e.name));
        assert_eq!(e.secret_path, format!("metrics-app/{}", e.name));
        // The committed file can be edited by every planner.
        set_image(&text, &e.name, &image("feedbeef0001")).expect("editable");
    }
}

#[test]
fn env_selection_keeps_the_files_order_and_names_the_known_environments() {
    let envs = parse(FILE).expect("parses");
    assert_eq!(
        select(&envs, "prod,dev").expect("known"),
        ["dev", "prod"].map(String::from)
    );
    assert_eq!(select(&envs, "dev").expect("known"), ["dev"]);
    let err = select(&envs, "dev,qa").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown environment \"qa\": deploy/argocd/values.yaml declares dev, staging, prod"
    );
    assert_eq!(err.exit_code(), crate::platform::exit::USAGE);
    assert!(select(&envs, "dev,,prod").is_err());
}

#[test]
fn promotion_gives_the_target_the_sources_image_in_one_line_and_says_so() {
    let change = plan_promotion(FILE, "dev", "staging").expect("planned");
    assert_eq!(
        tags(&change.content),
        pairs(&[
            ("dev", "aaaaaaaaaaaa"),
            ("staging", "aaaaaaaaaaaa"),
            ("prod", "0123456")
        ])
    );
    let changed: Vec<(&str, &str)> = FILE
        .lines()
        .zip(change.content.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "    image: {repository: metrics-app, tag: \"\"}",
            "    image: {repository: metrics-app, tag: \"aaaaaaaaaaaa\"}"
        )]
    );
    assert!(
        change
            .message
            .starts_with("promote staging to metrics-app:aaaaaaaaaaaa (from dev)\n\n"),
        "{}",
        change.message
    );
    assert!(change.message.contains("\nAppctl-Promote: staging\n"));
    assert!(change.message.contains("\nAppctl-Previous: none\n"));
    // From staging to prod: prod's previous image is named for the rollback message.
    let again = plan_promotion(&change.content, "staging", "prod").expect("planned");
    assert!(
        again
            .message
            .contains("Appctl-Previous: metrics-app:0123456\n")
    );
    // The comment on dev's line survives an edit of that line.
    let to_dev = plan_promotion(FILE, "prod", "dev").expect("planned");
    assert!(
        to_dev
            .content
            .contains("image: {repository: metrics-app, tag: \"0123456\"}   # appctl up\n")
    );
}

#[test]
fn promotion_refuses_what_would_change_nothing_or_cannot_work() {
    let msg = |r: Result<Change>| r.expect_err("refused").to_string();
    let promoted = plan_promotion(FILE, "dev", "staging")
        .expect("planned")
        .content;
    assert_eq!(
        msg(plan_promotion(&promoted, "dev", "staging")),
        "staging already runs dev's image metrics-app:aaaaaaaaaaaa: nothing to promote"
    );
    assert!(msg(plan_promotion(FILE, "staging", "prod")).starts_with("staging has no image yet"));
    assert!(msg(plan_promotion(FILE, "dev", "qa")).starts_with("unknown environment \"qa\""));
    assert!(msg(plan_promotion(FILE, "qa", "dev")).starts_with("unknown environment \"qa\""));
    assert!(msg(plan_promotion(FILE, "dev", "dev")).contains("both dev"));
    assert!(msg(plan_promotion("repoURL: x\n", "dev", "staging")).contains("no `environments:`"));
}

#[test]
fn an_image_written_in_block_style_or_an_unsafe_tag_is_refused_not_mangled() {
    let block = FILE.replace(
        "    image: {repository: metrics-app, tag: \"\"}\n",
        "    image:\n      repository: metrics-app\n      tag: \"\"\n",
    );
    assert!(
        plan_promotion(&block, "dev", "staging")
            .expect_err("refused")
            .to_string()
            .contains("must be one line")
    );
    for tag in ["a b", "x\"}\nrepoURL: evil", "-x", ""] {
        assert!(set_image(FILE, "dev", &image(tag)).is_err(), "{tag:?}");
    }
    // A digits-only tag stays a string (YAML would read 0123456 unquoted as a number).
    let t = set_image(FILE, "staging", &image("0123456")).expect("set");
    assert_eq!(tags(&t)[1].1, "0123456");
}

#[test]
fn up_deploys_its_image_to_dev_and_keeps_the_others_or_gives_them_their_first() {
    // The in-cluster file before this checkout was pushed: staging and prod have images.
    let kept = set_image(FILE, "staging", &image("bbbbbbbbbbbb")).expect("set");
    // The checkout's file as pushed: placeholders.
    let checkout = FILE.replace("tag: \"0123456\"", "tag: dev");
    let change = plan_deploy(&checkout, Some(&kept), "cccccccccccc")
        .expect("planned")
        .expect("a change");
    assert_eq!(
        tags(&change.content),
        pairs(&[
            ("dev", "cccccccccccc"),
            ("staging", "bbbbbbbbbbbb"),
            ("prod", "0123456")
        ])
    );
    assert!(
        change
            .message
            .starts_with("deploy metrics-app:cccccccccccc to dev\n\n")
    );
    assert!(
        change
            .message
            .contains("staging: metrics-app:bbbbbbbbbbbb (kept)")
    );
    // First push: nothing to keep, every environment gets the built image.
    let first = plan_deploy(&checkout, None, "cccccccccccc")
        .expect("planned")
        .expect("a change");
    assert_eq!(
        tags(&first.content),
        pairs(&[
            ("dev", "cccccccccccc"),
            ("staging", "cccccccccccc"),
            ("prod", "cccccccccccc")
        ])
    );
    assert!(
        first
            .message
            .contains("prod: metrics-app:cccccccccccc (its first image)")
    );
    // Again with the result: nothing to commit.
    assert_eq!(
        plan_deploy(&change.content, Some(&change.content), "cccccccccccc").expect("planned"),
        None
    );
    assert!(plan_deploy(&checkout, None, "bad tag").is_err());
}

fn commit(sha: &str, message: &str) -> Commit {
    Commit {
        sha: sha.into(),
        message: message.into(),
    }
}

#[test]
fn rollback_reverts_the_newest_promotion_of_that_environment_not_yet_reverted() {
    let p1 = plan_promotion(FILE, "dev", "staging").expect("p1").message;
    let p2 = "promote staging to metrics-app:dddd (from dev)\n\nAppctl-Promote: staging\nAppctl-Previous: metrics-app:aaaaaaaaaaaa\n";
    let to_prod = "promote prod to metrics-app:dddd (from staging)\n\nAppctl-Promote: prod\n";
    // Newest first.
    let mut log = vec![
        commit("c3", to_prod),
        commit("c2", p2),
        commit("c1", &p1),
        commit(
            "c0",
            "deploy metrics-app:aaaa to dev\n\nAppctl-Deploy: dev\n",
        ),
    ];
    let plan = plan_rollback(&log, "staging").expect("planned");
    assert_eq!(plan.revert, "c2");
    assert!(
        plan.message
            .starts_with("roll back staging to metrics-app:aaaaaaaaaaaa (revert c2)\n"),
        "{}",
        plan.message
    );
    assert!(plan.message.contains("\nAppctl-Reverts: c2\n"));
    // After that rollback, the next one reverts the promotion before it.
    log.insert(0, commit("r1", &plan.message));
    let next = plan_rollback(&log, "staging").expect("planned");
    assert_eq!(next.revert, "c1");
    assert!(
        next.message
            .starts_with("roll back staging to none (revert c1)")
    );
    log.insert(0, commit("r2", &next.message));
    let err = plan_rollback(&log, "staging").expect_err("nothing left");
    assert!(
        err.to_string()
            .starts_with("no promotion of staging to roll back")
    );
    assert_eq!(err.exit_code(), crate::platform::exit::USAGE);
    assert_eq!(plan_rollback(&log, "prod").expect("planned").revert, "c3");
    assert!(
        plan_rollback(&log, "dev").is_err(),
        "up's deploys are not promotions"
    );
}

/// The committed Flux overlays, by environment.
fn overlays() -> BTreeMap<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ["dev", "staging", "prod"]
        .iter()
        .map(|e| {
            let text = std::fs::read_to_string(root.join(flux::overlay_file(e)))
                .expect("the committed overlay");
            (e.to_string(), text)
        })
        .collect()
}

fn overlay_tags(changes: &[(String, String)]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|(f, t)| (f.clone(), flux::overlay_image_tag(t).expect("one tag")))
        .collect()
}

#[test]
fn a_promotion_sets_the_same_tag_in_the_targets_flux_overlay_only() {
    let change = plan_promotion(FILE, "dev", "staging").expect("planned");
    let flux = overlay_changes(FILE, &change.content, &overlays()).expect("planned");
    assert_eq!(
        overlay_tags(&flux),
        pairs(&[(
            "deploy/flux/apps/staging/kustomization.yaml",
            "aaaaaaaaaaaa"
        )])
    );
    // One line of the overlay changes; its comments survive.
    let before = &overlays()["staging"];
    let changed = before
        .lines()
        .zip(flux[0].1.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 1);
    // Nothing changed, nothing to write.
    assert_eq!(
        overlay_changes(FILE, FILE, &overlays()).expect("planned"),
        vec![]
    );
}

#[test]
fn up_sets_every_environment_it_changes_in_the_flux_overlays_too() {
    let kept = set_image(FILE, "staging", &image("bbbbbbbbbbbb")).expect("set");
    let checkout = FILE.replace("tag: \"0123456\"", "tag: dev");
    let change = plan_deploy(&checkout, Some(&kept), "cccccccccccc")
        .expect("planned")
        .expect("a change");
    let flux = overlay_changes(&checkout, &change.content, &overlays()).expect("planned");
    assert_eq!(
        overlay_tags(&flux),
        pairs(&[
            ("deploy/flux/apps/dev/kustomization.yaml", "cccccccccccc"),
            (
                "deploy/flux/apps/staging/kustomization.yaml",
                "bbbbbbbbbbbb"
            ),
            ("deploy/flux/apps/prod/kustomization.yaml", "0123456"),
        ])
    );
}

#[test]
fn an_environment_without_an_overlay_is_argocd_only_and_a_broken_overlay_is_refused() {
    let change = plan_promotion(FILE, "dev", "staging").expect("planned");
    let mut only_dev = overlays();
    only_dev.retain(|e, _| e == "dev");
    assert_eq!(
        overlay_changes(FILE, &change.content, &only_dev).expect("planned"),
        vec![]
    );
    let mut broken = overlays();
    broken.insert("staging".into(), "resources: []\n".into());
    let err = overlay_changes(FILE, &change.content, &broken).expect_err("refused");
    assert!(
        err.to_string().contains("deploy/flux/apps/staging"),
        "{err}"
    );
}

#[test]
fn git_logs_are_split_into_commits() {
    let out =
        "c2\u{1f}promote staging\n\nAppctl-Promote: staging\n\u{1e}\nc1\u{1f}initial\n\u{1e}\n";
    assert_eq!(
        parse_log(out),
        vec![
            commit("c2", "promote staging\n\nAppctl-Promote: staging\n"),
            commit("c1", "initial\n")
        ]
    );
    assert_eq!(parse_log(""), vec![]);
}
