//! The `topology` command as a person runs it: `--help`, bad arguments (exit 2), and `up`,
//! which prints the URLs, then a line for each alert its webhook receives (also listed by
//! `GET /alerts` on the webhook), and stops everything on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use testkit::process::Proc;

fn topology() -> Command {
    Command::new(env!("CARGO_BIN_EXE_topology"))
}

#[test]
fn help_names_the_command_and_its_flags_and_bad_arguments_exit_2() {
    let out = topology().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("up ")) && help.contains("helm"),
        "{help}"
    );
    let out = topology().args(["up", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--replicas", "--fault", "--redis-ha"] {
        assert!(help.contains(flag), "{flag} not in:\n{help}");
    }
    for args in [&[][..], &["up", "--replicas", "0"], &["down"]] {
        let out = topology().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

/// Stops `topology up` with SIGTERM, so it stops what it started, even when an assertion
/// fails first (a SIGKILL would leave its children running).
struct Up(Proc);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.signal("TERM").is_ok() {
            let _ = self.0.wait_exit(Duration::from_secs(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_each_alert_the_webhook_receives_and_stops_on_sigterm() {
    let mut cmd = topology();
    cmd.args(["up", "--replicas", "1"]);
    let mut up = Up(Proc::spawn("topology up", cmd).unwrap());
    let webhook =
        up.0.wait_output(Duration::from_secs(90), "webhook URL", |out| {
            out.lines()
                .find_map(|l| l.strip_prefix("webhook: "))
                .map(str::to_owned)
        })
        .unwrap();
    // What Alertmanager POSTs (webhook_config payload, trimmed to what is read).
    let payload = r#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"CliTestAlert","instance":"replica-1"}}]}"#;
    let http = testkit::http::client();
    let posted = http
        .post(&webhook)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert!(
        up.0.wait_for_output(
            "alert firing: CliTestAlert replica-1",
            Duration::from_secs(5)
        ),
        "no alert line:\n{}",
        up.0.output()
    );
    let shown = http
        .get(&webhook)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("CliTestAlert"), "{shown}");
    up.0.signal("TERM").unwrap();
    let status = up.0.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(status.code(), Some(0), "{}", up.0.output());
    assert!(up.0.output().contains("stopped"), "{}", up.0.output());
}
