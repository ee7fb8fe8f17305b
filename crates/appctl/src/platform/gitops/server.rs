//! The in-cluster Gitea as appctl's user: creating the user with a password Gitea generates,
//! the askpass script that hands the password to git through its environment, git commands
//! that authenticate that way, and [`GitServer`], a connection to the repository.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::clone::RepoClone;
use crate::platform::runner::{Cmd, RunError, Runner};
use crate::platform::up::{apply_secret, path, random_hex};
use crate::platform::{Error, Result, cluster, environments};

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
    pub(super) fn push_head(&self, r: &dyn Runner, root: &Path) -> Result<()> {
        let cmd = git_push_command(root, &self.base, &self.askpass.path(), &self.password);
        self.run(r, &cmd).map(|_| ())
    }

    /// A clone of `main` in a private temporary directory (`depth` commits, all when `None`),
    /// or `None` when the repository or its `main` does not exist yet.
    pub fn clone_main(&self, r: &dyn Runner, depth: Option<u32>) -> Result<Option<RepoClone>> {
        let dir = RepoClone::new_dir()?;
        let target = dir.repo();
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
