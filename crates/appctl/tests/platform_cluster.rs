//! The platform's Kubernetes logic against a mocked API server (tower-test), in named
//! scenarios: each scenario answers the requests appctl makes with recorded-style objects and
//! checks both what appctl concluded and what it sent.
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
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {},
        "status": {"sync": {"status": sync, "revision": "3f2a1c0"}, "health": {"status": health}}
    })
}

fn app_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList", "metadata": {}, "items": items})
}

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";

#[tokio::test]
async fn scenario_one_app_progressing_then_all_synced_and_healthy() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "GET",
            APPS,
            app_list(vec![
                app("traefik", "Synced", "Healthy"),
                app("metrics-app", "OutOfSync", "Progressing"),
            ]),
        )
        .await;
        answer(
            &mut handle,
            "GET",
            APPS,
            app_list(vec![
                app("traefik", "Synced", "Healthy"),
                app("metrics-app", "Synced", "Degraded"),
            ]),
        )
        .await;
        answer(
            &mut handle,
            "GET",
            APPS,
            app_list(vec![
                app("traefik", "Synced", "Healthy"),
                app("metrics-app", "Synced", "Healthy"),
            ]),
        )
        .await;
    });
    let mut seen = Vec::new();
    let states = cluster::wait_synced(
        &client,
        Duration::from_secs(10),
        Duration::from_millis(1),
        |s| {
            seen.push(s.iter().filter(|a| a.is_ready()).count());
        },
    )
    .await
    .expect("becomes ready");
    server.await.unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(seen, vec![1, 1, 2], "progress is reported on every change");
}

#[tokio::test]
async fn scenario_degraded_until_the_timeout_names_the_laggard() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        // Answers as long as appctl asks; the test ends when the client gives up.
        while let Some((_, send)) = handle.next_request().await {
            let body = app_list(vec![app("metrics-app", "Synced", "Degraded")]);
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let err = cluster::wait_synced(
        &client,
        Duration::from_millis(50),
        Duration::from_millis(5),
        |_| {},
    )
    .await
    .expect_err("times out");
    let msg = err.to_string();
    assert!(
        msg.contains("timed out") && msg.contains("metrics-app (Synced/Degraded)"),
        "{msg}"
    );
    drop(client);
    server.abort();
}

#[tokio::test]
async fn scenario_no_application_yet_is_not_ready() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&app_list(vec![])).unwrap()))
                    .unwrap(),
            );
        }
    });
    let err = cluster::wait_synced(
        &client,
        Duration::from_millis(30),
        Duration::from_millis(5),
        |_| {},
    )
    .await
    .expect_err("empty is not ready");
    assert!(err.to_string().contains("no Application exists yet"));
    server.abort();
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
fn the_root_application_points_at_the_source_with_the_image_tag() {
    let app = cluster::root_application(
        "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git",
        "main",
        "3f2a1c0-dirty",
    );
    assert_eq!(app["spec"]["source"]["path"], "deploy/argocd");
    let params = app["spec"]["source"]["helm"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "metricsApp.image.tag" && p["value"] == "3f2a1c0-dirty")
    );
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["selfHeal"], true);
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
    let obj = serde_json::from_value(cluster::root_application("r", "main", "t")).unwrap();
    cluster::apply_object(&client, obj, None)
        .await
        .expect("applied");
    server.await.unwrap();
}
