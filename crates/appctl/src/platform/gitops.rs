//! The GitOps source: the in-cluster Gitea user appctl pushes as, the push of this checkout
//! to it, and the commits that deploy, promote and roll back an environment's image (planned
//! by [`super::environments`], written to deploy/argocd/values.yaml and the Flux overlays in
//! the same commit) — with the password handed to git through its environment,
//! never in an argument or a URL.
//!
//! - `server`: the Gitea user, the askpass script and git commands that authenticate as it;
//! - `clone`: a private temporary clone of the in-cluster repository.

mod clone;
mod server;

use std::path::Path;

use super::cluster::{self, StateKey};
use super::runner::Runner;
use super::{Error, Result, environments};

pub use clone::RepoClone;
pub use server::*;

/// Pushes HEAD to the in-cluster Gitea through a port-forward, as user `appctl` (created on
/// first use; password kept in Secret gitops/git-server-admin), then records the commit.
/// Returns the environments file `main` had before (`None` on the first push): the push
/// replaces the history, and [`commit_images`] carries each environment's image over.
pub(super) async fn push_checkout(
    r: &dyn Runner,
    c: &kube::Client,
    root: &Path,
    commit: &str,
) -> Result<Option<String>> {
    let git = GitServer::connect(c, true).await?;
    let before = match git.clone_main(r, Some(1))? {
        Some(clone) => clone.read_environments().ok(),
        None => None,
    };
    git.push_head(r, root)?;
    drop(git);
    cluster::record_state(c, StateKey::PushedCommit, commit).await?;
    Ok(before)
}

/// `appctl up`'s commit of the image it built for the first environment (dev), keeping the
/// other environments' images from `kept` (the file before a push replaced the history, else
/// the file as it is): [`environments::plan_deploy`]. Records the tag in `gitops/appctl-state`.
pub(super) async fn commit_images(
    r: &dyn Runner,
    c: &kube::Client,
    tag: &str,
    kept: Option<Option<String>>,
) -> Result<()> {
    let git = GitServer::connect(c, false).await?;
    match deploy_commit(&git, r, tag, kept)? {
        Some((sha, message)) => {
            let short: String = sha.chars().take(12).collect();
            for line in message.lines().skip(2).take_while(|l| !l.is_empty()) {
                println!("    {line}");
            }
            println!(
                "    committed {short}: {}",
                message.lines().next().unwrap_or_default()
            );
        }
        None => println!("    the in-cluster repository already has it"),
    }
    drop(git);
    cluster::record_state(c, StateKey::DeployedImage, tag).await
}

/// The clone of `main`, or an error saying appctl has not pushed yet.
fn main_clone(git: &GitServer, r: &dyn Runner, depth: Option<u32>) -> Result<RepoClone> {
    git.clone_main(r, depth)?.ok_or_else(|| {
        Error::NotFound("branch main in the in-cluster repository: run `appctl up` first".into())
    })
}

/// `commit_images`'s commit in the repository of `git`: the commit and its message, or
/// `None` when the file already says it. `kept`: `Some(file before the push)` when this run
/// pushed (`Some(None)`: the first push), `None` to keep the images the file has.
pub fn deploy_commit(
    git: &GitServer,
    r: &dyn Runner,
    tag: &str,
    kept: Option<Option<String>>,
) -> Result<Option<(String, String)>> {
    let clone = main_clone(git, r, Some(1))?;
    let current = clone.read_environments()?;
    let kept = match kept {
        Some(before) => before,
        None => Some(current.clone()),
    };
    let Some(change) = environments::plan_deploy(&current, kept.as_deref(), tag)? else {
        return Ok(None);
    };
    clone.write_environments(r, &current, &change.content)?;
    let sha = git.commit_and_push(r, &clone, &change.message)?;
    Ok(Some((sha, change.message)))
}

/// `appctl promote`: commits FROM's image for TO in the in-cluster repository
/// ([`environments::plan_promotion`]); returns the commit and its message.
pub(super) async fn promote(
    r: &dyn Runner,
    c: &kube::Client,
    from: &str,
    to: &str,
) -> Result<(String, String)> {
    promote_commit(&GitServer::connect(c, false).await?, r, from, to)
}

/// `promote` in the repository of `git`.
pub fn promote_commit(
    git: &GitServer,
    r: &dyn Runner,
    from: &str,
    to: &str,
) -> Result<(String, String)> {
    let clone = main_clone(git, r, Some(1))?;
    let current = clone.read_environments()?;
    let change = environments::plan_promotion(&current, from, to)?;
    clone.write_environments(r, &current, &change.content)?;
    let sha = git.commit_and_push(r, &clone, &change.message)?;
    Ok((sha, change.message))
}

/// `appctl rollback --env ENV`: a revert commit of ENV's last promotion not yet rolled back
/// ([`environments::plan_rollback`]), pushed without force; returns it and its message.
pub(super) async fn revert_promotion(
    r: &dyn Runner,
    c: &kube::Client,
    env: &str,
) -> Result<(String, String)> {
    revert_commit(&GitServer::connect(c, false).await?, r, env)
}

/// `revert_promotion` in the repository of `git`.
pub fn revert_commit(git: &GitServer, r: &dyn Runner, env: &str) -> Result<(String, String)> {
    // The whole history: the promotion may be many commits back.
    let clone = main_clone(git, r, None)?;
    environments::find(&environments::parse(&clone.read_environments()?)?, env)?;
    let plan = environments::plan_rollback(&git.log(r, &clone)?, env)?;
    git.revert(r, &clone, &plan.revert)?;
    let sha = git.commit_and_push(r, &clone, &plan.message)?;
    Ok((sha, plan.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_push_gets_the_password_from_the_environment_never_from_argv_or_the_url() {
        let secret = "s3cr3t-gitea-password";
        let cmd = git_push_command(
            Path::new("/repo"),
            "http://127.0.0.1:41234",
            Path::new("/tmp/appctl-askpass-x/askpass"),
            secret,
        );
        assert_eq!(cmd.program, "git");
        assert!(
            cmd.args.iter().all(|a| !a.contains(secret)),
            "argv: {:?}",
            cmd.args
        );
        assert!(!cmd.line().contains(secret));
        assert!(
            cmd.args
                .contains(&"http://appctl@127.0.0.1:41234/appctl/metrics-app.git".to_string()),
            "{:?}",
            cmd.args
        );
        // No credential helper of the user's gets to store it.
        assert!(
            cmd.args
                .windows(2)
                .any(|w| w == ["-c", "credential.helper="])
        );
        let env: std::collections::HashMap<_, _> = cmd.env.iter().cloned().collect();
        assert_eq!(env["APPCTL_GIT_PASSWORD"], secret);
        assert_eq!(env["GIT_ASKPASS"], "/tmp/appctl-askpass-x/askpass");
        assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
    }

    #[test]
    fn the_askpass_script_holds_no_secret_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let askpass = AskPass::create().expect("script");
        let script = std::fs::read_to_string(askpass.path()).expect("readable");
        assert!(script.contains("$APPCTL_GIT_PASSWORD"), "{script}");
        let mode = std::fs::metadata(askpass.path())
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only the owner: {mode:o}");
        let out = std::process::Command::new(askpass.path())
            .arg("Password for 'http://appctl@127.0.0.1:1': ")
            .env("APPCTL_GIT_PASSWORD", "pw from env")
            .output()
            .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "pw from env\n");
        let dir = askpass.path();
        drop(askpass);
        assert!(!dir.exists(), "removed on drop");
    }

    #[test]
    fn gitea_s_generated_password_is_read_from_its_output() {
        // The line gitea's `admin user create --random-password` prints (cmd/admin_user_create.go),
        // after whatever it logs first.
        let out = "2026/12/01 17:00:00 ...s/setting/setting.go:100:init() [I] log\n\
                   generated random password is 'aB3$x'y9'\n\
                   New user 'appctl' has been successfully created!\n";
        assert_eq!(parse_gitea_password(out).as_deref(), Some("aB3$x'y9"));
        assert_eq!(
            parse_gitea_password("user already exists [name: appctl]"),
            None
        );
        assert_eq!(
            parse_gitea_password("generated random password is ''"),
            None
        );
    }
}
