//! The fault modes: slow even values with burner processes that end with the service, and
//! the leak.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_even_makes_even_values_slow_and_leaves_burner_processes_running() {
    let app = Binary::start(&["--fault", "slow-even=700ms", "--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
    assert!(
        app.wait_for_output("FAULT MODE ON", Duration::from_secs(5)),
        "{}",
        app.output()
    );
    let http = client();
    let mut timings = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let body = get_text(&http, &app.url("/counter")).await;
        timings.push((counter_value(&body), started.elapsed()));
    }
    for (value, took) in &timings {
        if value % 2 == 0 {
            assert!(
                *took >= Duration::from_millis(700),
                "value {value} took {took:?}"
            );
        } else {
            assert!(
                *took < Duration::from_millis(300),
                "value {value} took {took:?}"
            );
        }
    }
    // Burners outlive the request (3 x 700 ms), like the original's collectors.
    let burners = children_of(app.pid(), "burn-cpu");
    assert!(
        burners.len() >= 2,
        "expected burner children still running, found {burners:?}"
    );
    let exposition = get_text(&http, &app.mgmt("/metrics")).await;
    assert_eq!(
        gauge(
            &exposition,
            "metrics_app_fault_child_processes_started_total"
        ),
        4.0
    );
    assert!(
        exposition.contains("metrics_app_fault_active{mode=\"slow-even\"} 1"),
        "{exposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_mode_burners_end_when_the_service_stops() {
    // A clean stop kills them; a killed service leaves them to notice it is gone.
    for (signal, exit_code) in [("TERM", Some(0)), ("KILL", None)] {
        let mut app = Binary::start(&["--fault", "slow-even=1s", "--drain-delay", "0s"], &[]);
        wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
        let http = client();
        for _ in 0..2 {
            http.get(app.url("/counter")).send().await.unwrap();
        }
        // Burners outlive the request: they run 3 × 1 s, far longer than the check below.
        let burner_pids = children_of(app.pid(), "burn-cpu");
        assert!(burner_pids.len() >= 2, "{burner_pids:?}");
        app.signal(signal);
        assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), exit_code);
        // Gone at once, not after their own time runs out.
        let until = Instant::now() + Duration::from_millis(500);
        while burner_pids.iter().any(|p| alive(*p)) {
            assert!(
                Instant::now() < until,
                "SIG{signal}: burners {burner_pids:?} outlived the service"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_retains_touched_memory_per_request() {
    let app = Binary::start(&["--fault", "leak=16", "--drain-delay", "0s"], &[]);
    wait_until_ok(&app.mgmt("/healthz"), Duration::from_secs(10)).await;
    let http = client();
    let rss = |text: &str| gauge(text, "process_resident_memory_bytes");
    let before = get_text(&http, &app.mgmt("/metrics")).await;
    for _ in 0..4 {
        let response = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Process figures are read at each scrape: the next one shows what the requests retained.
    let after = get_text(&http, &app.mgmt("/metrics")).await;
    assert_eq!(
        gauge(&after, "metrics_app_leaked_bytes"),
        64.0 * 1024.0 * 1024.0
    );
    let grown = rss(&after) - rss(&before);
    assert!(
        grown > 60.0 * 1024.0 * 1024.0,
        "RSS grew by only {grown} bytes"
    );
}

/// PIDs of the children of `pid` whose command line contains `needle`.
fn children_of(pid: u32, needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Field 4 (after the parenthesised command name) is the parent pid.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            ppid == Some(pid) && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// Whether `pid` is a running (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}
