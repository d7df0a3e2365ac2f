//! `/api/whoami`, `/api/instruct`, and the app on a real listener.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{SID, get, header, instruction_names, json, send, text};

/// `POST /api/instruct` with this JSON body (sent as text, no content type needed).
async fn instruct(body: &str) -> axum::http::Response<Body> {
    send(
        Request::post("/api/instruct")
            .body(Body::from(body.to_owned()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn whoami_without_a_session() {
    let response = get("/api/whoami", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );
    assert_eq!(
        json(response).await,
        json!({
            "session_id": null,
            "user": null,
            "data": null,
            "session_headers": {},
            "cookie_header": null,
            "method": "GET",
            "uri": "/api/whoami",
        })
    );
}

#[tokio::test]
async fn whoami_echoes_session_headers_and_cookie_verbatim() {
    let data = r#"{"cart":["caf\u00e9"],"n":2}"#;
    let response = get(
        "/api/whoami?x=1",
        &[
            ("x-session-id", SID),
            ("x-session-user", "Jos%C3%A9"),
            ("x-session-data", data),
            ("x-session-spoofed", "evil"),
            ("X-Session-Set", r#"{"a":1}"#),
            ("cookie", "__Host-session=k1..abc.sig; theme=dark"),
            ("x-other", "not listed"),
        ],
    )
    .await;
    assert_eq!(
        json(response).await,
        json!({
            "session_id": SID,
            "user": "José",
            "data": {"cart": ["café"], "n": 2},
            "session_headers": {
                "x-session-id": SID,
                "x-session-user": "Jos%C3%A9",
                "x-session-data": data,
                "x-session-spoofed": "evil",
                "x-session-set": "{\"a\":1}",
            },
            "cookie_header": "__Host-session=k1..abc.sig; theme=dark",
            "method": "GET",
            "uri": "/api/whoami?x=1",
        })
    );
}

#[tokio::test]
async fn whoami_lists_repeated_headers_as_arrays() {
    let request = Request::get("/api/whoami")
        .header("x-session-user", "a")
        .header("x-session-user", "b")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Body::empty())
        .expect("request");
    let body = json(send(request).await).await;
    assert_eq!(body["session_headers"]["x-session-user"], json!(["a", "b"]));
    assert_eq!(body["user"], Value::Null);
    assert_eq!(body["cookie_header"], "a=1; b=2");
}

#[tokio::test]
async fn instruct_sends_each_instruction() {
    let response = instruct(
        r#"{"set":{"cart":["café"],"gone":null},"incr":{"n":2,"m":-1},"login":"José","logout":"all"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(
        header(&headers, "x-session-set"),
        Some(r#"{"cart":["caf\u00e9"],"gone":null}"#)
    );
    assert_eq!(
        header(&headers, "x-session-incr"),
        Some(r#"{"m":-1,"n":2}"#)
    );
    assert_eq!(header(&headers, "x-session-login"), Some("Jos%C3%A9"));
    assert_eq!(header(&headers, "x-session-logout"), Some("all"));
    assert_eq!(
        json(response).await,
        json!({
            "status": 200,
            "headers": [
                ["x-session-set", r#"{"cart":["caf\u00e9"],"gone":null}"#],
                ["x-session-incr", r#"{"m":-1,"n":2}"#],
                ["x-session-login", "Jos%C3%A9"],
                ["x-session-logout", "all"],
            ],
        })
    );
}

#[tokio::test]
async fn instruct_with_nothing_sends_nothing() {
    let response = instruct("{}").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(instruction_names(response.headers()).is_empty());
    assert_eq!(json(response).await, json!({"status": 200, "headers": []}));
}

#[tokio::test]
async fn instruct_raw_headers_go_out_verbatim() {
    let response = instruct(
        r#"{
            "set": {"a": 1},
            "raw": {
                "x-session-set": ["{not json", "[1,2]"],
                "x-session-login": "café",
                "x-session-logout": "sometimes",
                "X-Session-Incr": "{\"n\":\"x\"}",
                "x-session-_secret": "1"
            },
            "status": 418
        }"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    let headers = response.headers().clone();
    let sets: Vec<&[u8]> = headers
        .get_all("x-session-set")
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    assert_eq!(sets, [&b"{\"a\":1}"[..], b"{not json", b"[1,2]"]);
    assert_eq!(
        headers.get("x-session-login").map(|value| value.as_bytes()),
        Some("café".as_bytes())
    );
    assert_eq!(header(&headers, "x-session-logout"), Some("sometimes"));
    assert_eq!(header(&headers, "x-session-incr"), Some(r#"{"n":"x"}"#));
    assert_eq!(header(&headers, "x-session-_secret"), Some("1"));
    let body = json(response).await;
    assert_eq!(body["status"], 418);
    assert_eq!(body["headers"][0], json!(["x-session-set", "{\"a\":1}"]));
    assert_eq!(body["headers"].as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn instruct_can_send_non_objects_and_odd_statuses() {
    let response = instruct(r#"{"set":[1],"incr":"x","status":500}"#).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(header(response.headers(), "x-session-set"), Some("[1]"));
    assert_eq!(header(response.headers(), "x-session-incr"), Some(r#""x""#));

    let response = instruct(r#"{"incr":{"n":1},"status":204}"#).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(response.headers(), "x-session-incr"),
        Some(r#"{"n":1}"#)
    );
    assert_eq!(text(response).await, "");

    let response = instruct(r#"{"login":"bob","status":303,"raw":{"location":"/"}}"#).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(response.headers(), "location"), Some("/"));
    assert_eq!(header(response.headers(), "x-session-login"), Some("bob"));
}

#[tokio::test]
async fn instruct_refuses_what_it_cannot_send() {
    for body in [
        "",
        "not json",
        "[]",
        r#"{"sett":{}}"#,
        r#"{"status":99}"#,
        r#"{"status":600}"#,
        r#"{"status":"200"}"#,
        r#"{"logout":"a\u0000"}"#,
        r#"{"raw":{"bad name":"x"}}"#,
        r#"{"raw":{"x-a":"line\nbreak"}}"#,
        r#"{"raw":{"x-a":1}}"#,
        r#"{"raw":{"x-a":["ok",2]}}"#,
        r#"{"raw":{"content-length":"3"}}"#,
        r#"{"raw":{"Transfer-Encoding":"chunked"}}"#,
        r#"{"set":{"a":1},"raw":{"connection":"close"}}"#,
    ] {
        let response = instruct(body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(instruction_names(response.headers()).is_empty(), "{body}");
        let error = json(response).await;
        assert!(error["error"].is_string(), "{body}: {error}");
    }
}

/// The same app on a real socket, through [`demo_origin::serve`], with a real HTTP client.
#[tokio::test]
async fn serves_on_a_real_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(demo_origin::serve(listener));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let response = client
        .get(format!("{base}/api/whoami"))
        .header("cookie", "__Host-session=abc")
        .header("x-session-id", SID)
        .send()
        .await
        .expect("whoami");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(body["cookie_header"], "__Host-session=abc");
    assert_eq!(body["session_id"], SID);

    let response = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=carol")
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        response
            .headers()
            .get("x-session-login")
            .map(|v| v.as_bytes()),
        Some(&b"carol"[..])
    );

    let response = client
        .post(format!("{base}/api/instruct"))
        .body(r#"{"raw":{"x-session-set":"caf\u00e9"}}"#)
        .send()
        .await
        .expect("instruct");
    assert_eq!(
        response
            .headers()
            .get("x-session-set")
            .map(|v| v.as_bytes()),
        Some("café".as_bytes())
    );

    server.abort();
}
