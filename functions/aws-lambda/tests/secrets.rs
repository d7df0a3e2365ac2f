//! Secrets named by `*_SECRET_ID` / `*_SSM_PARAMETER`, read from a stand-in
//! for the Secrets Manager and SSM endpoints (in process, on a free port).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use edge_session_lambda::{Env, InitError};
use serde_json::{Value, json};

/// What the stand-in received: (target, authorization, security token,
/// x-amz-date, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String, Value)>>>;

async fn aws_stand_in() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: String| {
            let log = Arc::clone(&log);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let target = header("x-amz-target");
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((
                    target.clone(),
                    header("authorization"),
                    header("x-amz-security-token"),
                    header("x-amz-date"),
                    body.clone(),
                ));
                let not_found = (
                    StatusCode::BAD_REQUEST,
                    json!({ "__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret." })
                        .to_string(),
                );
                match (target.as_str(), &body) {
                    ("secretsmanager.GetSecretValue", b) if b["SecretId"] == json!("prod/keys") => (
                        StatusCode::OK,
                        json!({ "Name": "prod/keys", "SecretString": crate::support::SECRETS }).to_string(),
                    ),
                    ("AmazonSSM.GetParameter", b)
                        if b["Name"] == json!("/edge/rest-token") && b["WithDecryption"] == json!(true) =>
                    {
                        (
                            StatusCode::OK,
                            json!({ "Parameter": { "Name": "/edge/rest-token", "Type": "SecureString", "Value": "token-from-ssm" } })
                                .to_string(),
                        )
                    }
                    _ => not_found,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn vars(endpoint: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: HashMap<String, String> = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret-key-never-sent"),
        ("AWS_SESSION_TOKEN", "session-token"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("ORIGIN_URL", "http://127.0.0.1:1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_resolved_at_init() {
    let (endpoint, seen) = aws_stand_in().await;
    let client = edge_session_lambda::http_client().unwrap();
    let env = Env::resolve(
        &client,
        vars(
            &endpoint,
            &[
                ("SESSION_SECRETS_SECRET_ID", "prod/keys"),
                ("UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER", "/edge/rest-token"),
                ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:2"),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        env.get("SESSION_SECRETS").as_deref(),
        Some(crate::support::SECRETS)
    );
    assert_eq!(
        env.get("UPSTASH_REDIS_REST_TOKEN").as_deref(),
        Some("token-from-ssm")
    );
    // The settings read the resolved values.
    assert!(env.settings().is_ok());
    assert!(!format!("{env:?}").contains("token-from-ssm"));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one call per reference");
    let today = &httpdate_today();
    for (target, authorization, token, amz_date, _) in &seen {
        let service = if target.starts_with("secretsmanager.") {
            "secretsmanager"
        } else {
            "ssm"
        };
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/{today}/eu-west-1/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        );
        assert!(authorization.starts_with(&prefix), "{authorization}");
        let signature = &authorization[prefix.len()..];
        assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!authorization.contains("secret-key-never-sent"));
        assert_eq!(token, "session-token");
        // `YYYYMMDDTHHMMSSZ`, on the day the credential scope names.
        assert!(
            amz_date.len() == 16 && amz_date.starts_with(&format!("{today}T")),
            "{amz_date}"
        );
    }
}

/// Today's date as SigV4 scopes it (`YYYYMMDD`, UTC), from the system clock
/// through `date`, independent of the code under test.
fn httpdate_today() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y%m%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_ambiguous_references_fail_the_init() {
    let (endpoint, _) = aws_stand_in().await;
    let client = edge_session_lambda::http_client().unwrap();
    let missing = Env::resolve(
        &client,
        vars(&endpoint, &[("ADMIN_TOKEN_SECRET_ID", "does-not-exist")]),
    )
    .await
    .unwrap_err();
    let text = missing.to_string();
    assert!(matches!(missing, InitError::Secret(_)));
    assert!(
        text.contains("ADMIN_TOKEN_SECRET_ID") && text.contains("ResourceNotFoundException"),
        "{text}"
    );

    let both = Env::resolve(
        &client,
        vars(
            &endpoint,
            &[
                ("ADMIN_TOKEN_SECRET_ID", "prod/keys"),
                ("ADMIN_TOKEN", "also-set-0123456789"),
            ],
        ),
    )
    .await
    .unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");

    // Outside Lambda, without credentials: a clear error, no call.
    let no_credentials = Env::resolve(
        &client,
        [(
            "SESSION_SECRETS_SECRET_ID".to_owned(),
            "prod/keys".to_owned(),
        )],
    )
    .await
    .unwrap_err();
    assert!(
        no_credentials.to_string().contains("AWS_REGION"),
        "{no_credentials}"
    );

    // No references: nothing to resolve, no AWS variable needed.
    let plain = Env::resolve(&client, [("ORIGIN_URL".to_owned(), "http://x".to_owned())])
        .await
        .unwrap();
    assert_eq!(plain.get("ORIGIN_URL").as_deref(), Some("http://x"));
}
