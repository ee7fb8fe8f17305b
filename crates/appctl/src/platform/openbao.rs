//! The secret backend as `appctl up` sees it: OpenBao asked through a port-forward whether it
//! has the app's password and accepts the token (after a restart in dev mode it has lost both,
//! while the Secret External Secrets synced from it stays), and the password written to it.

use std::time::Duration;

use super::cluster;
use super::plan::Backend;
use super::{Error, Result};

/// OpenBao's server pods (chart `openbao`, release `openbao`).
pub const OPENBAO_PODS: &str = "app.kubernetes.io/name=openbao";
/// The API path of an environment's password in OpenBao (KV v2 mounted at `secret/`), from its
/// `secretPath` in deploy/argocd/values.yaml, which the environment's ExternalSecret reads
/// (remote key `metrics-app/dev` → `/v1/secret/data/metrics-app/dev`, property `password`).
pub fn kv_path(secret_path: &str) -> String {
    format!("/v1/secret/data/{}", secret_path.trim_matches('/'))
}

/// What OpenBao says about several environments' passwords: the worst answer (a rejected
/// token or no answer first, then a missing password).
pub fn combine(answers: Vec<Backend>) -> Backend {
    let rank = |b: &Backend| match b {
        Backend::NotRunning { .. } => 0,
        Backend::RunningWithoutToken => 1,
        Backend::TokenRejected => 2,
        Backend::PasswordMissing => 3,
        Backend::PasswordPresent => 4,
    };
    answers
        .into_iter()
        .min_by_key(rank)
        .unwrap_or(Backend::PasswordPresent)
}

/// Asks OpenBao itself, through a port-forward, whether it has the password of every
/// environment in `secret_paths` and accepts the token: after a restart (dev mode) it has lost
/// both, while the synced Secrets stay.
pub(super) async fn observe_backend(
    client: &kube::Client,
    token: Option<&str>,
    secret_paths: &[String],
) -> Backend {
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
    let base = format!("http://127.0.0.1:{port}");
    let mut answers = Vec::new();
    for p in secret_paths {
        answers.push(ask_backend(&base, token, p).await);
    }
    task.abort();
    combine(answers)
}

/// Reads the password at `secret_path` from the OpenBao at `base` (KV v2) with `token`: what
/// OpenBao says about it. Only the status and whether a non-empty `password` came back are
/// looked at.
pub async fn ask_backend(base: &str, token: &str, secret_path: &str) -> Backend {
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
        .get(format!("{base}{}", kv_path(secret_path)))
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

/// What [`write_password`] wrote.
#[derive(Debug)]
pub(super) struct Written {
    /// The secret paths written.
    pub paths: Vec<String>,
    /// The password, when appctl generated it (to be shown once).
    pub generated: Option<String>,
}

/// Writes the password to OpenBao's KV v2 (property `password`) through a port-forward, with
/// the generated token: `password` at every path of `secret_paths`, or, without one, a
/// generated password at the paths that have none (the others keep theirs).
pub(super) async fn write_password(
    c: &kube::Client,
    password: Option<&str>,
    secret_paths: &[String],
    timeout: Duration,
) -> Result<Written> {
    let token = cluster::secret_value(c, "openbao", "openbao-token", "token").await?;
    let pod = cluster::running_pod(c, "openbao", OPENBAO_PODS, timeout).await?;
    let (port, task) = cluster::port_forward(c, "openbao", &pod, 8200).await?;
    let result = write_at(
        &format!("http://127.0.0.1:{port}"),
        &pod,
        &token,
        password,
        secret_paths,
    )
    .await;
    task.abort();
    result
}

/// [`write_password`] against the OpenBao at `base`.
pub async fn write_at(
    base: &str,
    pod: &str,
    token: &str,
    password: Option<&str>,
    secret_paths: &[String],
) -> Result<Written> {
    let mut targets = Vec::new();
    for p in secret_paths {
        if password.is_some() || ask_backend(base, token, p).await != Backend::PasswordPresent {
            targets.push(p.clone());
        }
    }
    let (pw, generated) = match password {
        Some(p) => (p.to_string(), None),
        None if targets.is_empty() => (String::new(), None),
        None => {
            let p = super::up::random_hex(12)?;
            (p.clone(), Some(p))
        }
    };
    let client = crate::http()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(Error::http(format!("a client for OpenBao (openbao/{pod})")))?;
    for p in &targets {
        let what = format!("POST {} to OpenBao (openbao/{pod})", kv_path(p));
        let resp = client
            .post(format!("{base}{}", kv_path(p)))
            .header("X-Vault-Token", token)
            .body(serde_json::json!({"data": {"password": pw}}).to_string())
            .send()
            .await
            .map_err(Error::http(what.clone()))?;
        if !resp.status().is_success() {
            return Err(Error::HttpStatus {
                what,
                status: resp.status().as_u16(),
            });
        }
    }
    Ok(Written {
        paths: targets,
        generated,
    })
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
        assert_eq!(
            ask_backend(&base, "tok-1", "metrics-app/staging").await,
            Backend::PasswordPresent
        );
        let head = bao.await.expect("served").to_ascii_lowercase();
        assert!(
            head.starts_with("get /v1/secret/data/metrics-app/staging http/1.1"),
            "{head}"
        );
        assert!(head.contains("x-vault-token: tok-1"), "{head}");
    }

    #[tokio::test]
    async fn a_restarted_openbao_or_a_lost_token_is_noticed() {
        // Dev mode after a restart: the KV path is gone.
        let (base, bao) = fake_openbao("404 Not Found", r#"{"errors":[]}"#).await;
        assert_eq!(
            ask_backend(&base, "t", "metrics-app/dev").await,
            Backend::PasswordMissing
        );
        bao.await.expect("served");
        // A root token that is not the one in the Secret.
        let (base, bao) =
            fake_openbao("403 Forbidden", r#"{"errors":["permission denied"]}"#).await;
        assert_eq!(
            ask_backend(&base, "t", "metrics-app/dev").await,
            Backend::TokenRejected
        );
        bao.await.expect("served");
        // The path exists but holds no password.
        let (base, bao) = fake_openbao("200 OK", r#"{"data":{"data":{}}}"#).await;
        assert_eq!(
            ask_backend(&base, "t", "metrics-app/dev").await,
            Backend::PasswordMissing
        );
        bao.await.expect("served");
        // Nobody listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        assert!(matches!(
            ask_backend(&closed, "t", "metrics-app/dev").await,
            Backend::NotRunning { .. }
        ));
    }

    #[test]
    fn the_worst_answer_of_several_environments_counts() {
        use Backend::*;
        assert_eq!(
            combine(vec![PasswordPresent, PasswordMissing]),
            PasswordMissing
        );
        assert_eq!(combine(vec![PasswordMissing, TokenRejected]), TokenRejected);
        assert_eq!(
            combine(vec![PasswordPresent, PasswordPresent]),
            PasswordPresent
        );
        assert!(matches!(
            combine(vec![PasswordPresent, NotRunning { reason: "x".into() }]),
            NotRunning { .. }
        ));
        assert_eq!(
            kv_path("metrics-app/prod"),
            "/v1/secret/data/metrics-app/prod"
        );
    }

    #[tokio::test]
    async fn a_generated_password_goes_only_where_none_is() {
        // dev has its password (200 with one), staging has none (404): one GET each, then one
        // POST to staging only.
        let (base, bao) = fake_openbao_sequence(vec![
            ("200 OK", r#"{"data":{"data":{"password":"kept"}}}"#),
            ("404 Not Found", r#"{"errors":[]}"#),
            ("204 No Content", ""),
        ])
        .await;
        let paths = [
            "metrics-app/dev".to_string(),
            "metrics-app/staging".to_string(),
        ];
        let w = write_at(&base, "openbao-0", "tok", None, &paths)
            .await
            .expect("written");
        assert_eq!(w.paths, ["metrics-app/staging"]);
        let pw = w.generated.expect("generated");
        let heads = bao.await.expect("served");
        assert!(
            heads[0].starts_with("GET /v1/secret/data/metrics-app/dev "),
            "{heads:?}"
        );
        assert!(
            heads[1].starts_with("GET /v1/secret/data/metrics-app/staging "),
            "{heads:?}"
        );
        assert!(
            heads[2].starts_with("POST /v1/secret/data/metrics-app/staging "),
            "{heads:?}"
        );
        assert!(
            heads[2].contains(&format!(r#"{{"data":{{"password":"{pw}"}}}}"#)),
            "{heads:?}"
        );
    }

    /// An OpenBao answering one request per connection with each answer in turn; returns
    /// every request (head and body) it got.
    async fn fake_openbao_sequence(
        answers: Vec<(&'static str, &'static str)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            for (status, body) in answers {
                let (mut conn, _) = listener.accept().await.expect("a request");
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                // Head, then as many body bytes as Content-Length says.
                loop {
                    let n = conn.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.expect("write");
                got.push(String::from_utf8_lossy(&req).into_owned());
            }
            got
        });
        (base, task)
    }
}
