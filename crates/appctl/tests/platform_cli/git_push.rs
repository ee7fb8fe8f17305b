//! The git push's password: from its environment to git's askpass, never on a command line
//! or in output, checked against a real git and a server that records the credential.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// A git smart-HTTP server that only asks for credentials: 401 with a Basic challenge until a
/// request carries an `Authorization` other than `refuse` (curl first sends the URL's user
/// with an empty password), which it records and refuses (403). Serves at most 10
/// connections; returns the port and the recorded header.
fn credential_catcher(refuse: String) -> (u16, std::thread::JoinHandle<Option<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for conn in listener.incoming().take(10) {
            let mut conn = conn.ok()?;
            let mut reader = BufReader::new(conn.try_clone().ok()?);
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Authorization: ") {
                    auth = Some(v.trim().to_string()).filter(|a| *a != refuse);
                }
            }
            if auth.is_some() {
                let _ = conn.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return auth;
            }
            let _ = conn.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"gitea\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        None
    });
    (port, server)
}

#[test]
fn git_push_authenticates_with_the_password_from_its_environment_and_never_shows_it() {
    use appctl::platform::gitops::{AskPass, git_push_command};
    use appctl::platform::runner::{RunError, Runner, System};

    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new(which("git"))
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@localhost",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    ]);
    let (port, server) = credential_catcher(format!("Basic {}", STANDARD.encode(b"appctl:")));
    let secret = "pw-9f8e7d-never-in-argv";
    let askpass = AskPass::create().unwrap();
    let cmd = git_push_command(
        repo.path(),
        &format!("http://127.0.0.1:{port}"),
        &askpass.path(),
        secret,
    );
    let err = System
        .run_cmd(&cmd)
        .expect_err("the server refuses the push");
    let auth = server.join().unwrap();
    assert_eq!(
        auth.as_deref(),
        Some(format!("Basic {}", STANDARD.encode(format!("appctl:{secret}"))).as_str()),
        "git sent the password it got from GIT_ASKPASS"
    );
    let RunError::Failed {
        command, stderr, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert!(
        !command.contains(secret) && !stderr.contains(secret),
        "{err}"
    );
    assert!(!err.to_string().contains(secret));
}
