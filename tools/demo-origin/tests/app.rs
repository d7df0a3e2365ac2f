//! The pages and form posts.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{SID, assert_back_home_with, get, header, instruction_names, json, post_form, text};

/// Session headers of a signed-in visitor with this data.
fn signed_in<'a>(user: &'a str, data: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-session-id", SID),
        ("x-session-user", user),
        ("x-session-data", data),
    ]
}

#[tokio::test]
async fn home_without_a_session_offers_sign_in() {
    let response = get("/", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );
    assert!(instruction_names(response.headers()).is_empty());
    let html = text(response).await;
    for id in [
        r#"id="sign-in-username" data-testid="sign-in-username""#,
        r#"id="sign-in-button" data-testid="sign-in-button""#,
        r#"data-testid="counter-value">0<"#,
        r#"id="counter-increment""#,
        r#"id="cart-items" data-testid="cart-items" data-count="0""#,
        r#"id="cart-empty""#,
        r#"id="cart-item-input""#,
        r#"id="cart-add""#,
        r#"id="cart-clear""#,
        r#"id="devices-link""#,
        r#"data-testid="session-status" data-state="none""#,
    ] {
        assert!(html.contains(id), "missing {id}");
    }
    assert!(!html.contains(r#"id="user-name""#));
    assert!(!html.contains(r#"id="sign-out""#));
    assert!(!html.contains("<script"), "the home page needs no script");
}

#[tokio::test]
async fn home_of_an_anonymous_session_shows_its_counter_and_cart() {
    let response = get(
        "/",
        &[
            ("x-session-id", SID),
            ("x-session-data", r#"{"counter":3,"cart":["book","pen"]}"#),
        ],
    )
    .await;
    let html = text(response).await;
    assert!(html.contains(r#"data-state="anonymous""#));
    assert!(html.contains(&format!(r#"data-testid="session-id">{SID}<"#)));
    assert!(html.contains(r#"data-testid="counter-value">3<"#));
    assert!(html.contains(r#"data-count="2""#));
    assert!(html.contains(r#"<li data-testid="cart-item">book</li>"#));
    assert!(html.contains(r#"<li data-testid="cart-item">pen</li>"#));
    assert!(html.contains(r#"id="sign-in-username""#));
    assert!(!html.contains(r#"id="cart-empty""#));
}

#[tokio::test]
async fn home_when_signed_in_names_the_user_and_offers_sign_out() {
    let html = text(get("/", &signed_in("alice", r#"{"counter":41}"#)).await).await;
    assert!(html.contains(r#"<span id="user-name" data-testid="user-name">alice</span>"#));
    assert!(html.contains(r#"id="sign-out" data-testid="sign-out""#));
    assert!(html.contains(r#"data-state="signed-in""#));
    assert!(html.contains(r#"data-testid="counter-value">41<"#));
    assert!(!html.contains(r#"id="sign-in-username""#));
}

#[tokio::test]
async fn home_decodes_a_percent_encoded_user() {
    let html = text(get("/", &signed_in("Jos%C3%A9", "{}")).await).await;
    assert!(html.contains(r#"data-testid="user-name">José<"#));
    // The gateway always escapes '%'; a lone '%' that does not decode is shown as sent.
    let html = text(get("/", &signed_in("100%25", "{}")).await).await;
    assert!(html.contains(r#"data-testid="user-name">100%<"#));
    let html = text(get("/", &signed_in("%FF", "{}")).await).await;
    assert!(html.contains(r#"data-testid="user-name">%FF<"#));
}

#[tokio::test]
async fn everything_rendered_is_escaped() {
    let evil = r#"<script>alert("u")</script>'&"#;
    let data = json!({
        "cart": ["<img src=x onerror=alert(1)>", {"k": "<b>"}, 5],
        "counter": "<i>",
    });
    let data = data.to_string();
    let html = text(get("/", &signed_in(evil, &data)).await).await;
    assert!(!html.contains("<script>alert"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;script&gt;alert(&quot;u&quot;)&lt;/script&gt;&#39;&amp;"));
    assert!(
        html.contains(r#"<li data-testid="cart-item">&lt;img src=x onerror=alert(1)&gt;</li>"#)
    );
    assert!(
        html.contains(r#"<li data-testid="cart-item">{&quot;k&quot;:&quot;&lt;b&gt;&quot;}</li>"#)
    );
    assert!(html.contains(r#"<li data-testid="cart-item">5</li>"#));
    // A counter that is not an integer shows 0.
    assert!(html.contains(r#"data-testid="counter-value">0<"#));

    // Percent-encoded markup is decoded, then escaped.
    let html = text(get("/devices", &signed_in("%3Cb%3E%C3%A9", "{}")).await).await;
    assert!(html.contains(r#"data-testid="user-name">&lt;b&gt;é<"#));
    let html = text(get("/devices", &signed_in(evil, "{}")).await).await;
    assert!(!html.contains("<script>alert"));
    // The session id is not trusted either.
    let html = text(get("/", &[("x-session-id", "<x>")]).await).await;
    assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
}

#[tokio::test]
async fn bad_session_data_is_empty_data() {
    let long = format!("{{\"cart\":[{}", "1,".repeat(20_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"counter\":".to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("string", b"\"x\"".to_vec()),
        ("number", b"7".to_vec()),
        ("empty", Vec::new()),
        ("not UTF-8", b"{\"cart\":[\"\xff\"]}".to_vec()),
        ("truncated, long", long.into_bytes()),
        ("wrong types", br#"{"cart":{"a":1},"counter":1.5}"#.to_vec()),
        ("deep nesting", "[".repeat(10_000).into_bytes()),
    ];
    for (what, data) in cases {
        for path in ["/", "/devices", "/api/whoami"] {
            let request = axum::http::Request::get(path)
                .header("x-session-id", SID)
                .header("x-session-user", "bob")
                .header(
                    "x-session-data",
                    axum::http::HeaderValue::from_bytes(&data).expect("header value"),
                )
                .body(axum::body::Body::empty())
                .expect("request");
            let response = super::send(request).await;
            assert_eq!(response.status(), StatusCode::OK, "{what} on {path}");
            if path == "/api/whoami" {
                let body = json(response).await;
                let wrong_types = what == "wrong types";
                assert_eq!(body["data"].is_null(), !wrong_types, "{what}");
                assert_eq!(body["user"], "bob");
            } else if path == "/" {
                let html = text(response).await;
                assert!(html.contains(r#"data-testid="counter-value">0<"#), "{what}");
                assert!(html.contains(r#"data-count="0""#), "{what}");
            }
        }
        // Adding to a cart whose data cannot be read starts a new cart.
        let response = post_form("/cart/add", "item=tea", &[("x-session-id", SID)]).await;
        assert_back_home_with(&response, "x-session-set", r#"{"cart":["tea"]}"#);
    }
}

#[tokio::test]
async fn repeated_session_headers_count_as_absent() {
    let request = axum::http::Request::get("/")
        .header("x-session-id", SID)
        .header("x-session-data", r#"{"counter":5}"#)
        .header("x-session-data", r#"{"counter":6}"#)
        .header("x-session-user", "a")
        .header("x-session-user", "b")
        .body(axum::body::Body::empty())
        .expect("request");
    let html = text(super::send(request).await).await;
    assert!(html.contains(r#"data-testid="counter-value">0<"#));
    assert!(html.contains(r#"data-state="anonymous""#));
}

#[tokio::test]
async fn login_trims_and_signs_in() {
    let response = post_form("/login", "username=+alice+", &[]).await;
    assert_back_home_with(&response, "x-session-login", "alice");
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );

    let response = post_form("/login", "username=Jos%C3%A9+100%25", &[]).await;
    assert_back_home_with(&response, "x-session-login", "Jos%C3%A9 100%25");

    let response = post_form("/login", "username=100%25", &[]).await;
    assert_back_home_with(&response, "x-session-login", "100%25");

    let response = post_form("/login", "username=%3Cb%3E", &[]).await;
    assert_back_home_with(&response, "x-session-login", "<b>");

    let max = "a".repeat(64);
    let response = post_form("/login", &format!("username={max}"), &[]).await;
    assert_back_home_with(&response, "x-session-login", &max);

    // 64 characters, 128 bytes.
    let wide = "é".repeat(64);
    let response = post_form("/login", &format!("username={wide}"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_refuses_bad_usernames() {
    let too_long = "a".repeat(65);
    for form in [
        "",
        "username=",
        "username=+++",
        "username=a%0Ab",
        "username=%00",
        &format!("username={too_long}"),
    ] {
        let response = post_form("/login", form, &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{form}"
        );
        assert!(instruction_names(response.headers()).is_empty(), "{form}");
        let html = text(response).await;
        assert!(html.contains(r#"id="error" data-testid="error""#));
    }
}

#[tokio::test]
async fn logout_counter_and_clear() {
    let response = post_form("/logout", "", &signed_in("alice", "{}")).await;
    assert_back_home_with(&response, "x-session-logout", "current");

    let response = post_form("/counter", "", &[]).await;
    assert_back_home_with(&response, "x-session-incr", r#"{"counter":1}"#);

    let response = post_form("/cart/clear", "", &[]).await;
    assert_back_home_with(&response, "x-session-set", r#"{"cart":null}"#);
}

#[tokio::test]
async fn cart_add_appends_to_the_current_cart() {
    let response = post_form("/cart/add", "item=++book++", &[]).await;
    assert_back_home_with(&response, "x-session-set", r#"{"cart":["book"]}"#);

    let data = r#"{"cart":["book",{"sku":7}],"counter":2}"#;
    let response = post_form("/cart/add", "item=pen", &signed_in("alice", data)).await;
    assert_back_home_with(
        &response,
        "x-session-set",
        r#"{"cart":["book",{"sku":7},"pen"]}"#,
    );

    // Non-ASCII goes out as ASCII-only JSON.
    let response = post_form("/cart/add", "item=caf%C3%A9+%F0%9F%98%80", &[]).await;
    assert_back_home_with(
        &response,
        "x-session-set",
        r#"{"cart":["caf\u00e9 \ud83d\ude00"]}"#,
    );
    let value: Value =
        serde_json::from_str(r#"{"cart":["caf\u00e9 \ud83d\ude00"]}"#).expect("json");
    assert_eq!(value["cart"][0], "café 😀");

    // Markup and quotes are data, JSON-escaped.
    let response = post_form("/cart/add", "item=%3C%22%3E", &[]).await;
    assert_back_home_with(&response, "x-session-set", r#"{"cart":["<\">"]}"#);
}

#[tokio::test]
async fn cart_add_refuses_bad_items_and_a_full_cart() {
    let long = "x".repeat(101);
    for form in ["", "item=", "item=+", "item=a%07", &format!("item={long}")] {
        let response = post_form("/cart/add", form, &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{form}"
        );
        assert!(instruction_names(response.headers()).is_empty());
    }
    let full = json!({ "cart": vec!["x"; 50] }).to_string();
    let response = post_form("/cart/add", "item=one+more", &signed_in("a", &full)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(instruction_names(response.headers()).is_empty());
    assert!(text(response).await.contains("at most 50 items"));
}

#[tokio::test]
async fn cart_add_refuses_a_cart_over_the_size_limit() {
    let wide = "é".repeat(100);
    let cart: Vec<&str> = vec![&wide; 13];
    let data = json!({ "cart": cart }).to_string();
    let form = format!("item={}", "%C3%A9".repeat(100));
    let response = post_form("/cart/add", &form, &signed_in("a", &data)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(instruction_names(response.headers()).is_empty());
    assert!(text(response).await.contains("8192 bytes"));
    // One item fewer fits.
    let data = json!({ "cart": vec![&wide; 12] }).to_string();
    let response = post_form("/cart/add", &form, &signed_in("a", &data)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn omitted_session_data_is_never_overwritten() {
    let headers = [("x-session-id", SID), ("x-session-data-omitted", "20000")];
    let html = text(get("/", &headers).await).await;
    assert!(html.contains(r#"id="data-omitted" data-testid="data-omitted""#));
    let response = post_form("/cart/add", "item=tea", &headers).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(instruction_names(response.headers()).is_empty());
    // Clearing and counting need no read, so they still work.
    let response = post_form("/cart/clear", "", &headers).await;
    assert_back_home_with(&response, "x-session-set", r#"{"cart":null}"#);
    let response = post_form("/counter", "", &headers).await;
    assert_back_home_with(&response, "x-session-incr", r#"{"counter":1}"#);
    // Without the header, no notice.
    let html = text(get("/", &[("x-session-id", SID)]).await).await;
    assert!(!html.contains("data-omitted"));
}

#[tokio::test]
async fn devices_page() {
    let response = get("/devices", &[("x-session-id", SID)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = text(response).await;
    assert!(html.contains(r#"id="devices-signed-out" data-testid="devices-signed-out""#));
    assert!(html.contains(r#"href="/" id="devices-home""#));
    assert!(!html.contains("<script"));

    let response = get("/devices", &signed_in("alice", "{}")).await;
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );
    let html = text(response).await;
    for id in [
        r#"data-testid="user-name">alice<"#,
        r#"id="devices-list" data-testid="devices-list" data-state="loading""#,
        r#"id="devices-status""#,
        r#"id="sign-out-everywhere" data-testid="sign-out-everywhere""#,
        r#"id="sign-out""#,
        "fetch('/_session/devices'",
        "fetch('/_session/devices/' + encodeURIComponent(id), { method: 'DELETE' })",
        "fetch('/_session/logout-all', { method: 'POST' })",
        "'device-row'",
        "'device-revoke'",
        "'device-current'",
    ] {
        assert!(html.contains(id), "missing {id}");
    }
    assert!(!html.contains("innerHTML"));
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    for site in ["cross-site", "same-site"] {
        for path in [
            "/login",
            "/logout",
            "/counter",
            "/cart/add",
            "/cart/clear",
            "/api/instruct",
        ] {
            let response =
                post_form(path, "username=eve&item=x", &[("sec-fetch-site", site)]).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {site}");
            assert!(instruction_names(response.headers()).is_empty());
        }
    }
    for site in ["same-origin", "none"] {
        let response = post_form("/login", "username=eve", &[("sec-fetch-site", site)]).await;
        assert_back_home_with(&response, "x-session-login", "eve");
    }
    // Reads are never refused.
    let response = get("/", &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn small_endpoints() {
    let response = get("/incr", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "x-session-incr"),
        Some(r#"{"n":1}"#)
    );
    assert_eq!(instruction_names(response.headers()), ["x-session-incr"]);
    assert_eq!(text(response).await, "ok");

    let response = get("/health", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(instruction_names(response.headers()).is_empty());
    assert_eq!(text(response).await, "ok");

    let response = get("/static/hello.txt", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello");

    let response = get("/nope", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(text(response).await.contains("Not found"));
}
