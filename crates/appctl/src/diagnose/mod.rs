//! `appctl diagnose URL`: find out from the outside why an app misbehaves, and say so.
//!
//! # Layout
//! - [`args`]: the flags and their validation into a checked [`Config`].
//! - [`collect`]: one collector per evidence source — HTTP probe, local process, metrics
//!   endpoint, health endpoints and port.
//! - [`kube`]: the Kubernetes evidence (discovery of the pods, their usage, findings).
//! - [`analyze`]: pure analyses from evidence to findings.
//! - [`model`]: samples and findings, shared by all of the above; [`report`] renders them as
//!   text, JSON or Markdown, [`chart`] draws them (`--report FILE.svg|.html`; `.json` keeps the
//!   JSON report, anything else Markdown).
//!
//! Exit codes: 0 healthy, 1 findings, 2 usage error or target unreachable.

pub mod analyze;
pub mod args;
pub mod chart;
pub mod collect;
pub mod kube;
pub mod model;
pub mod report;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

pub use args::{Config, DiagnoseArgs, OutputFormat, UsageError, validate};
use collect::{health, http, metrics, process, ramp};
use model::{Finding, Kind, Sample};
use report::{MetricsEvidence, ProbeInfo, Report, Verdict};

/// Runs a diagnosis and prints the report; the exit code is 0 healthy, 1 findings, 2 usage or
/// unreachable target.
pub async fn run(args: DiagnoseArgs) -> ExitCode {
    let config = match validate(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("appctl diagnose: {e}");
            return ExitCode::from(2);
        }
    };
    let report = diagnose(&config).await;
    let out = match config.args.output {
        OutputFormat::Text => report.to_text(),
        OutputFormat::Json => report.to_json(),
        OutputFormat::Markdown => report.to_markdown(),
    };
    println!("{out}");
    if let Some(path) = &config.args.report {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let content = match ext.as_deref() {
            Some("svg") => chart::svg(&report),
            Some("html" | "htm") => chart::html(&report),
            // Byte for byte what --output json prints, final newline included.
            Some("json") => Ok(format!("{}\n", report.to_json())),
            _ => Ok(report.to_markdown()),
        };
        let written = content.and_then(|c| std::fs::write(path, c).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("appctl diagnose: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    match report.verdict {
        Verdict::Healthy => ExitCode::SUCCESS,
        Verdict::Findings => ExitCode::from(1),
        Verdict::Unreachable => ExitCode::from(2),
    }
}

/// The target process on this host: `--pid`, else the process listening on the URL's port.
fn find_pid(config: &Config, notes: &mut Vec<String>) -> Option<i32> {
    if config.args.no_process {
        return None;
    }
    match (config.args.pid, config.local_port) {
        (Some(pid), _) => Some(pid),
        (None, Some(port)) => {
            let found = process::read::pid_listening_on(port);
            if found.is_none() {
                notes.push(format!(
                    "process evidence: no process of this host visible as listening on port \
                     {port} (behind a proxy or container, pass --pid)"
                ));
            }
            found
        }
        (None, None) => {
            notes.push("process evidence: the target is not on this host".into());
            None
        }
    }
}

/// The HTTP probe with process sampling in between: samples, new child processes, the request
/// at which each finding kind first appeared, and the probe's wall time.
struct Probed {
    samples: Vec<Sample>,
    rss_by_request: Vec<(usize, u64)>,
    new_children: BTreeMap<i32, process::Child>,
    named_at: BTreeMap<&'static str, usize>,
    elapsed: std::time::Duration,
}

async fn probe(
    config: &Config,
    before: Option<&process::Snapshot>,
    notes: &mut Vec<String>,
) -> Probed {
    let sequential = config.plan.concurrency == 1;
    let timeout_ms = config.plan.timeout.as_secs_f64() * 1000.0;
    let started = Instant::now();
    let mut new_children: BTreeMap<i32, process::Child> = BTreeMap::new();
    let mut named_at: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut rss_by_request = Vec::new();
    let early = !config.args.no_early_stop;
    let samples = http::run(&config.plan, |samples: &[Sample]| {
        if let Some(b) = before
            && let Some(now) = process::read::snapshot(b.pid)
        {
            rss_by_request.push((samples.len(), now.rss_bytes));
            for (cpid, child) in now.children {
                if !b.children.contains_key(&cpid) {
                    new_children.insert(cpid, child);
                }
            }
        }
        let n = samples.len();
        if n > 100 && n % 25 != 0 {
            return false;
        }
        let so_far = analyze::analyze(samples, sequential, timeout_ms);
        for f in &so_far.findings {
            named_at.entry(f.kind.as_str()).or_insert(n);
        }
        if so_far.hang.is_some() {
            named_at.entry(Kind::Hung.as_str()).or_insert(n);
        }
        early && so_far.certain
    })
    .await;
    let samples = samples.unwrap_or_else(|e| {
        notes.push(e.to_string());
        Vec::new()
    });
    Probed {
        samples,
        rss_by_request,
        new_children,
        named_at,
        elapsed: started.elapsed(),
    }
}

/// Collects all evidence and builds the report.
pub async fn diagnose(config: &Config) -> Report {
    let mut notes = Vec::new();
    let sequential = config.plan.concurrency == 1;
    let timeout_ms = config.plan.timeout.as_secs_f64() * 1000.0;

    // Process: read before the probe so children started during it can be told apart.
    let pid = find_pid(config, &mut notes);
    let before = pid.and_then(process::read::snapshot);
    if let (Some(pid), None) = (pid, &before) {
        notes.push(format!("process evidence: cannot read process {pid}"));
    }
    let metrics_before = match &config.args.metrics {
        Some(url) => metrics::scrape(url, config.plan.timeout, &mut notes, "before").await,
        None => None,
    };

    // Health endpoints given with --probe are checked all through the probe, on their own
    // connections, so what they said can be compared with what the target did.
    let stop_watch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = (!config.args.probes.is_empty()).then(|| {
        let urls = config
            .args
            .probes
            .iter()
            .map(|u| (u.clone(), "--probe".to_string()))
            .collect();
        tokio::spawn(health::watch(urls, config.plan.timeout, stop_watch.clone()))
    });
    let Probed {
        samples,
        rss_by_request,
        mut new_children,
        named_at,
        elapsed,
    } = probe(config, before.as_ref(), &mut notes).await;
    stop_watch.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut health_series = match watcher {
        Some(w) => w.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let http = analyze::analyze(&samples, sequential, timeout_ms);
    let mut findings = http.findings;
    for f in &mut findings {
        f.named_at_request = named_at.get(f.kind.as_str()).copied();
    }

    let hang = match http.hang {
        Some(h) => Some(health::collect_hang(config, h, before.as_ref().map(|b| b.pid)).await),
        None => None,
    };
    if let Some(mut f) = hang.as_ref().and_then(analyze::hung::finding) {
        // The timeouts of the hang are the hang, not a latency pattern.
        findings.retain(|f| !matches!(f.kind, Kind::SlowOutliers | Kind::LatencyTrend));
        f.named_at_request = named_at.get(Kind::Hung.as_str()).copied();
        findings.push(f);
    }

    let ramp = ramp_evidence(config, before.as_ref().map(|b| b.pid), &mut findings).await;

    let process_evidence = before.map(|b| {
        let after = process::read::snapshot(b.pid);
        // Children that exited between readings still count; keep their last reading.
        if let Some(a) = &after {
            for (cpid, child) in &a.children {
                if !b.children.contains_key(cpid) {
                    new_children.insert(*cpid, child.clone());
                }
            }
        }
        process::ProcessEvidence {
            before: b,
            after,
            new_children: new_children.into_values().collect(),
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: samples.len(),
            rss_by_request,
        }
    });
    if let Some(e) = &process_evidence {
        merge(&mut findings, analyze::resources::process_findings(e));
    }

    let metrics_evidence = match &config.args.metrics {
        Some(url) => {
            let after = metrics::scrape(url, config.plan.timeout, &mut notes, "after").await;
            if let Some(b) = &metrics_before {
                merge(
                    &mut findings,
                    analyze::resources::metrics_findings(b, after.as_ref(), samples.len()),
                );
            }
            Some(MetricsEvidence {
                url: url.clone(),
                before: metrics_before,
                after,
            })
        }
        None => None,
    };

    let history = history_evidence(config, &mut findings, &mut notes).await;

    let kube_evidence = if config.args.kube {
        kube_evidence(config, &mut findings, &mut notes).await
    } else {
        None
    };
    if let Some(k) = &kube_evidence
        && config.args.probes.is_empty()
    {
        health_series = pod_probes(config, k).await;
    }
    merge(
        &mut findings,
        analyze::coverage::findings(&samples, &health_series),
    );

    let mut outcomes = BTreeMap::new();
    for s in &samples {
        *outcomes.entry(s.outcome.label()).or_insert(0) += 1;
    }
    let answered = samples
        .iter()
        .any(|s| matches!(s.outcome, model::Outcome::Status { .. }));
    let verdict = if !answered {
        Verdict::Unreachable
    } else if findings.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Findings
    };
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        target: config.plan.url.clone(),
        verdict,
        probe: ProbeInfo {
            requests_planned: config.plan.requests,
            requests_sent: samples.len(),
            concurrency: config.plan.concurrency,
            timeout_ms: config.plan.timeout.as_millis() as u64,
            stopped_early: samples.len() < config.plan.requests && elapsed < config.plan.max_time,
            elapsed_ms: elapsed.as_millis() as u64,
        },
        latency: http.summary,
        slow_threshold_ms: http.slow_threshold_ms,
        outcomes,
        instances: http.instances,
        process: process_evidence,
        metrics: metrics_evidence,
        kube: kube_evidence,
        history,
        ramp,
        health: health_series,
        hang,
        notes,
        findings,
        samples,
    };
    report.rank();
    report
}

/// The saturation ramp (`--ramp`) and its `saturation` finding.
async fn ramp_evidence(
    config: &Config,
    pid: Option<i32>,
    findings: &mut Vec<Finding>,
) -> Option<report::RampEvidence> {
    let steps = config.ramp_steps.clone()?;
    let plan = ramp::RampPlan {
        url: config.plan.url.clone(),
        steps,
        step_time: config.args.ramp.step,
        timeout: config.plan.timeout,
        health_urls: config.health_urls.clone(),
        pid,
    };
    let steps = ramp::run(&plan).await;
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let knee = analyze::saturation::knee(&steps, cores);
    if let Some(k) = &knee {
        findings.push(analyze::saturation::finding(k, &steps));
    }
    Some(report::RampEvidence {
        step_seconds: config.args.ramp.step.as_secs_f64(),
        steps,
        knee,
    })
}

/// What Prometheus recorded (`--prometheus`) and the findings from it.
async fn history_evidence(
    config: &Config,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) -> Option<collect::prometheus::History> {
    let url = config.args.history.prometheus.clone()?;
    let h = collect::prometheus::collect(&collect::prometheus::HistoryPlan {
        url,
        since: config.args.history.since,
        matchers: config.args.history.prom_match.clone(),
        namespace: config.args.namespace.clone(),
        timeout: config.plan.timeout.max(std::time::Duration::from_secs(5)),
    })
    .await;
    merge(findings, analyze::history::findings(&h));
    notes.extend(h.notes.iter().cloned());
    Some(h)
}

/// The pods' own `httpGet` probes, asked on the target's host and port (through the same
/// gateway: the pod IPs are not reachable from outside the cluster), 5 times each.
async fn pod_probes(
    config: &Config,
    k: &kube::KubeEvidence,
) -> Vec<analyze::coverage::HealthSeries> {
    let urls = kube::discovery::probe_paths(&k.pods)
        .into_iter()
        .filter_map(|(path, source)| {
            let mut u = reqwest::Url::parse(&config.plan.url).ok()?;
            u.set_path(&path);
            u.set_query(None);
            Some((u.to_string(), source))
        })
        .collect();
    health::sample(urls, config.plan.timeout, 5).await
}

/// The Kubernetes evidence and its findings; what could not be read becomes notes.
async fn kube_evidence(
    config: &Config,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) -> Option<kube::KubeEvidence> {
    let target = kube::Target {
        namespace: config.args.namespace.clone(),
        selector: config.args.selector.clone(),
        host: config.host.clone(),
    };
    match kube::collect(&target).await {
        Ok(k) => {
            if k.pods.is_empty() {
                notes.push(format!(
                    "kubernetes evidence: no pods match {:?} in namespace {}",
                    k.selector, k.namespace
                ));
            }
            notes.extend(k.notes.iter().map(|n| format!("kubernetes evidence: {n}")));
            merge(findings, kube::findings::findings(&k.pods, &k.events));
            merge(
                findings,
                kube::usage::near_limit(&k.memory).into_iter().collect(),
            );
            for (pod, ps) in &k.processes {
                merge(
                    findings,
                    kube::usage::busy_processes(pod, ps).into_iter().collect(),
                );
            }
            Some(k)
        }
        Err(e) => {
            notes.push(format!("kubernetes evidence unavailable: {}", e.note()));
            None
        }
    }
}

/// Adds `new` findings; one of a kind already present lends its evidence to the existing one
/// (the same memory growth seen by the process and by the metrics is one finding).
fn merge(findings: &mut Vec<Finding>, new: Vec<Finding>) {
    for f in new {
        match findings.iter_mut().find(|e| e.kind == f.kind) {
            Some(existing) => existing.evidence.extend(f.evidence),
            None => findings.push(f),
        }
    }
}
