//! `with_sessions`: sessions inside a lambda_http handler of your own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_session::{AnyBackend, Logout, SessionStore};
use edge_session_lambda::{SessionResponse, Sessions, with_sessions};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Error, IntoResponse, Request, Response, Service, service_fn};
use serde_json::{Value, json};

use crate::support::{Event, Kind, Reply, Rig, assert_secure_cookie};

/// The example's handler: a visit counter, login and logout.
async fn counter(request: Request) -> Result<Response<Body>, Error> {
    let session = Sessions::of(&request);
    let path = edge_session_lambda::app_path(&request);
    let body = match (request.method().as_str(), path.as_str()) {
        ("GET", "/") => {
            let visits = session.get::<i64>("visits")?.unwrap_or(0) + 1;
            session.incr("visits", 1)?;
            json!({ "user": session.user(), "visits": visits, "id": session.id() })
        }
        ("POST", "/login") => {
            session.login("ivy");
            session.set("theme", "dark")?;
            json!({ "signed_in": "ivy" })
        }
        ("POST", "/logout") => {
            session.logout(Logout::Current);
            json!({ "signed_out": true })
        }
        ("POST", "/fail") => {
            session.set("never", &1)?;
            return Err("the handler failed".into());
        }
        _ => {
            return Ok(Response::builder()
                .status(404)
                .body(Body::from("not found"))?);
        }
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("set-cookie", "seen=1; Path=/")
        .body(Body::from(body.to_string()))?)
}

async fn store(rig: &Rig) -> Arc<SessionStore<AnyBackend>> {
    let client = edge_session_lambda::http_client().unwrap();
    Arc::new(edge_session_lambda::store(&rig.env, &client).await.unwrap())
}

/// Calls the wrapped service with the event, through lambda_http's own
/// adapter (what `lambda_http::run` does), and returns the JSON API Gateway
/// receives.
async fn invoke<S>(service: S, event: &Event) -> Reply
where
    S: Service<Request, Response = SessionResponse<Response<Body>>, Error = Error>,
    S::Future: Send + 'static,
{
    let payload: LambdaRequest = serde_json::from_str(&event.text()).unwrap();
    let mut adapter = lambda_http::Adapter::from(service);
    std::future::poll_fn(|cx| adapter.poll_ready(cx))
        .await
        .unwrap();
    let response = adapter
        .call(LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap();
    Reply::new(event.kind, serde_json::to_value(response).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_login_logout_through_lambda_http() {
    let rig = Rig::start().await;
    let store = store(&rig).await;
    let service = with_sessions(Arc::clone(&store), service_fn(counter));

    // No cookie: visit 1, a new anonymous session, one cookie besides the handler's.
    let first = invoke(service.clone(), &Event::http().path("/")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.body()["visits"], json!(1));
    assert_eq!(first.body()["id"], Value::Null);
    let cookies = first.set_cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert_eq!(cookies[0], "seen=1; Path=/");
    assert_secure_cookie(&cookies[1]);
    let cookie = first.cookie();

    // The cookie comes back in the REST API's Cookie header: visit 2.
    let second = invoke(service.clone(), &Event::rest().path("/").cookie(&cookie)).await;
    assert_eq!(second.body()["visits"], json!(2));
    assert_eq!(second.body()["id"].as_str().map(str::len), Some(64));
    assert!(second.session_cookie().is_none(), "nothing new to set");
    assert_eq!(second.set_cookies(), ["seen=1; Path=/"]);

    // Login regenerates the session and keeps the data.
    let login = invoke(
        service.clone(),
        &Event::function_url()
            .method("POST")
            .path("/login")
            .cookie(&cookie),
    )
    .await;
    assert_eq!(login.status(), 200);
    let signed_in = login.cookie();
    assert_ne!(signed_in, cookie);
    let third = invoke(
        service.clone(),
        &Event::http_stage().path("/").cookie(&signed_in),
    )
    .await;
    assert_eq!(third.body()["visits"], json!(3));
    assert_eq!(third.body()["user"], json!("ivy"));
    let old = invoke(service.clone(), &Event::http().path("/").cookie(&cookie)).await;
    assert_eq!(old.body()["user"], Value::Null, "the old token is dead");

    // Logout clears the cookie; the session is gone.
    let logout = invoke(
        service.clone(),
        &Event::rest()
            .method("POST")
            .path("/logout")
            .cookie(&signed_in),
    )
    .await;
    assert!(logout.session_cookie().unwrap().contains("Max-Age=0"));
    assert!(store.devices("ivy").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_in_the_extensions_and_committed_after_the_handler() {
    let rig = Rig::start().await;
    let store = store(&rig).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let mut service = with_sessions(
        store,
        service_fn(move |request: Request| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let session = request
                    .extensions()
                    .get::<Sessions>()
                    .expect("with_sessions puts the session in the extensions")
                    .clone();
                session
                    .with(|s| s.changes().set("direct", &true).map(|_| ()))
                    .unwrap()?;
                Ok::<_, Error>("ok")
            }
        }),
    );
    // A lambda_http request parsed from the fixture, as in the brief's tests.
    let request = lambda_http::request::from_str(&Event::http().text()).unwrap();
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let response = service.call(request).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let set_cookie = response.set_cookie().unwrap().to_str().unwrap().to_owned();
    assert_secure_cookie(&set_cookie);
    let http = response.into_response().await;
    assert_eq!(http.headers().get_all("set-cookie").iter().count(), 1);
    assert!(matches!(http.body(), Body::Text(t) if t == "ok"));

    // Outside with_sessions the handle is detached: reads are empty, writes go nowhere.
    let bare = lambda_http::request::from_str(&Event::http().text()).unwrap();
    let detached = Sessions::of(&bare);
    assert_eq!(detached.get::<bool>("direct").unwrap(), None);
    assert!(detached.set("x", &1).is_ok());
    assert!(detached.with(|_| ()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_commit_nothing_and_outages_are_503() {
    let mut rig = Rig::with(&[
        ("SESSION_STORE_RETRIES", "0"),
        ("SESSION_STORE_TIMEOUT_MS", "1000"),
    ])
    .await;
    let store = store(&rig).await;
    let service = with_sessions(Arc::clone(&store), service_fn(counter)).with_retry_after(9);
    let first = invoke(service.clone(), &Event::http().path("/")).await;
    let cookie = first.cookie();
    let keys = rig.redis.key_count();

    // The handler fails: its error goes to the runtime; nothing is written.
    let payload: LambdaRequest = serde_json::from_str(
        &Event::http()
            .method("POST")
            .path("/fail")
            .cookie(&cookie)
            .text(),
    )
    .unwrap();
    let mut adapter = lambda_http::Adapter::from(service.clone());
    std::future::poll_fn(|cx| adapter.poll_ready(cx))
        .await
        .unwrap();
    let failed = adapter
        .call(LambdaEvent::new(payload, Context::default()))
        .await;
    assert!(failed.is_err());
    assert_eq!(rig.redis.key_count(), keys);
    let again = invoke(service.clone(), &Event::http().path("/").cookie(&cookie)).await;
    assert_eq!(again.body()["visits"], json!(2));

    // The store is down: 503 with Retry-After, before the handler runs.
    rig.redis.stop();
    for event in [Event::http(), Event::rest()] {
        let kind = event.kind;
        let reply = invoke(service.clone(), &event.path("/").cookie(&cookie)).await;
        assert_eq!(reply.status(), 503, "{kind:?} {:?}", reply.json);
        assert_eq!(reply.body()["code"], json!("store_unavailable"));
        assert_eq!(reply.header("retry-after").as_deref(), Some("9"));
        if kind == Kind::Http {
            assert_eq!(reply.json["cookies"], json!([]));
        }
    }
}
