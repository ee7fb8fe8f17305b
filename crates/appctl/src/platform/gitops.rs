//! The GitOps source: the in-cluster Gitea user appctl pushes as, the push of this checkout
//! to it, and the commits that deploy, promote and roll back an environment's image (planned
//! by [`super::environments`], written to deploy/argocd/values.yaml and the Flux overlays in
//! the same commit) — with the password handed to git through its environment,
//! never in an argument or a URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster;
use super::environments;
use super::flux;
use super::runner::{Cmd, RunError, Runner};
use super::up::{apply_secret, path, random_hex};
use super::{Error, Result};

/// A `GIT_ASKPASS` program in a private temporary directory (removed on drop). It prints the
/// password from the environment variable `APPCTL_GIT_PASSWORD`, so the password reaches git
/// through its environment: never in an argument, a URL, the script, or a credential store.
#[derive(Debug)]
pub struct AskPass {
    dir: PathBuf,
}

impl AskPass {
    /// Writes the script.
    pub fn create() -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("appctl-askpass-{}", random_hex(8)?));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        let me = Self { dir };
        let script = me.path();
        // git asks "Username for 'http://…': " only when the URL has no user; it has.
        std::fs::write(
            &script,
            "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$APPCTL_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$APPCTL_GIT_PASSWORD\" ;;\nesac\n",
        )
        .map_err(Error::io(format!("writing {}", script.display())))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(format!("making {} executable", script.display())))?;
        Ok(me)
    }

    /// The script's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("askpass")
    }
}

impl Drop for AskPass {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The user appctl pushes to Gitea as.
pub const GIT_USER: &str = "appctl";

/// `git push --force` of HEAD to `main` of the in-cluster repository at `base` (e.g.
/// `http://127.0.0.1:PORT`), as [`GIT_USER`] with `password` given to git by `askpass` via the
/// environment. `credential.helper` is emptied so no helper of the user's stores the password.
pub fn git_push_command(root: &Path, base: &str, askpass: &Path, password: &str) -> Cmd {
    let url = repo_url(base);
    git_command(
        &[
            "-C",
            &path(root),
            "push",
            "--force",
            &url,
            "HEAD:refs/heads/main",
        ],
        askpass,
        password,
    )
}

/// The password in the output of `gitea admin user create --random-password`, which prints
/// `generated random password is '…'` (gitea `cmd/admin_user_create.go`).
pub fn parse_gitea_password(output: &str) -> Option<String> {
    const MARK: &str = "generated random password is '";
    let line = output.lines().find(|l| l.contains(MARK))?;
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let end = rest.rfind('\'')?;
    let pw = &rest[..end];
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Creates the Gitea user [`GIT_USER`] with a password Gitea generates (so it is in no
/// process's arguments), and returns that password.
pub(super) async fn create_git_user(c: &kube::Client, pod: &str) -> Result<String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use tokio::io::AsyncReadExt;

    let what = format!("gitea admin user create (exec in gitops/{pod})");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "gitops");
    let mut proc = pods
        .exec(
            pod,
            [
                "gitea",
                "admin",
                "user",
                "create",
                "--username",
                GIT_USER,
                "--random-password",
                "--email",
                "appctl@localhost",
                "--admin",
                "--must-change-password=false",
            ],
            &AttachParams::default().stdout(true).stderr(true),
        )
        .await
        .map_err(Error::kube(what.clone()))?;
    let (mut out, mut err) = (String::new(), String::new());
    let stdout = proc.stdout();
    let stderr = proc.stderr();
    let status = proc.take_status();
    let read_out = async {
        if let Some(mut s) = stdout {
            let _ = s.read_to_string(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = proc.join().await;
    if let Some(pw) = parse_gitea_password(&out) {
        return Ok(pw);
    }
    let failure = status.and_then(|s| s.message).unwrap_or_default();
    let hint = if format!("{out}{err}{failure}").contains("already exists") {
        "\nthe user exists but its password Secret gitops/git-server-admin is gone: delete the user \
         (kubectl -n gitops exec deploy/git-server -- gitea admin user delete --username appctl --purge) \
         and run `appctl up` again"
    } else {
        ""
    };
    Err(Error::NotFound(format!(
        "a generated password in the output of {what}: {failure}\n{}{}{hint}",
        out.trim(),
        err.trim()
    )))
}

/// A connection to the in-cluster repository as [`GIT_USER`]: the password (from Secret
/// gitops/git-server-admin), the askpass script that hands it to git, and a port-forward to
/// Gitea, closed on drop.
pub struct GitServer {
    password: String,
    askpass: AskPass,
    /// `http://127.0.0.1:PORT` (the port-forward), for the checkout's push.
    base: String,
    /// The repository's URL, with the user and never the password.
    url: String,
    forward: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(f) = &self.forward {
            f.abort();
        }
    }
}

impl GitServer {
    /// Connects; creates the Gitea user on first use when `create_user`, else a missing
    /// password Secret means appctl never pushed here ([`Error::NotFound`]).
    pub(super) async fn connect(c: &kube::Client, create_user: bool) -> Result<Self> {
        let pod = cluster::running_pod(
            c,
            "gitops",
            "app.kubernetes.io/name=git-server",
            Duration::from_secs(300),
        )
        .await?;
        let password =
            match cluster::secret_value_opt(c, "gitops", "git-server-admin", "password").await? {
                Some(p) => p,
                None if create_user => {
                    let p = create_git_user(c, &pod).await?;
                    apply_secret(c, "gitops", "git-server-admin", "password", &p).await?;
                    p
                }
                None => {
                    return Err(Error::NotFound(
                        "Secret gitops/git-server-admin: appctl has not pushed to the in-cluster \
                         git server yet; run `appctl up` first"
                            .into(),
                    ));
                }
            };
        let askpass = AskPass::create()?;
        let (port, forward) = cluster::port_forward(c, "gitops", &pod, 3000).await?;
        let base = format!("http://127.0.0.1:{port}");
        Ok(Self {
            password,
            askpass,
            url: repo_url(&base),
            base,
            forward: Some(forward),
        })
    }

    /// The repository at `url` (any URL or path git takes), as [`GIT_USER`] with `password`:
    /// what the commits are tested against, a bare repository in a temporary directory.
    pub fn at(url: &str, password: &str) -> Result<Self> {
        Ok(Self {
            password: password.into(),
            askpass: AskPass::create()?,
            base: String::new(),
            url: url.into(),
            forward: None,
        })
    }

    /// The repository's URL.
    fn url(&self) -> String {
        self.url.clone()
    }

    /// `git ARGS` with the password in the environment only.
    fn git(&self, args: &[&str]) -> Cmd {
        git_command(args, &self.askpass.path(), &self.password)
    }

    /// Runs `cmd`, with the password masked out of a failure's stderr.
    fn run(&self, r: &dyn Runner, cmd: &Cmd) -> Result<String> {
        r.run_cmd(cmd)
            .map(|o| o.stdout)
            .map_err(|e| mask(e, &self.password).into())
    }

    /// `git push --force` of the checkout's HEAD to `main`.
    fn push_head(&self, r: &dyn Runner, root: &Path) -> Result<()> {
        let cmd = git_push_command(root, &self.base, &self.askpass.path(), &self.password);
        self.run(r, &cmd).map(|_| ())
    }

    /// A clone of `main` in a private temporary directory (`depth` commits, all when `None`),
    /// or `None` when the repository or its `main` does not exist yet.
    pub fn clone_main(&self, r: &dyn Runner, depth: Option<u32>) -> Result<Option<RepoClone>> {
        let dir = RepoClone::new_dir()?;
        let target = path(&dir.dir.join("repo"));
        let depth = depth.map(|d| d.to_string());
        let mut args = vec!["clone", "--quiet", "--single-branch", "--branch", "main"];
        if let Some(d) = &depth {
            args.extend(["--depth", d]);
        }
        let url = self.url();
        args.extend([url.as_str(), target.as_str()]);
        match r.run_cmd(&self.git(&args)) {
            Ok(_) => Ok(Some(dir)),
            // Gitea answers 404 for a repository nobody pushed to; git names a missing branch.
            Err(RunError::Failed { stderr, .. })
                if stderr.contains("not found") || stderr.contains("Remote branch main") =>
            {
                Ok(None)
            }
            Err(e) => Err(mask(e, &self.password).into()),
        }
    }

    /// Commits what is staged in `clone` with `message` as appctl, and pushes it to `main`
    /// (not forced: if `main` moved meanwhile, the push fails and nothing is lost).
    pub fn commit_and_push(
        &self,
        r: &dyn Runner,
        clone: &RepoClone,
        message: &str,
    ) -> Result<String> {
        let repo = clone.repo();
        let mut commit = vec!["-C", &repo];
        commit.extend(IDENTITY);
        commit.extend(["commit", "--quiet", "--no-verify", "-m", message]);
        self.run(r, &self.git(&commit))?;
        let sha = self
            .run(r, &self.git(&["-C", &repo, "rev-parse", "HEAD"]))?
            .trim()
            .to_string();
        let url = self.url();
        self.run(
            r,
            &self.git(&["-C", &repo, "push", "--quiet", &url, "HEAD:refs/heads/main"]),
        )?;
        Ok(sha)
    }

    /// The history of `main` in `clone`, newest first.
    pub fn log(&self, r: &dyn Runner, clone: &RepoClone) -> Result<Vec<environments::Commit>> {
        let repo = clone.repo();
        let format = format!("--format={}", environments::LOG_FORMAT);
        let out = self.run(r, &self.git(&["-C", &repo, "log", &format, "HEAD"]))?;
        Ok(environments::parse_log(&out))
    }

    /// `git revert --no-commit SHA` in `clone`: the change is staged for [`Self::commit_and_push`].
    pub fn revert(&self, r: &dyn Runner, clone: &RepoClone, sha: &str) -> Result<()> {
        let repo = clone.repo();
        let mut args = vec!["-C", &repo];
        args.extend(IDENTITY);
        args.extend(["revert", "--no-commit", sha]);
        self.run(r, &self.git(&args)).map(|_| ())
    }
}

/// Who appctl's commits are by; no signing (no key of the user's is involved), no hooks.
const IDENTITY: [&str; 6] = [
    "-c",
    "user.name=appctl",
    "-c",
    "user.email=appctl@localhost",
    "-c",
    "commit.gpgsign=false",
];

/// A private temporary clone of the in-cluster repository, removed on drop.
pub struct RepoClone {
    dir: PathBuf,
}

impl RepoClone {
    fn new_dir() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("appctl-clone-{}", random_hex(8)?));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    fn repo(&self) -> String {
        path(&self.dir.join("repo"))
    }

    /// The environments file of the clone.
    pub fn read_environments(&self) -> Result<String> {
        let file = self.dir.join("repo").join(environments::ENVIRONMENTS_FILE);
        std::fs::read_to_string(&file).map_err(Error::io(format!(
            "reading {} of the in-cluster repository",
            environments::ENVIRONMENTS_FILE
        )))
    }

    /// The Flux overlay of each environment of `envs` that has one in the clone.
    fn read_overlays(
        &self,
        envs: &[environments::Environment],
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for e in envs {
            let file = self.dir.join("repo").join(flux::overlay_file(&e.name));
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    out.insert(e.name.clone(), text);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::Io {
                        what: format!("reading {} of the in-cluster repository", file.display()),
                        source: err,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes the environments file (`before` → `content`) and, for each environment whose
    /// image changes, its Flux overlay ([`environments::overlay_changes`]), and stages them:
    /// one commit for both engines.
    pub fn write_environments(&self, r: &dyn Runner, before: &str, content: &str) -> Result<()> {
        let overlays = self.read_overlays(&environments::parse(content)?)?;
        let mut files = environments::overlay_changes(before, content, &overlays)?;
        files.push((
            environments::ENVIRONMENTS_FILE.to_string(),
            content.to_string(),
        ));
        for (name, text) in &files {
            let file = self.dir.join("repo").join(name);
            std::fs::write(&file, text)
                .map_err(Error::io(format!("writing {}", file.display())))?;
        }
        let repo = self.repo();
        let mut add = vec!["-C", &repo, "add", "--"];
        add.extend(files.iter().map(|(f, _)| f.as_str()));
        r.run("git", &add)?;
        Ok(())
    }
}

impl Drop for RepoClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The in-cluster repository's URL at `base` (e.g. `http://127.0.0.1:PORT`), as [`GIT_USER`].
fn repo_url(base: &str) -> String {
    format!("{base}/{GIT_USER}/metrics-app.git").replacen("://", &format!("://{GIT_USER}@"), 1)
}

/// `git ARGS` that authenticates as [`GIT_USER`] with `password` given by `askpass` through
/// the environment; `credential.helper` emptied so no helper of the user's stores it.
pub fn git_command(args: &[&str], askpass: &Path, password: &str) -> Cmd {
    let mut all = vec!["-c", "credential.helper="];
    all.extend(args);
    Cmd::new("git", &all)
        .env("GIT_ASKPASS", &path(askpass))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("APPCTL_GIT_USERNAME", GIT_USER)
        .env("APPCTL_GIT_PASSWORD", password)
}

/// git does not echo the password, but a server's message might: never show it.
fn mask(e: RunError, password: &str) -> RunError {
    match e {
        RunError::Failed {
            command,
            code,
            stderr,
        } => RunError::Failed {
            command,
            code,
            stderr: stderr.replace(password, "***"),
        },
        other => other,
    }
}

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
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appctl-state", "namespace": "gitops"},
        "data": {"pushed-commit": commit}
    }))
    .map_err(Error::manifest("ConfigMap gitops/appctl-state"))?;
    cluster::apply_object(c, obj, None).await?;
    Ok(before)
}

/// Field manager of the `deployed-image` record (its own, so that applying `pushed-commit`
/// as appctl does not remove it).
const IMAGES_MANAGER: &str = "appctl-images";

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
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appctl-state", "namespace": "gitops"},
        "data": {"deployed-image": tag}
    }))
    .map_err(Error::manifest("ConfigMap gitops/appctl-state"))?;
    cluster::apply_object_as(c, obj, None, IMAGES_MANAGER).await
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
