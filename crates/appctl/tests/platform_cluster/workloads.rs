//! Pods, Deployments and HPAs: restarts, replacing pods, waiting for a ready pod, the pod and
//! HPA lines of `status` and `load`.

use super::*;

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
async fn scenario_status_shows_a_running_pod_whose_last_termination_was_oomkilled() {
    let (client, mut handle) = client();
    let pods: Value = serde_json::from_str(include_str!("../data/pods-oomkilled.json")).unwrap();
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
