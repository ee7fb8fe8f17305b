//! The platform's Kubernetes logic against a mocked API server (tower-test), in named
//! scenarios: each scenario answers the requests appctl makes with recorded-style objects and
//! checks both what appctl concluded and what it sent. Waits go through kube-runtime's
//! watcher, so those scenarios answer a list, then a watch with a stream of events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use appctl::platform::cluster;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Answers the next request with `body`, after checking its method and path; returns the
/// request body it received.
async fn answer(handle: &mut Handle, method: &str, path: &str, body: Value) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method().as_str(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let bytes = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn app(name: &str, sync: &str, health: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "7"},
        "spec": {},
        "status": {"sync": {"status": sync, "revision": "3f2a1c0"}, "health": {"status": health}}
    })
}

fn app_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList",
           "metadata": {"resourceVersion": "7"}, "items": items})
}

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";

/// Answers a watcher's initial list (a GET of `path` that is not a watch) with `list`.
async fn answer_list(handle: &mut Handle, path: &str, list: Value) {
    let (req, send) = handle.next_request().await.expect("the list");
    assert_eq!(req.method(), "GET");
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default().to_string();
    assert!(!query.contains("watch=true"), "a list first: {query}");
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&list).unwrap()))
            .unwrap(),
    );
}

/// Answers the watch request that follows with `events` (`(type, object)`), one JSON line each.
async fn answer_watch(handle: &mut Handle, path: &str, events: Vec<(&str, Value)>) {
    let (req, send) = handle.next_request().await.expect("the watch");
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default().to_string();
    assert!(query.contains("watch=true"), "then a watch: {query}");
    let mut body = Vec::new();
    for (kind, object) in events {
        serde_json::to_writer(&mut body, &json!({"type": kind, "object": object})).unwrap();
        body.push(b'\n');
    }
    send.send_response(Response::builder().body(Body::from(body)).unwrap());
}

/// Holds every further request unanswered (a watch on which nothing happens) until the client
/// is dropped.
async fn hold(mut handle: Handle) {
    let mut pending = Vec::new();
    while let Some(req) = handle.next_request().await {
        pending.push(req);
    }
}

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

fn crd(established: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io", "resourceVersion": "3"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
                 "names": {"kind": "Application", "plural": "applications"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true}]},
        "status": {"conditions": [{"type": "Established", "status": established}]}
    })
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

#[tokio::test]
async fn scenario_after_installing_argocd_the_application_crd_is_awaited_until_established() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the list");
        assert_eq!(req.uri().path(), CRDS);
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("fieldSelector=metadata.name%3Dapplications.argoproj.io"),
            "one object, by name: {query}"
        );
        let list = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinitionList",
                          "metadata": {"resourceVersion": "3"}, "items": [crd("False")]});
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&list).unwrap()))
                .unwrap(),
        );
        answer_watch(&mut handle, CRDS, vec![("MODIFIED", crd("True"))]).await;
        hold(handle).await;
    });
    cluster::wait_crd_established(&client, "applications.argoproj.io", Duration::from_secs(10))
        .await
        .expect("established");
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_a_crd_that_never_becomes_established_times_out_naming_it() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let list = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinitionList",
                          "metadata": {"resourceVersion": "3"}, "items": [crd("False")]});
        answer_list(&mut handle, CRDS, list).await;
        hold(handle).await;
    });
    let err = cluster::wait_crd_established(
        &client,
        "applications.argoproj.io",
        Duration::from_millis(300),
    )
    .await
    .expect_err("never established");
    assert!(
        err.to_string()
            .contains("CustomResourceDefinition applications.argoproj.io to be Established"),
        "{err}"
    );
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_argocd_server_is_restarted_with_kube_rs_restart() {
    let (client, mut handle) = client();
    let path = "/apis/apps/v1/namespaces/argocd/deployments/argocd-server";
    let server = tokio::spawn(async move {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": "argocd-server", "namespace": "argocd"}});
        let (req, send) = handle.next_request().await.expect("the restart");
        assert_eq!(req.method(), "PATCH");
        assert_eq!(req.uri().path(), path);
        assert_eq!(
            req.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/merge-patch+json")
        );
        let bytes = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&deployment).unwrap()))
                .unwrap(),
        );
        serde_json::from_slice::<Value>(&bytes).unwrap()
    });
    cluster::restart_deployment(&client, "argocd", "argocd-server")
        .await
        .expect("restarted");
    let patch = server.await.unwrap();
    let annotations = patch["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .expect("a pod template annotation");
    assert_eq!(annotations.len(), 1, "{patch}");
    let (key, at) = annotations.iter().next().unwrap();
    assert!(key.ends_with("/restartedAt"), "{key}");
    assert!(at.as_str().is_some_and(|t| t.starts_with("20")), "{at}");
}

fn pod(name: &str, uid: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "openbao", "uid": uid, "resourceVersion": "5",
                     "labels": {"app.kubernetes.io/name": "openbao"}},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "openbao", "ready": ready, "restartCount": 0, "image": "openbao", "imageID": "",
            "state": {"running": {}}
        }]}
    })
}

const BAO_PODS: &str = "/api/v1/namespaces/openbao/pods";

#[tokio::test]
async fn scenario_a_pod_is_awaited_until_ready_by_watching() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the list");
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("labelSelector=app.kubernetes.io%2Fname%3Dopenbao"),
            "{query}"
        );
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"},
                          "items": [pod("openbao-0", "u1", false)]});
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&list).unwrap()))
                .unwrap(),
        );
        answer_watch(
            &mut handle,
            BAO_PODS,
            vec![("MODIFIED", pod("openbao-0", "u1", true))],
        )
        .await;
        hold(handle).await;
    });
    let name = cluster::running_pod(
        &client,
        "openbao",
        "app.kubernetes.io/name=openbao",
        Duration::from_secs(10),
    )
    .await
    .expect("ready");
    drop(client);
    server.await.unwrap();
    assert_eq!(name, "openbao-0");
}

#[tokio::test]
async fn scenario_replacing_openbao_deletes_its_pod_and_waits_for_a_new_ready_one() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"},
                          "items": [pod("openbao-0", "old", true)]});
        answer(&mut handle, "GET", BAO_PODS, list.clone()).await;
        answer(
            &mut handle,
            "DELETE",
            &format!("{BAO_PODS}/openbao-0"),
            pod("openbao-0", "old", true),
        )
        .await;
        // The old pod is still listed, ready, while it terminates: it must not be picked.
        answer_list(&mut handle, BAO_PODS, list).await;
        answer_watch(
            &mut handle,
            BAO_PODS,
            vec![
                ("DELETED", pod("openbao-0", "old", true)),
                ("ADDED", pod("openbao-0", "new", false)),
                ("MODIFIED", pod("openbao-0", "new", true)),
            ],
        )
        .await;
        hold(handle).await;
    });
    let name = cluster::replace_pods(
        &client,
        "openbao",
        "app.kubernetes.io/name=openbao",
        Duration::from_secs(10),
    )
    .await
    .expect("replaced");
    drop(client);
    server.await.unwrap();
    assert_eq!(name, "openbao-0");
}

#[tokio::test]
async fn scenario_a_missing_secret_is_none_not_an_error() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/gitops/secrets/git-server-admin"
        );
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": "secrets \"git-server-admin\" not found"});
        send.send_response(
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    });
    let v = cluster::secret_value_opt(&client, "gitops", "git-server-admin", "password")
        .await
        .expect("a 404 is an answer");
    server.await.unwrap();
    assert_eq!(v, None);
}

#[tokio::test]
async fn scenario_an_api_error_names_the_call_and_keeps_its_cause() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.expect("a request");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "Forbidden", "code": 403, "message": "secrets is forbidden"});
        send.send_response(
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    });
    let err = cluster::secret_value(&client, "argocd", "argocd-initial-admin-secret", "password")
        .await
        .expect_err("forbidden");
    server.await.unwrap();
    assert_eq!(
        err.to_string(),
        "Kubernetes API: get Secret argocd/argocd-initial-admin-secret"
    );
    let cause = std::error::Error::source(&err).expect("the cause is kept");
    assert!(cause.to_string().contains("forbidden"), "{cause}");
    assert_eq!(err.exit_code(), appctl::platform::exit::FAILED);
}

#[tokio::test]
async fn scenario_status_shows_a_running_pod_whose_last_termination_was_oomkilled() {
    let (client, mut handle) = client();
    let pods: Value = serde_json::from_str(include_str!("data/pods-oomkilled.json")).unwrap();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "GET",
            "/api/v1/namespaces/metrics-app/pods",
            pods,
        )
        .await;
    });
    let lines = cluster::pods(&client, "metrics-app").await.expect("pods");
    server.await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].ready, "1/1");
    assert_eq!(lines[0].restarts, 4);
    assert_eq!(
        lines[0].last_termination.as_deref(),
        Some("OOMKilled (137)")
    );
}

#[tokio::test]
async fn scenario_credentials_are_read_from_secrets() {
    let (client, mut handle) = client();
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data});
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "GET",
            "/api/v1/namespaces/argocd/secrets/argocd-initial-admin-secret",
            secret(json!({"password": "czNjcjN0"})),
        )
        .await;
    });
    let pw = cluster::secret_value(&client, "argocd", "argocd-initial-admin-secret", "password")
        .await
        .expect("secret");
    server.await.unwrap();
    assert_eq!(pw, "s3cr3t");
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

#[tokio::test]
async fn scenario_server_side_apply_discovers_the_kind_then_patches_with_appctl_as_field_manager() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer(&mut handle, "GET", "/apis/argoproj.io/v1alpha1", json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "argoproj.io/v1alpha1",
            "resources": [{"name": "applications", "singularName": "application", "namespaced": true,
                           "kind": "Application", "verbs": ["get", "list", "patch", "create"]}]
        }))
        .await;
        let (req, send) = handle.next_request().await.expect("the apply");
        assert_eq!(req.method(), "PATCH");
        assert_eq!(req.uri().path(), format!("{APPS}/root"));
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("fieldManager=appctl") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(
            req.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/apply-patch+yaml")
        );
        send.send_response(
            Response::builder()
                .body(Body::from(
                    serde_json::to_vec(&app("root", "Synced", "Healthy")).unwrap(),
                ))
                .unwrap(),
        );
    });
    let obj = serde_json::from_value(cluster::root_application(
        "r",
        "main",
        &[("repoURL".to_string(), "r".to_string())],
    ))
    .unwrap();
    cluster::apply_object(&client, obj, None)
        .await
        .expect("applied");
    server.await.unwrap();
}

fn hpa(current: i32, desired: i32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "metrics-app", "namespace": "metrics-app", "resourceVersion": "9"},
        "spec": {"minReplicas": 2, "maxReplicas": 6,
                 "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "metrics-app"}},
        "status": {"currentReplicas": current, "desiredReplicas": desired}
    })
}

#[tokio::test]
async fn scenario_load_watch_hpa_follows_the_hpa_as_it_scales() {
    let (client, mut handle) = client();
    let path = "/apis/autoscaling/v2/namespaces/metrics-app/horizontalpodautoscalers";
    let server = tokio::spawn(async move {
        let list = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList",
                          "metadata": {"resourceVersion": "9"}, "items": [hpa(2, 2)]});
        answer_list(&mut handle, path, list).await;
        answer_watch(
            &mut handle,
            path,
            vec![("MODIFIED", hpa(2, 4)), ("MODIFIED", hpa(4, 4))],
        )
        .await;
        hold(handle).await;
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = cluster::watch_hpas(&client, "metrics-app", move |h| {
        let _ = tx.send((h.current, h.desired, h.max));
    });
    let mut seen = Vec::new();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an update in time")
            .expect("the watch runs");
        seen.push(next);
    }
    watch.abort();
    let _ = watch.await;
    drop(client);
    server.await.unwrap();
    assert_eq!(seen, [(2, 2, 6), (2, 4, 6), (4, 4, 6)]);
}

fn kustomization(name: &str, generation: i64, ready: &str, observed: i64, message: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system", "resourceVersion": "5",
                     "generation": generation},
        "spec": {},
        "status": {"observedGeneration": observed, "conditions": [
            {"type": "Ready", "status": ready, "observedGeneration": observed,
             "reason": "x", "message": message}
        ]}
    })
}

const KUSTOMIZATIONS: &str =
    "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";

#[test]
fn status_names_the_engine_and_lists_fluxs_kustomizations() {
    use appctl::platform::commands::{Status, status_text};
    let flux = Status {
        environments: vec![],
        applications: vec![],
        pods: vec![],
        hpas: vec![],
        flux: vec![
            (
                "platform".into(),
                true,
                "Applied revision: main@sha1:3f2a".into(),
            ),
            (
                "metrics-app-dev".into(),
                false,
                "dependency 'flux-system/platform-addons' is not ready\nmore".into(),
            ),
        ],
    };
    let text = status_text(&flux);
    assert!(text.starts_with("GitOps engine: Flux\n"), "{text}");
    assert!(
        text.contains("(no environment HelmRelease yet: Flux runs this cluster"),
        "{text}"
    );
    assert!(
        text.contains("\nplatform               True   Applied revision: main@sha1:3f2a\n")
            && text.contains(
                "\nmetrics-app-dev        False  dependency 'flux-system/platform-addons' is not ready\n"
            ),
        "{text}"
    );
    let argocd = Status {
        flux: vec![],
        applications: vec![appctl::platform::plan::AppState {
            name: "root".into(),
            sync: "Synced".into(),
            health: "Healthy".into(),
            revision: "3f2a".into(),
        }],
        ..flux
    };
    let text = status_text(&argocd);
    assert!(text.starts_with("GitOps engine: ArgoCD\n"), "{text}");
    assert!(!text.contains("FLUX"), "{text}");
}

#[test]
fn an_environments_helmrelease_says_where_it_deploys_and_which_image_it_wants() {
    let hr = |name: &str| -> kube::api::DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": "flux-system", "generation": 2},
            "spec": {"targetNamespace": "metrics-app-staging",
                     "values": {"image": {"repository": "metrics-app", "tag": "3f2a1c04b5d6"},
                                "httpRoute": {"hostnames": ["staging.metrics-app.localtest.me"]}}},
            "status": {"lastAttemptedRevision": "0.1.0+3f2a", "conditions": [
                {"type": "Ready", "status": "True", "observedGeneration": 2,
                 "reason": "UpgradeSucceeded", "message": "Helm upgrade succeeded"}]}
        }))
        .unwrap()
    };
    let e = cluster::flux_env_app(&hr("metrics-app-staging")).expect("an environment");
    assert_eq!(
        (
            e.env.as_str(),
            e.namespace.as_str(),
            e.host.as_str(),
            e.image.as_str()
        ),
        (
            "staging",
            "metrics-app-staging",
            "staging.metrics-app.localtest.me",
            "metrics-app:3f2a1c04b5d6"
        )
    );
    assert_eq!(
        (e.app.sync.as_str(), e.app.health.as_str()),
        ("Ready", "UpgradeSucceeded")
    );
    // redis-ha-<env> and the platform's releases are no environment.
    assert!(cluster::flux_env_app(&hr("redis-ha-prod")).is_none());
    assert!(cluster::flux_env_app(&hr("traefik")).is_none());
}

#[test]
fn a_flux_object_is_ready_only_for_its_current_generation() {
    let obj = |v: Value| -> kube::api::DynamicObject { serde_json::from_value(v).unwrap() };
    assert_eq!(
        cluster::flux_ready(&obj(kustomization(
            "platform",
            2,
            "True",
            2,
            "Applied revision: main@sha1:3f2a"
        ))),
        (true, "Applied revision: main@sha1:3f2a".to_string())
    );
    // Ready from before the last edit does not count.
    let (ready, why) = cluster::flux_ready(&obj(kustomization("platform", 3, "True", 2, "old")));
    assert!(
        !ready && why.contains("not reconciled since the last change"),
        "{why}"
    );
    let (ready, why) = cluster::flux_ready(&obj(kustomization(
        "metrics-app-dev",
        1,
        "False",
        1,
        "dependency 'flux-system/platform-addons' is not ready",
    )));
    assert!(!ready && why.contains("platform-addons"), "{why}");
    let mut none = kustomization("x", 1, "True", 1, "");
    none["status"] = json!({});
    assert_eq!(
        cluster::flux_ready(&obj(none)),
        (false, "no Ready condition yet".to_string())
    );
}

#[tokio::test]
async fn scenario_a_kustomization_is_awaited_until_ready_for_its_generation() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let list = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "KustomizationList",
                          "metadata": {"resourceVersion": "5"},
                          "items": [kustomization("platform", 2, "True", 1, "old")]});
        answer_list(&mut handle, KUSTOMIZATIONS, list).await;
        answer_watch(
            &mut handle,
            KUSTOMIZATIONS,
            vec![(
                "MODIFIED",
                kustomization("platform", 2, "True", 2, "Applied"),
            )],
        )
        .await;
        hold(handle).await;
    });
    cluster::wait_kustomization_ready(&client, "platform", Duration::from_secs(10))
        .await
        .expect("ready");
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_a_kustomization_that_never_gets_ready_times_out_with_its_message() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        let stuck = kustomization(
            "metrics-app-dev",
            1,
            "False",
            1,
            "HelmRelease/metrics-app-dev status: 'InProgress'",
        );
        let list = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "KustomizationList",
                          "metadata": {"resourceVersion": "5"}, "items": [stuck.clone()]});
        answer_list(&mut handle, KUSTOMIZATIONS, list).await;
        // After the timeout: one GET of the object for the error's detail.
        let mut open = Vec::new();
        loop {
            let (req, send) = handle.next_request().await.expect("a request");
            let query = req.uri().query().unwrap_or_default().to_string();
            if query.contains("watch=true") {
                // The watch stays open with nothing to say; the timeout ends it.
                open.push(send);
                continue;
            }
            assert_eq!(
                req.uri().path(),
                format!("{KUSTOMIZATIONS}/metrics-app-dev")
            );
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&stuck).unwrap()))
                    .unwrap(),
            );
            break;
        }
        hold(handle).await;
    });
    let err =
        cluster::wait_kustomization_ready(&client, "metrics-app-dev", Duration::from_millis(300))
            .await
            .expect_err("never ready");
    let msg = err.to_string();
    assert!(
        msg.contains("Kustomization flux-system/metrics-app-dev to be Ready")
            && msg.contains("HelmRelease/metrics-app-dev status: 'InProgress'"),
        "{msg}"
    );
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_without_flux_there_is_no_flux_source_and_with_it_its_url_is_read() {
    let (client, mut handle) = client();
    let path =
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/metrics-app";
    let server = tokio::spawn(async move {
        // No Flux: the API server answers 404 (the kind is not served).
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.uri().path(), path);
        send.send_response(
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from(
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "the server could not find the requested resource"}))
                    .unwrap(),
                ))
                .unwrap(),
        );
        answer(
            &mut handle,
            "GET",
            path,
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                   "metadata": {"name": "metrics-app", "namespace": "flux-system"},
                   "spec": {"url": "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git"}}),
        )
        .await;
        let sent = answer(
            &mut handle,
            "PATCH",
            path,
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                   "metadata": {"name": "metrics-app", "namespace": "flux-system"}, "spec": {}}),
        )
        .await;
        assert_eq!(
            sent["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"],
            "t1"
        );
    });
    assert_eq!(cluster::flux_source_url(&client).await.unwrap(), None);
    assert_eq!(
        cluster::flux_source_url(&client).await.unwrap().as_deref(),
        Some("http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git")
    );
    cluster::request_flux_fetch(&client, "metrics-app", "t1")
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn scenario_credentials_on_a_flux_cluster_have_no_argocd_password_and_grafanas_login() {
    let (client, mut handle) = client();
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data});
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/argocd/secrets/argocd-initial-admin-secret"
        );
        send.send_response(
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from(
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "namespaces \"argocd\" not found"}))
                    .unwrap(),
                ))
                .unwrap(),
        );
        for _ in 0..2 {
            answer(
                &mut handle,
                "GET",
                "/api/v1/namespaces/monitoring/secrets/kube-prometheus-stack-grafana",
                secret(json!({"admin-user": "YWRtaW4=", "admin-password": "czNjcjN0"})),
            )
            .await;
        }
    });
    let c = appctl::platform::commands::read_credentials(&client)
        .await
        .expect("credentials");
    server.await.unwrap();
    assert_eq!(c.argocd_password, None);
    assert_eq!(
        (c.grafana_user.as_str(), c.grafana_password.as_str()),
        ("admin", "s3cr3t")
    );
}

#[tokio::test]
async fn scenario_appctl_state_is_recorded_one_key_per_field_manager_and_read_back() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer(&mut handle, "GET", "/api/v1", json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
            "resources": [{"name": "configmaps", "singularName": "configmap", "namespaced": true,
                           "kind": "ConfigMap", "verbs": ["get", "list", "patch", "create"]}]
        }))
        .await;
        let (req, send) = handle.next_request().await.expect("the apply");
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/gitops/configmaps/appctl-state"
        );
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("fieldManager=appctl-images"), "{query}");
        let bytes = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        // Only its own key: the other keys belong to other field managers.
        assert_eq!(sent["data"], json!({"deployed-image": "abc123"}), "{sent}");
        send.send_response(Response::builder().body(Body::from(bytes)).unwrap());
        answer(
            &mut handle,
            "GET",
            "/api/v1/namespaces/gitops/configmaps/appctl-state",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "appctl-state", "namespace": "gitops"},
                   "data": {"deployed-image": "abc123", "pushed-commit": "def456"}}),
        )
        .await;
    });
    cluster::record_state(&client, cluster::StateKey::DeployedImage, "abc123")
        .await
        .expect("recorded");
    let state = cluster::recorded_state(&client).await.expect("read");
    assert_eq!(
        state.get("pushed-commit").map(String::as_str),
        Some("def456")
    );
    assert_eq!(state.len(), 2, "{state:?}");
    server.await.unwrap();
    // One field manager per key, or recording one key would remove another.
    let managers: std::collections::BTreeSet<&str> =
        cluster::StateKey::ALL.iter().map(|k| k.manager()).collect();
    assert_eq!(managers.len(), cluster::StateKey::ALL.len(), "{managers:?}");
}
