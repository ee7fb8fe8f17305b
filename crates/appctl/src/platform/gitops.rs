//! The GitOps source: the in-cluster Gitea user appctl pushes as, and the push of this
//! checkout to it — with the password handed to git through its environment, never in an
//! argument or a URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster;
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
    let url =
        format!("{base}/{GIT_USER}/metrics-app.git").replacen("://", &format!("://{GIT_USER}@"), 1);
    Cmd::new(
        "git",
        &[
            "-C",
            &path(root),
            "-c",
            "credential.helper=",
            "push",
            "--force",
            &url,
            "HEAD:refs/heads/main",
        ],
    )
    .env("GIT_ASKPASS", &path(askpass))
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("APPCTL_GIT_USERNAME", GIT_USER)
    .env("APPCTL_GIT_PASSWORD", password)
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

/// Pushes HEAD to the in-cluster Gitea through a port-forward, as user `appctl` (created on
/// first use; password kept in Secret gitops/git-server-admin), then records the commit.
pub(super) async fn push_checkout(
    r: &dyn Runner,
    c: &kube::Client,
    root: &Path,
    commit: &str,
) -> Result<()> {
    let pod = cluster::running_pod(
        c,
        "gitops",
        "app.kubernetes.io/name=git-server",
        Duration::from_secs(300),
    )
    .await?;
    let admin = match cluster::secret_value_opt(c, "gitops", "git-server-admin", "password").await?
    {
        Some(p) => p,
        None => {
            let p = create_git_user(c, &pod).await?;
            apply_secret(c, "gitops", "git-server-admin", "password", &p).await?;
            p
        }
    };
    let askpass = AskPass::create()?;
    let (port, task) = cluster::port_forward(c, "gitops", &pod, 3000).await?;
    let cmd = git_push_command(
        root,
        &format!("http://127.0.0.1:{port}"),
        &askpass.path(),
        &admin,
    );
    let result = r.run_cmd(&cmd);
    task.abort();
    drop(askpass);
    // git does not echo the password, but a server's message might: never show it.
    result.map_err(|e| match e {
        RunError::Failed {
            command,
            code,
            stderr,
        } => RunError::Failed {
            command,
            code,
            stderr: stderr.replace(&admin, "***"),
        },
        other => other,
    })?;
    let obj = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appctl-state", "namespace": "gitops"},
        "data": {"pushed-commit": commit}
    }))
    .map_err(Error::manifest("ConfigMap gitops/appctl-state"))?;
    cluster::apply_object(c, obj, None).await
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
