//! The Kubernetes evidence of `appctl diagnose --kube` against a mocked API server
//! (tower-test), in named scenarios: what cannot be read (an RBAC denial, the metrics API not
//! installed, exec refused) becomes a note naming what and why — never "nothing found" — and
//! discovery still finds the pods through whatever it may read.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use appctl::diagnose::kube::{Target, collect_with};
use appctl::kubeapi::Refusal;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Answers the next request, after checking its path, with `status` and `body`.
async fn answer(handle: &mut Handle, path: &str, status: u16, body: Value) {
    let (req, send) =
        tokio::time::timeout(std::time::Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request for {path} within 5 s"))
            .expect("a request");
    assert_eq!(req.uri().path(), path, "{}", req.uri());
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": format!("{reason} (mocked)"), "reason": reason, "code": code})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

#[tokio::test]
async fn scenario_denied_routes_events_and_no_metrics_server_become_notes() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "/apis/gateway.networking.k8s.io/v1/httproutes",
            403,
            status(403, "Forbidden"),
        )
        .await;
        answer(
            &mut handle,
            "/apis/networking.k8s.io/v1/ingresses",
            200,
            list(
                "IngressList",
                vec![json!({
                    "metadata": {"name": "shop", "namespace": "legacy"},
                    "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
                })],
            ),
        )
        .await;
        answer(
            &mut handle,
            "/api/v1/namespaces/legacy/services/web",
            200,
            json!({"metadata": {"name": "web", "namespace": "legacy"},
                   "spec": {"selector": {"app": "web"}}}),
        )
        .await;
        answer(
            &mut handle,
            "/api/v1/namespaces/legacy/pods",
            200,
            list("PodList", vec![json!({
                "metadata": {"name": "web-1", "namespace": "legacy"},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                "status": {"containerStatuses": [{"name": "web", "image": "web:1", "imageID": "",
                    "ready": true, "restartCount": 0}]}
            })]),
        )
        .await;
        answer(
            &mut handle,
            "/api/v1/namespaces/legacy/events",
            403,
            status(403, "Forbidden"),
        )
        .await;
        answer(
            &mut handle,
            "/apis/metrics.k8s.io/v1beta1/namespaces/legacy/pods/web-1",
            404,
            status(404, "NotFound"),
        )
        .await;
        answer(
            &mut handle,
            "/api/v1/namespaces/legacy/pods/web-1/exec",
            403,
            status(403, "Forbidden"),
        )
        .await;
    });
    let target = Target {
        host: "shop.example.com".into(),
        ..Target::default()
    };
    let k = collect_with(&client, &target)
        .await
        .expect("pods could be listed");
    server.await.unwrap();
    assert_eq!(
        (k.namespace.as_str(), k.selector.as_str()),
        ("legacy", "app=web")
    );
    assert_eq!(k.pods.len(), 1);
    let notes = k.notes.join("\n");
    assert!(
        notes.contains(
            "route discovery: cannot list httproutes in all namespaces: forbidden by RBAC"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("cannot list events in namespace legacy: forbidden by RBAC"),
        "{notes}"
    );
    assert!(
        notes.contains("memory usage: cannot read PodMetrics web-1 in namespace legacy: the API is not installed"),
        "{notes}"
    );
    assert!(
        notes.contains("processes of web-1: exec of `ps` failed"),
        "{notes}"
    );
}

#[tokio::test]
async fn scenario_a_denied_pod_list_is_an_error_naming_the_pods_not_an_empty_result() {
    let (client, mut handle) = client();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "/api/v1/namespaces/shop/pods",
            403,
            status(403, "Forbidden"),
        )
        .await;
    });
    let target = Target {
        namespace: Some("shop".into()),
        selector: Some("app=web".into()),
        host: "shop.example.com".into(),
    };
    let e = collect_with(&client, &target).await.expect_err("denied");
    server.await.unwrap();
    assert_eq!(e.refusal(), Refusal::Denied);
    assert!(
        e.note()
            .starts_with("cannot list pods matching app=web in namespace shop: forbidden by RBAC"),
        "{}",
        e.note()
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the client's error is kept"
    );
}
