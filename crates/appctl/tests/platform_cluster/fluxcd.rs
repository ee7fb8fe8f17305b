//! Flux's objects, for `--gitops flux`: Kustomizations Ready per generation, the GitRepository,
//! the environments' HelmReleases, and `status` and `credentials` on a Flux cluster.

use super::*;

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
