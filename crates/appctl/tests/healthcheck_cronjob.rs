//! The chart's scheduled health check (`healthCheck`, charts/metrics-app/templates/
//! healthcheck-cronjob.yaml) run for real: the chart is rendered with helm, and the CronJob's
//! containers — the busybox prune step, then `appctl diagnose` — are run as the kubelet would
//! run them (their `command` and `args`, `$(VAR)` expanded from their `env`, the reports volume
//! mounted on a temp dir) against a real metrics-app on 127.0.0.1, with the built appctl in
//! place of the image's. What passes or fails here is the Job's exit code in a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::metrics_app;
use serde::Deserialize;
use serde_json::Value;

/// Where appctl is in the appctl image (the Dockerfile's `appctl` stage); the CronJob must call
/// it there, since the image has no shell and no PATH lookup to rely on.
const IMAGE_APPCTL: &str = "/usr/local/bin/appctl";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// helm: `HELM`, else the one `scripts/install-tools` puts in `.tools/bin` (as scripts/validate
/// uses it). Missing helm fails the test with what to run: a health check nobody rendered is
/// not a health check that passed.
fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM") {
        return PathBuf::from(path);
    }
    let path = repo_root().join(".tools/bin/helm");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-tools` (or set HELM to a helm binary)",
        path.display()
    );
    path
}

/// The chart rendered with the health check on and `sets` (`key=value`), as YAML documents.
fn render(sets: &[String]) -> Vec<Value> {
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg("metrics-app")
        .arg(repo_root().join("charts/metrics-app"))
        .args(["--namespace", "metrics-app"])
        .args(["--set", "secret.existingSecret.name=metrics-app-password"])
        .args(["--set", "healthCheck.enabled=true"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("running helm");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The settings that point the check at `app` on this host: its public URL, and its management
/// port's `/healthz` for `--probe` (the Service's DNS name resolves only in a cluster).
fn local(app: &common::Proc) -> Vec<String> {
    vec![
        format!("healthCheck.url={}", app.url("/counter")),
        format!("healthCheck.probeUrl={}", app.management_url("/healthz")),
    ]
}

/// The one CronJob of a render.
fn cronjob(docs: &[Value]) -> Value {
    let jobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    assert_eq!(jobs.len(), 1, "one CronJob rendered: {docs:#?}");
    jobs[0].clone()
}

/// A container of the CronJob's pod, run the way the kubelet runs it.
struct Container {
    spec: Value,
}

impl Container {
    /// The init containers, then the containers, in the order the kubelet runs them.
    fn all(cronjob: &Value) -> Vec<Container> {
        let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let list = |key: &str| pod[key].as_array().cloned().unwrap_or_default();
        list("initContainers")
            .into_iter()
            .chain(list("containers"))
            .map(|spec| Container { spec })
            .collect()
    }

    fn name(&self) -> &str {
        self.spec["name"].as_str().unwrap()
    }

    /// The container's environment: literal values, and the downward-API job name label the
    /// Job controller puts on its pods.
    fn env(&self, job_name: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for e in self.spec["env"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else {
                let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str();
                assert_eq!(
                    path,
                    Some("metadata.labels['batch.kubernetes.io/job-name']"),
                    "{name}: only the job-name label is emulated here"
                );
                job_name.to_string()
            };
            env.insert(name, value);
        }
        env
    }

    /// command + args with `$(VAR)` expanded (Kubernetes' rule: a defined variable is replaced,
    /// anything else is left as written) and the reports volume's mount path mapped to `dir`.
    fn argv(&self, job_name: &str, dir: &Path) -> Vec<String> {
        let env = self.env(job_name);
        let mounts = self.spec["volumeMounts"].as_array().cloned().unwrap();
        assert_eq!(mounts.len(), 1, "{}: the reports volume only", self.name());
        let mount = mounts[0]["mountPath"].as_str().unwrap().to_string();
        let strings = |key: &str| {
            self.spec[key]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        strings("command")
            .into_iter()
            .chain(strings("args"))
            .map(|mut a| {
                for (k, v) in &env {
                    a = a.replace(&format!("$({k})"), v);
                }
                match a.strip_prefix(&mount) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                        format!("{}{rest}", dir.display())
                    }
                    _ => a,
                }
            })
            .collect()
    }

    /// Runs the container's command on this host: appctl from the image is the built appctl,
    /// `sh` (busybox in the image) is this host's POSIX sh.
    fn run(&self, job_name: &str, dir: &Path) -> Output {
        let argv = self.argv(job_name, dir);
        let program = match argv[0].as_str() {
            IMAGE_APPCTL => PathBuf::from(env!("CARGO_BIN_EXE_appctl")),
            "sh" => PathBuf::from("sh"),
            other => panic!("{}: unexpected command {other}", self.name()),
        };
        Command::new(program)
            .args(&argv[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env(job_name))
            .output()
            .unwrap()
    }
}

/// One scheduled run: every container in order, stopping at the first that fails (the pod, and
/// so the Job, fails then). Returns the last container's output.
fn run_job(cronjob: &Value, job_name: &str, dir: &Path) -> Output {
    let containers = Container::all(cronjob);
    assert_eq!(
        containers.iter().map(Container::name).collect::<Vec<_>>(),
        ["prune-reports", "diagnose"]
    );
    let mut last = None;
    for c in &containers {
        let out = c.run(job_name, dir);
        let ok = out.status.success();
        last = Some(out);
        if !ok {
            break;
        }
    }
    last.unwrap()
}

fn report_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "the Job's log is not a JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn by_default_the_job_probes_the_public_hostname_of_the_route_with_appctl_from_the_image() {
    let docs = render(&[]);
    let cj = cronjob(&docs);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let containers = Container::all(&cj);
    let diagnose = &containers[1].spec;
    assert_eq!(diagnose["command"][0], IMAGE_APPCTL);
    let args: Vec<&str> = diagnose["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..4],
        [
            "diagnose",
            "http://metrics-app.localtest.me/counter",
            "--output",
            "json"
        ]
    );
    // Liveness next to it: the management port through the Service, which the app's
    // NetworkPolicy opens to the check's pod (the gateway routes no /healthz).
    let probe = args.iter().position(|a| *a == "--probe").expect("--probe");
    assert_eq!(
        args[probe + 1],
        "http://metrics-app.metrics-app.svc:9090/healthz"
    );
    let pod_labels = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "metrics-app")
        .expect("the app's NetworkPolicy");
    let admits_check = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .any(|rule| {
            let from_check = rule["from"].as_array().unwrap().iter().any(|peer| {
                let labels = peer["podSelector"]["matchLabels"].as_object();
                labels.is_some_and(|l| l.iter().all(|(k, v)| pod_labels[k] == *v))
            });
            let ports = rule["ports"].as_array().unwrap();
            from_check && ports.iter().any(|p| p["port"] == "management")
        });
    assert!(admits_check, "{policy:#}");
    // The image puts appctl where the CronJob calls it.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let stage = dockerfile
        .split("\nFROM ")
        .find(|s| s.lines().next().is_some_and(|l| l.ends_with(" AS appctl")))
        .expect("a Dockerfile stage `AS appctl`");
    assert!(
        stage.contains(&format!("ENTRYPOINT [\"{IMAGE_APPCTL}\"]")),
        "{stage}"
    );
    // And the default target is still metrics-app: the last stage.
    let last = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        last.lines().next().unwrap().ends_with(" AS metrics-app"),
        "{last}"
    );
}

#[test]
fn a_healthy_app_passes_and_the_report_lands_on_the_volume_under_the_job_name() {
    let app = metrics_app(&[]);
    let cj = cronjob(&render(&local(&app)));
    let dir = tempfile::tempdir().unwrap();

    let out = run_job(&cj, "metrics-app-healthcheck-29400000", dir.path());

    let report = report_json(&out);
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["target"], app.url("/counter"));
    assert_eq!(report["probe"]["requests_sent"], 20, "healthCheck.requests");
    // The liveness endpoint was checked all along, and answered.
    let health = &report["health"][0];
    assert_eq!(health["url"], app.management_url("/healthz"), "{report:#}");
    let checks = health["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{report:#}");
    assert!(
        checks.iter().all(|c| c["outcome"]["code"] == 200),
        "{health:#}"
    );
    assert_eq!(files(dir.path()), ["metrics-app-healthcheck-29400000.json"]);
    let file =
        std::fs::read_to_string(dir.path().join("metrics-app-healthcheck-29400000.json")).unwrap();
    let kept: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(kept["verdict"], "healthy", "{file}");
    assert_eq!(kept, report, "the kept report is the one in the pod's log");
}

#[test]
fn an_app_slow_on_every_second_request_fails_the_job_with_its_finding() {
    let app = metrics_app(&["--fault", "slow-even=3s"]);
    let cj = cronjob(&render(&local(&app)));
    let dir = tempfile::tempdir().unwrap();

    let out = run_job(&cj, "metrics-app-healthcheck-29400010", dir.path());

    let report = report_json(&out);
    assert_eq!(report["verdict"], "findings", "{report:#}");
    assert_eq!(out.status.code(), Some(1), "findings fail the Job");
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"periodic-latency"), "{kinds:?}");
    let file =
        std::fs::read_to_string(dir.path().join("metrics-app-healthcheck-29400010.json")).unwrap();
    let kept: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(kept["verdict"], "findings", "{file}");
}

#[test]
fn a_stopped_app_fails_the_job_as_unreachable() {
    let app = metrics_app(&[]);
    let (url, probe) = (app.url("/counter"), app.management_url("/healthz"));
    drop(app);
    let cj = cronjob(&render(&[
        format!("healthCheck.url={url}"),
        format!("healthCheck.probeUrl={probe}"),
    ]));
    let dir = tempfile::tempdir().unwrap();

    let out = run_job(&cj, "metrics-app-healthcheck-29400020", dir.path());

    let report = report_json(&out);
    assert_eq!(report["verdict"], "unreachable", "{report:#}");
    assert_eq!(out.status.code(), Some(2), "unreachable fails the Job");
}

#[test]
fn the_volume_keeps_the_newest_n_reports_of_this_cronjob_and_nothing_else_is_touched() {
    const KEEP: usize = 3;
    let app = metrics_app(&[]);
    let mut sets = local(&app);
    sets.extend([
        format!("healthCheck.reports.keep={KEEP}"),
        // Fewer requests per run: five runs, and the counting is what is tested here.
        "healthCheck.requests=3".to_string(),
    ]);
    let cj = cronjob(&render(&sets));
    let dir = tempfile::tempdir().unwrap();
    // What else may be on the volume: a file system's lost+found, a manual run's report.
    std::fs::create_dir(dir.path().join("lost+found")).unwrap();
    std::fs::write(dir.path().join("manual-check.md"), "kept\n").unwrap();

    let jobs: Vec<String> = (0..KEEP + 2)
        .map(|i| format!("metrics-app-healthcheck-2940{:04}", i * 10))
        .collect();
    for (i, job) in jobs.iter().enumerate() {
        let out = run_job(&cj, job, dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports = files(dir.path())
            .into_iter()
            .filter(|f| f.starts_with("metrics-app-healthcheck-"))
            .count();
        assert_eq!(reports, (i + 1).min(KEEP), "after run {i}");
    }

    let mut expected: Vec<String> = jobs[2..].iter().map(|j| format!("{j}.json")).collect();
    expected.extend(["lost+found".to_string(), "manual-check.md".to_string()]);
    expected.sort();
    assert_eq!(
        files(dir.path()),
        expected,
        "the newest {KEEP} and the rest"
    );
}
