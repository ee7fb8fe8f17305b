//! The environment commits of `appctl up`, `promote` and `rollback --env` against a real git
//! repository: a bare repository in a temporary directory stands in for the in-cluster Gitea
//! (the same clone, commit, push, log and revert commands; only the URL differs), seeded with
//! the committed deploy/argocd/values.yaml and Flux overlays (deploy/flux/apps/<env>), whose
//! image tags every commit keeps equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use appctl::platform::environments::{self, ENVIRONMENTS_FILE};
use appctl::platform::flux;
use appctl::platform::gitops::{self, GitServer};
use appctl::platform::runner::System;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@localhost",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository whose `main` has the committed environments file (as `appctl up`'s push
/// leaves it), and its path.
fn server() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("metrics-app.git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("deploy/argocd")).unwrap();
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(&work, &["init", "-q", "-b", "main"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(root.join(ENVIRONMENTS_FILE), work.join(ENVIRONMENTS_FILE)).unwrap();
    for env in ["dev", "staging", "prod"] {
        let overlay = flux::overlay_file(env);
        std::fs::create_dir_all(work.join(&overlay).parent().unwrap()).unwrap();
        std::fs::copy(root.join(&overlay), work.join(&overlay)).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "the checkout"]);
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    let url = bare.to_str().unwrap().to_string();
    (dir, url)
}

/// Each environment's image tag on the server's `main`, after checking that its Flux overlay
/// there names the same tag.
fn tags(bare: &str) -> Vec<(String, String)> {
    let text = git(
        Path::new(bare),
        &["show", &format!("main:{ENVIRONMENTS_FILE}")],
    );
    let tags: Vec<(String, String)> = environments::parse(&text)
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.image.tag))
        .collect();
    for (env, tag) in &tags {
        let overlay = git(
            Path::new(bare),
            &["show", &format!("main:{}", flux::overlay_file(env))],
        );
        assert_eq!(
            &flux::overlay_image_tag(&overlay).unwrap(),
            tag,
            "{env}: the Flux overlay and {ENVIRONMENTS_FILE} disagree"
        );
    }
    tags
}

fn expect(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn up_promote_and_rollback_are_commits_on_main_and_history_only_grows() {
    let (_dir, bare) = server();
    let g = GitServer::at(&bare, "not-needed-for-a-path").unwrap();

    // First up: every environment gets the image built.
    let (first, message) = gitops::deploy_commit(&g, &System, "aaaaaaaaaaaa", Some(None))
        .unwrap()
        .expect("a commit");
    assert!(message.starts_with("deploy metrics-app:aaaaaaaaaaaa to dev\n"));
    assert_eq!(
        tags(&bare),
        expect(&[
            ("dev", "aaaaaaaaaaaa"),
            ("staging", "aaaaaaaaaaaa"),
            ("prod", "aaaaaaaaaaaa")
        ])
    );
    // Again: nothing to commit.
    assert_eq!(
        gitops::deploy_commit(&g, &System, "aaaaaaaaaaaa", None).unwrap(),
        None
    );
    // A new build: dev only.
    gitops::deploy_commit(&g, &System, "bbbbbbbbbbbb", None)
        .unwrap()
        .expect("a commit");
    assert_eq!(
        tags(&bare),
        expect(&[
            ("dev", "bbbbbbbbbbbb"),
            ("staging", "aaaaaaaaaaaa"),
            ("prod", "aaaaaaaaaaaa")
        ])
    );

    // Promotion: one commit, staging gets dev's image.
    let (promotion, message) = gitops::promote_commit(&g, &System, "dev", "staging").unwrap();
    assert!(message.starts_with("promote staging to metrics-app:bbbbbbbbbbbb (from dev)\n"));
    assert_eq!(
        tags(&bare)[1],
        ("staging".to_string(), "bbbbbbbbbbbb".to_string())
    );
    assert_eq!(
        git(Path::new(&bare), &["log", "-1", "--format=%H%n%an", "main"]),
        format!("{promotion}\nappctl\n")
    );
    // Both engines' files in that one commit, nothing else.
    let files = git(
        Path::new(&bare),
        &["show", "--name-only", "--format=", &promotion],
    );
    assert_eq!(
        files.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        [
            ENVIRONMENTS_FILE,
            "deploy/flux/apps/staging/kustomization.yaml"
        ]
    );
    let err = gitops::promote_commit(&g, &System, "dev", "staging").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("staging already runs dev's image metrics-app:bbbbbbbbbbbb"),
        "{err}"
    );
    assert_eq!(err.exit_code(), appctl::platform::exit::USAGE);

    // Rollback: a revert commit on top, the promotion stays in the history.
    let (revert, message) = gitops::revert_commit(&g, &System, "staging").unwrap();
    assert!(
        message.starts_with("roll back staging to metrics-app:aaaaaaaaaaaa (revert "),
        "{message}"
    );
    assert_eq!(
        tags(&bare),
        expect(&[
            ("dev", "bbbbbbbbbbbb"),
            ("staging", "aaaaaaaaaaaa"),
            ("prod", "aaaaaaaaaaaa")
        ])
    );
    let history = git(Path::new(&bare), &["log", "--format=%H", "main"]);
    let history: Vec<&str> = history.lines().collect();
    assert_eq!(history[0], revert);
    assert_eq!(history[1], promotion, "not a force push: {history:?}");
    assert!(history.contains(&first.as_str()));
    let subject = git(Path::new(&bare), &["log", "-1", "--format=%B", "main"]);
    assert!(
        subject.contains(&format!("Appctl-Reverts: {promotion}")),
        "{subject}"
    );

    // Nothing left to roll back for staging; prod never had a promotion; qa does not exist.
    let err = gitops::revert_commit(&g, &System, "staging").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no promotion of staging to roll back"),
        "{err}"
    );
    assert!(gitops::revert_commit(&g, &System, "prod").is_err());
    let err = gitops::revert_commit(&g, &System, "qa").unwrap_err();
    assert!(
        err.to_string().starts_with("unknown environment \"qa\""),
        "{err}"
    );
    assert_eq!(
        git(Path::new(&bare), &["rev-parse", "main"]).trim(),
        revert,
        "refused operations commit nothing"
    );
}

#[test]
fn a_push_that_replaced_the_history_keeps_each_environments_image() {
    let (_dir, bare) = server();
    let g = GitServer::at(&bare, "x").unwrap();
    gitops::deploy_commit(&g, &System, "aaaaaaaaaaaa", Some(None)).unwrap();
    gitops::deploy_commit(&g, &System, "bbbbbbbbbbbb", None).unwrap();
    gitops::promote_commit(&g, &System, "dev", "prod").unwrap();
    let before = git(
        Path::new(&bare),
        &["show", &format!("main:{ENVIRONMENTS_FILE}")],
    );
    // appctl up force-pushes a new checkout: main has the checkout's placeholders again.
    let checkout = git(Path::new(&bare), &["rev-list", "--max-parents=0", "main"]);
    git(
        Path::new(&bare),
        &["update-ref", "refs/heads/main", checkout.trim()],
    );
    assert_eq!(tags(&bare)[2].1, "dev", "the checkout's placeholder");
    gitops::deploy_commit(&g, &System, "cccccccccccc", Some(Some(before)))
        .unwrap()
        .expect("a commit");
    assert_eq!(
        tags(&bare),
        expect(&[
            ("dev", "cccccccccccc"),
            ("staging", "aaaaaaaaaaaa"),
            ("prod", "bbbbbbbbbbbb")
        ])
    );
}

#[test]
fn a_repository_without_main_is_reported_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("empty.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let g = GitServer::at(bare.to_str().unwrap(), "x").unwrap();
    assert!(g.clone_main(&System, Some(1)).unwrap().is_none());
    let err = gitops::promote_commit(&g, &System, "dev", "staging").unwrap_err();
    assert!(err.to_string().contains("run `appctl up` first"), "{err}");
}
