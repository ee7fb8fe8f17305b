//! The secret backend as `appctl up` sees it: OpenBao asked through a port-forward whether it
//! has the app's password and accepts the token (after a restart in dev mode it has lost both,
//! while the Secret External Secrets synced from it stays), and the password written to it.

use std::time::Duration;

use super::cluster;
use super::plan::Backend;
use super::{Error, Result};

/// OpenBao's server pods (chart `openbao`, release `openbao`).
pub const OPENBAO_PODS: &str = "app.kubernetes.io/name=openbao";
/// Where the app's password lives in OpenBao (KV v2 at `secret/`), as the ExternalSecret
/// reads it.
pub const OPENBAO_PASSWORD_PATH: &str = "/v1/secret/data/metrics-app-password";

/// Asks OpenBao itself, through a port-forward, whether it has the password and accepts the
/// token: after a restart (dev mode) it has lost both, while the synced Secret stays.
pub(super) async fn observe_backend(client: &kube::Client, token: Option<&str>) -> Backend {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let pods = Api::<Pod>::namespaced(client.clone(), "openbao")
        .list(&ListParams::default().labels(OPENBAO_PODS))
        .await;
    let Some(pod) = pods
        .ok()
        .and_then(|l| l.items.into_iter().find(cluster::pod_ready))
        .and_then(|p| p.metadata.name)
    else {
        return Backend::NotRunning {
            reason: format!("no ready pod {OPENBAO_PODS} in openbao"),
        };
    };
    let Some(token) = token else {
        return Backend::RunningWithoutToken;
    };
    let (port, task) = match cluster::port_forward(client, "openbao", &pod, 8200).await {
        Ok(f) => f,
        Err(e) => {
            return Backend::NotRunning {
                reason: e.to_string(),
            };
        }
    };
    let backend = ask_backend(&format!("http://127.0.0.1:{port}"), token).await;
    task.abort();
    backend
}

/// Reads the password from the OpenBao at `base` (KV v2) with `token`: what OpenBao says about
/// it. Only the status and whether a non-empty `password` came back are looked at.
pub async fn ask_backend(base: &str, token: &str) -> Backend {
    let client = match crate::http()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Backend::NotRunning {
                reason: e.to_string(),
            };
        }
    };
    let resp = match client
        .get(format!("{base}{OPENBAO_PASSWORD_PATH}"))
        .header("X-Vault-Token", token)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Backend::NotRunning {
                reason: format!("OpenBao did not answer: {e}"),
            };
        }
    };
    match Backend::from_kv_status(resp.status().as_u16()) {
        Backend::PasswordPresent => {
            let body: serde_json::Value = resp.json_value().await;
            let has = body["data"]["data"]["password"]
                .as_str()
                .is_some_and(|p| !p.is_empty());
            if has {
                Backend::PasswordPresent
            } else {
                Backend::PasswordMissing
            }
        }
        other => other,
    }
}

/// The body of a response as JSON (`null` when it is not JSON).
trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }
}

/// Writes PASSWORD to OpenBao's KV v2 (`secret/metrics-app-password`, property `password`)
/// through a port-forward, with the generated token.
pub(super) async fn write_password(
    c: &kube::Client,
    password: &str,
    timeout: Duration,
) -> Result<()> {
    let token = cluster::secret_value(c, "openbao", "openbao-token", "token").await?;
    let pod = cluster::running_pod(c, "openbao", OPENBAO_PODS, timeout).await?;
    let (port, task) = cluster::port_forward(c, "openbao", &pod, 8200).await?;
    let what = format!("POST {OPENBAO_PASSWORD_PATH} to OpenBao (openbao/{pod})");
    let client = crate::http()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(Error::http(what.clone()))?;
    let resp = client
        .post(format!("http://127.0.0.1:{port}{OPENBAO_PASSWORD_PATH}"))
        .header("X-Vault-Token", token)
        .body(serde_json::json!({"data": {"password": password}}).to_string())
        .send()
        .await
        .map_err(Error::http(what.clone()));
    task.abort();
    let resp = resp?;
    if !resp.status().is_success() {
        return Err(Error::HttpStatus {
            what,
            status: resp.status().as_u16(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-request OpenBao: answers `status` with `body` and returns the request head it got.
    async fn fake_openbao(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("a request");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&head).into_owned()
        });
        (base, task)
    }

    #[tokio::test]
    async fn openbao_itself_is_asked_for_the_password_with_the_token() {
        let (base, bao) = fake_openbao(
            "200 OK",
            r#"{"data":{"data":{"password":"pw"},"metadata":{"version":1}}}"#,
        )
        .await;
        assert_eq!(ask_backend(&base, "tok-1").await, Backend::PasswordPresent);
        let head = bao.await.expect("served").to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("get {OPENBAO_PASSWORD_PATH} http/1.1")),
            "{head}"
        );
        assert!(head.contains("x-vault-token: tok-1"), "{head}");
    }

    #[tokio::test]
    async fn a_restarted_openbao_or_a_lost_token_is_noticed() {
        // Dev mode after a restart: the KV path is gone.
        let (base, bao) = fake_openbao("404 Not Found", r#"{"errors":[]}"#).await;
        assert_eq!(ask_backend(&base, "t").await, Backend::PasswordMissing);
        bao.await.expect("served");
        // A root token that is not the one in the Secret.
        let (base, bao) =
            fake_openbao("403 Forbidden", r#"{"errors":["permission denied"]}"#).await;
        assert_eq!(ask_backend(&base, "t").await, Backend::TokenRejected);
        bao.await.expect("served");
        // The path exists but holds no password.
        let (base, bao) = fake_openbao("200 OK", r#"{"data":{"data":{}}}"#).await;
        assert_eq!(ask_backend(&base, "t").await, Backend::PasswordMissing);
        bao.await.expect("served");
        // Nobody listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        assert!(matches!(
            ask_backend(&closed, "t").await,
            Backend::NotRunning { .. }
        ));
    }
}
