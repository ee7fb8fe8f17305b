//! The platform's Kubernetes logic against a mocked API server (tower-test), in named
//! scenarios: each scenario answers the requests appctl makes with recorded-style objects and
//! checks both what appctl concluded and what it sent. Waits go through kube-runtime's
//! watcher, so those scenarios answer a list, then a watch with a stream of events.
//!
//! By subject, as `platform::cluster` is: `argocd` (Applications), `fluxcd` (Flux's objects),
//! `workloads` (pods, Deployments, HPAs); here the helpers, and what every command uses
//! (server-side apply, CRDs, Secrets, appctl's records).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod argocd;
mod fluxcd;
mod workloads;

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
