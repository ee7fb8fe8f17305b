//! The admin API: credentials (Basic, Bearer, non-ASCII), the run-time log filter and its
//! checks, bounded bodies, and the per-client rate limit.

use super::*;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn admin_reset_needs_the_password_and_answers_401_with_challenges() {
    let app = router();
    call(&app, get("/counter")).await;
    for auth in [
        None,
        Some("Bearer wrong".to_string()),
        Some(basic("admin", "wrong")),
        Some("Bearer".into()),
        Some("Basic %%%".into()),
    ] {
        let mut req = request("POST", "/admin/counter/reset");
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let (status, headers, body) = call(&app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body, "unauthorized");
        let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
        assert_eq!(challenges.len(), 2);
    }
    assert_eq!(
        call(&app, get("/counter")).await.2,
        "Counter value: 2",
        "a refused reset must not reset"
    );

    let req =
        request("POST", "/admin/counter/reset").header("authorization", basic("anyone", PASSWORD));
    assert_eq!(
        call(&app, req.body(Body::empty()).unwrap()).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
    let req = request("POST", "/admin/counter/reset")
        .header("authorization", format!("Bearer {PASSWORD}"));
    assert_eq!(
        call(&app, req.body(Body::empty()).unwrap()).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&app, get("/counter")).await.2, "Counter value: 1");
}

#[tokio::test]
async fn log_level_changes_are_validated_and_bodies_are_bounded() {
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = calls.clone();
    let control: metrics_app::LogControl = std::sync::Arc::new(move |f| {
        seen.lock().unwrap().push(f.to_string());
        Ok(())
    });
    let app = app_with(Some(control));
    let put = |body: Vec<u8>, auth: bool| {
        let mut req = request("PUT", "/admin/log-level");
        if auth {
            req = req.header("authorization", format!("Bearer {PASSWORD}"));
        }
        req.body(Body::from(body)).unwrap()
    };
    assert_eq!(
        call(&app, put(b"debug".to_vec(), false)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, put(b"debug\n".to_vec(), true)).await.0,
        StatusCode::OK
    );
    // Filters that would enable nothing are refused, saying why.
    for (bad, why) in [
        (&b"[bad"[..], "invalid"),
        (b"debgu", "debgu"),
        (b"info\nwarn", "one line"),
        (b"off", "silence"),
    ] {
        let (status, _, body) = call(&app, put(bad.to_vec(), true)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains(why), "{body}");
    }
    assert_eq!(
        call(&app, put(vec![0xff, 0xfe], true)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&app, put(vec![b'a'; 10_000], true)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(*calls.lock().unwrap(), vec!["debug".to_string()]);
}

#[tokio::test]
async fn admin_requests_are_rate_limited_per_client_even_with_the_right_password() {
    let app = router();
    let reset = |auth: String| {
        request("POST", "/admin/counter/reset")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(call(&app, reset("Bearer guess".into())).await.0);
    }
    assert_eq!(statuses[..10], [StatusCode::UNAUTHORIZED; 10]);
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Once limited, the right password gets no different answer: guessing learns nothing.
    let (status, headers, _) = call(&app, reset(format!("Bearer {PASSWORD}"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    // Per address: another client still gets its own allowance.
    let other = std::net::SocketAddr::from(([10, 0, 0, 7], 40001));
    let response = app
        .public
        .handle(other, reset(format!("Bearer {PASSWORD}")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, _, text) = call(&app, get("/metrics")).await;
    assert!(
        text.contains("metrics_app_admin_rate_limited_total 3"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_password_works_with_bearer_as_with_basic() {
    let password = "pässwörd-密码";
    let app = TestApp::spawn_with(common::config_with_password(
        &["--drain-delay", "0s"],
        password,
    ))
    .await;
    let addr = app.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
        [
            format!("Bearer {password}"),
            format!("Basic {basic}"),
            "Bearer pässwörd".to_string(),
        ]
        .map(|auth| {
            let request = format!(
                "POST /admin/counter/reset HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            status_of(&raw_exchange(addr, request.as_bytes()))
        })
    })
    .await
    .unwrap();
    assert_eq!(answers, [200, 200, 401]);
    app.stop().await;
}
