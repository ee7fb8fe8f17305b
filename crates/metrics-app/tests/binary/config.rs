//! Configuration: errors and exit code 2 naming the flag, the password sources, `--version`
//! and `--help`.

use super::*;

/// Runs the binary to its end with `args` and only the environment in `envs` (no `PASSWORD`
/// unless given there). Fails after 10 s if it is still running: every case here must exit,
/// and one that serves instead would otherwise hold the test until its time limit.
fn run_to_end(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Binary::command();
    cmd.env_remove("PASSWORD")
        .args(args)
        .envs(envs.iter().copied());
    let out = testkit::process::output_within(cmd, Duration::from_secs(10)).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_password_it_exits_2_with_one_line_naming_both_options() {
    let (code, stdout, stderr) = run_to_end(&["--bind", "127.0.0.1:0"], &[]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("PASSWORD") && stderr.contains("PASSWORD_FILE"),
        "{stderr}"
    );
}

#[test]
fn a_password_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    // An unreadable file is reported with its path and exit code 2.
    let (code, _, stderr) = run_to_end(&["--password-file", "/nonexistent/pw"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/pw"), "{stderr}");
    // A readable one gets past configuration: the next failure is the bad bind address.
    let (code, _, stderr) = run_to_end(
        &["--bind", "nope"],
        &[("PASSWORD_FILE", file.to_str().unwrap())],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--bind") && stderr.contains("nope"),
        "{stderr}"
    );
}

#[test]
fn a_password_in_the_environment_and_a_password_file_at_once_exit_2_naming_both() {
    let (code, _, stderr) = run_to_end(&["--password-file", "/nonexistent"], &[("PASSWORD", "x")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("PASSWORD") && stderr.contains("--password-file"),
        "{stderr}"
    );
    let (code, _, stderr) = run_to_end(&[], &[("PASSWORD", "x"), ("PASSWORD_FILE", "/x")]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn bad_values_exit_2_naming_the_flag_the_value_and_what_is_accepted() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--drain-delay", "soon"],
            &["--drain-delay", "DRAIN_DELAY", "soon", "500ms"],
        ),
        (
            &["--bind", "localhost"],
            &["--bind", "localhost", "socket address"],
        ),
        (&["--store", "redis"], &["REDIS_URL"]),
        (
            &["--fault", "explode"],
            &["--fault", "explode", "slow-even", "leak"],
        ),
        (&["--fault", "leak=lots"], &["leak=lots", "MB"]),
        (&["--max-connections=-3"], &["MAX_CONNECTIONS", "-3"]),
        // clap's own validation, also exit 2.
        (&["--store", "disk"], &["disk", "memory", "redis"]),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run_to_end(args, &[("PASSWORD", "x")]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr:?}"
            );
        }
    }
    // Environment fallbacks are validated the same way.
    let (code, _, stderr) = run_to_end(&[], &[("PASSWORD", "x"), ("SHUTDOWN_TIMEOUT", "forever")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("SHUTDOWN_TIMEOUT") && stderr.contains("forever"),
        "{stderr}"
    );
}

#[test]
fn version_names_the_commit_and_help_documents_every_flag() {
    let (code, stdout, _) = run_to_end(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")) && stdout.contains("commit"),
        "{stdout}"
    );
    let (code, help, _) = run_to_end(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--bind",
        "--store",
        "--redis-url",
        "--redis-key",
        "--instance",
        "--log-format",
        "--drain-delay",
        "--shutdown-timeout",
        "--header-read-timeout",
        "--max-connections",
        "--fault",
        "--password-file",
        "--management-bind",
        "--access-log",
        "--body-read-timeout",
        "--max-connection-age",
        "PASSWORD",
    ] {
        assert!(help.contains(flag), "{flag} not documented in --help");
    }
}
