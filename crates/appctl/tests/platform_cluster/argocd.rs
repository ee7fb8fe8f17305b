//! ArgoCD's Applications: waiting until they are Synced and Healthy, rollback, the root
//! Application and the environments' Applications.

use super::*;

#[tokio::test]
async fn scenario_one_app_progressing_then_all_synced_and_healthy() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer_list(
            &mut handle,
            APPS,
            app_list(vec![
                app("traefik", "Synced", "Healthy"),
                app("metrics-app", "OutOfSync", "Progressing"),
            ]),
        )
        .await;
        answer_watch(
            &mut handle,
            APPS,
            vec![
                ("MODIFIED", app("metrics-app", "Synced", "Degraded")),
                ("MODIFIED", app("metrics-app", "Synced", "Healthy")),
            ],
        )
        .await;
        hold(handle).await;
    });
    let mut seen = Vec::new();
    let states = cluster::wait_synced(&client, Duration::from_secs(10), |s| {
        seen.push(s.iter().filter(|a| a.is_ready()).count());
    })
    .await
    .expect("becomes ready");
    drop(client);
    server.await.unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(seen, vec![1, 1, 2], "progress is reported on every change");
}

#[tokio::test]
async fn scenario_an_application_deleted_and_recreated_is_followed() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer_list(
            &mut handle,
            APPS,
            app_list(vec![
                app("root", "Synced", "Progressing"),
                app("old", "OutOfSync", "Missing"),
            ]),
        )
        .await;
        answer_watch(
            &mut handle,
            APPS,
            vec![
                ("DELETED", app("old", "OutOfSync", "Missing")),
                ("ADDED", app("metrics-app", "Synced", "Progressing")),
                ("MODIFIED", app("metrics-app", "Synced", "Healthy")),
                ("MODIFIED", app("root", "Synced", "Healthy")),
            ],
        )
        .await;
        hold(handle).await;
    });
    let mut names = Vec::new();
    let states = cluster::wait_synced(&client, Duration::from_secs(10), |s| {
        names.push(
            s.iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
                .join(","),
        );
    })
    .await
    .expect("becomes ready");
    drop(client);
    server.await.unwrap();
    assert_eq!(
        names,
        [
            "old,root",
            "root",
            "metrics-app,root",
            "metrics-app,root",
            "metrics-app,root"
        ],
        "a deleted Application no longer counts; a new one does"
    );
    assert!(states.iter().all(|a| a.is_ready()));
}

#[tokio::test]
async fn scenario_degraded_until_the_timeout_names_the_laggard() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer_list(
            &mut handle,
            APPS,
            app_list(vec![app("metrics-app", "Synced", "Degraded")]),
        )
        .await;
        hold(handle).await;
    });
    let err = cluster::wait_synced(&client, Duration::from_millis(300), |_| {})
        .await
        .expect_err("times out");
    let msg = err.to_string();
    assert!(
        msg.contains("timed out") && msg.contains("metrics-app (Synced/Degraded)"),
        "{msg}"
    );
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_no_application_yet_is_not_ready() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer_list(&mut handle, APPS, app_list(vec![])).await;
        hold(handle).await;
    });
    let err = cluster::wait_synced(&client, Duration::from_millis(300), |_| {})
        .await
        .expect_err("empty is not ready");
    assert!(
        err.to_string().contains("no Application exists yet"),
        "{err}"
    );
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_rollback_disables_auto_sync_then_syncs_the_previous_revision() {
    let (client, mut handle) = client();
    let path = format!("{APPS}/metrics-app");
    let current = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "metrics-app", "namespace": "argocd"},
        "spec": {"syncPolicy": {"automated": {"prune": true, "selfHeal": true}}},
        "status": {"history": [
            {"id": 1, "revision": "aaaaaaa1", "source": {"repoURL": "r", "path": "charts/metrics-app"}},
            {"id": 2, "revision": "bbbbbbb2", "source": {"repoURL": "r", "path": "charts/metrics-app"}},
            {"id": 3, "revision": "ccccccc3", "source": {"repoURL": "r", "path": "charts/metrics-app"}}
        ]}
    });
    let root_path = format!("{APPS}/root");
    let server = tokio::spawn(async move {
        answer(&mut handle, "GET", &path, current.clone()).await;
        answer(
            &mut handle,
            "GET",
            &root_path,
            app("root", "Synced", "Healthy"),
        )
        .await;
        let root_patch = answer(
            &mut handle,
            "PATCH",
            &root_path,
            app("root", "Synced", "Healthy"),
        )
        .await;
        assert_eq!(
            root_patch,
            json!({"spec": {"syncPolicy": {"automated": null}}}),
            "root paused first"
        );
        let first = answer(&mut handle, "PATCH", &path, current.clone()).await;
        let second = answer(&mut handle, "PATCH", &path, current).await;
        (first, second)
    });
    let done = cluster::rollback(&client, "metrics-app", None)
        .await
        .expect("rollback");
    let (first, second) = server.await.unwrap();
    assert_eq!((done.id, done.revision.as_str()), (2, "bbbbbbb2"));
    assert_eq!(
        first,
        json!({"spec": {"syncPolicy": {"automated": null}}}),
        "auto-sync off first"
    );
    assert_eq!(second["operation"]["sync"]["revision"], "bbbbbbb2");
    assert_eq!(
        second["operation"]["sync"]["source"]["path"],
        "charts/metrics-app"
    );
    assert_eq!(second["operation"]["initiatedBy"]["username"], "appctl");
}

#[test]
fn rollback_targets_by_id_or_revision_prefix_and_refuses_without_history() {
    let history = vec![
        json!({"id": 1, "revision": "aaaaaaa1"}),
        json!({"id": 2, "revision": "bbbbbbb2"}),
    ];
    assert_eq!(
        cluster::pick_history(&history, Some("1")).unwrap()["revision"],
        "aaaaaaa1"
    );
    assert_eq!(
        cluster::pick_history(&history, Some("bbbb")).unwrap()["id"],
        2
    );
    assert!(cluster::pick_history(&history, Some("zzz")).is_err());
    assert!(cluster::pick_history(&history[..1], None).is_err());
}

#[test]
fn the_root_application_points_at_the_source_with_the_selected_environments() {
    let repo = "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git";
    let envs = [("dev".to_string(), true), ("prod".to_string(), false)];
    let app = cluster::root_application(
        repo,
        "main",
        &appctl::platform::plan::root_parameters(repo, "main", &envs, None),
    );
    assert_eq!(app["spec"]["source"]["path"], "deploy/argocd");
    let params = app["spec"]["source"]["helm"]["parameters"]
        .as_array()
        .unwrap();
    let has = |name: &str, value: &str| {
        params
            .iter()
            .any(|p| p["name"] == name && p["value"] == value)
    };
    assert!(has("environments.dev.enabled", "true"), "{params:?}");
    assert!(has("environments.prod.enabled", "false"), "{params:?}");
    assert!(has("repoURL", repo) && has("targetRevision", "main"));
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["selfHeal"], true);
    // Read back as appctl up observes it.
    let obj: kube::api::DynamicObject = serde_json::from_value(app.clone()).unwrap();
    assert_eq!(
        cluster::helm_parameters(&obj.data["spec"]["source"]),
        appctl::platform::plan::root_parameters(repo, "main", &envs, None)
    );
}

#[test]
fn an_environments_application_says_where_it_deploys_and_which_image_it_wants() {
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "metrics-app-staging", "namespace": "argocd",
                     "labels": {"metrics-app/environment": "staging"}},
        "spec": {"destination": {"namespace": "metrics-app-staging"},
                 "source": {"helm": {"parameters": [
                     {"name": "image.repository", "value": "metrics-app"},
                     {"name": "image.tag", "value": "3f2a1c04b5d6"},
                     {"name": "httpRoute.hostnames[0]", "value": "staging.metrics-app.localtest.me"}]}}},
        "status": {"sync": {"status": "Synced", "revision": "abc"}, "health": {"status": "Progressing"}}
    }))
    .unwrap();
    let e = cluster::env_app(&obj).expect("an environment");
    assert_eq!(e.env, "staging");
    assert_eq!(e.namespace, "metrics-app-staging");
    assert_eq!(e.host, "staging.metrics-app.localtest.me");
    assert_eq!(e.image, "metrics-app:3f2a1c04b5d6");
    assert_eq!(
        (e.app.sync.as_str(), e.app.health.as_str()),
        ("Synced", "Progressing")
    );
    let status = appctl::platform::commands::EnvStatus::new(
        e,
        Some(("metrics-app:000000000000".into(), "1/2/2".into())),
        "200 Counter value: 3".into(),
    );
    let text = appctl::platform::commands::status_text(&appctl::platform::commands::Status {
        environments: vec![status],
        applications: vec![],
        pods: vec![],
        hpas: vec![],
        flux: vec![],
    });
    let row = text.lines().nth(3).expect("a row");
    assert!(
        row.starts_with("staging      Synced      Progressing  metrics-app:3f2a1c04b5d6")
            && row.contains("metrics-app:000000000000 (rolling out)")
            && row.ends_with("1/2/2"),
        "{text}"
    );
    assert!(
        text.contains(
            "staging      http://staging.metrics-app.localtest.me/counter → 200 Counter value: 3"
        ),
        "{text}"
    );
    // The root and the platform's Applications are no environment, nor an environment's
    // other Applications (its redis-ha release carries the label too).
    let root: kube::api::DynamicObject =
        serde_json::from_value(app("root", "Synced", "Healthy")).unwrap();
    assert!(cluster::env_app(&root).is_none());
    let mut redis = obj.clone();
    redis.metadata.name = Some("redis-ha-staging".into());
    assert!(cluster::env_app(&redis).is_none());
}
