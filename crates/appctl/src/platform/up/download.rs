//! Downloads of pinned upstream manifests over HTTPS (reqwest over rustls), and the SHA-256
//! check that makes what is applied exactly what was pinned.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::bootstrap::hex;
use crate::platform::{Error, Result};

/// Checks that `body` (downloaded from `url`) has the SHA-256 `expected` (hex, any case).
pub fn verify_sha256(url: &str, body: &[u8], expected: &str) -> Result<()> {
    let actual = hex(&Sha256::digest(body));
    if actual.eq_ignore_ascii_case(expected.trim()) {
        Ok(())
    } else {
        Err(Error::Checksum {
            url: url.into(),
            expected: expected.trim().to_ascii_lowercase(),
            actual,
        })
    }
}

/// GETs an https:// URL (ArgoCD's pinned install manifest) with reqwest over rustls and the
/// platform's root certificates, and returns it only if it has the SHA-256 `sha256`.
pub async fn fetch_verified(url: &str, sha256: &str) -> Result<String> {
    let body = fetch_https(url).await?;
    verify_sha256(url, &body, sha256)?;
    String::from_utf8(body).map_err(Error::manifest(url))
}

/// GETs an https:// URL with reqwest over rustls and the platform's root certificates: the
/// body of a success, else an error naming the status. Checking it is the caller's job.
pub async fn fetch_https(url: &str) -> Result<Vec<u8>> {
    let what = format!("GET {url}");
    let client = crate::http()
        .https_only(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(Error::http(format!("an HTTPS client for {url}")))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(Error::http(what.clone()))?;
    if !resp.status().is_success() {
        return Err(Error::HttpStatus {
            what,
            status: resp.status().as_u16(),
        });
    }
    let body = resp.bytes().await.map_err(Error::http(what))?;
    Ok(body.to_vec())
}
