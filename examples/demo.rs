//! A walk through the library against the stack `scripts/dev` starts:
//! a visitor stores a cart, signs in (the session is regenerated), opens a
//! second device, lists devices, and logs out everywhere.
//!
//! ```sh
//! scripts/dev            # in one terminal
//! source .dev/env && cargo run --example demo
//! ```

#![allow(clippy::print_stdout)]

use edge_session::{Changes, ClientInfo, Logout, SessionStore, Settings};

fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

#[tokio::main]
async fn main() -> edge_session::Result<()> {
    let settings = Settings::from_env()?;
    println!("backend: {:?}", settings.backend);
    let backend = settings.backend.connect().await?;
    let store = SessionStore::new(backend, settings.session, settings.keys)?;

    // 1. An anonymous visitor puts something in the cart: a session is created.
    let laptop = ClientInfo::with_user_agent(Some("demo laptop"));
    let mut request = store.begin(None, laptop.clone()).await?;
    request.changes().set("cart", &["book"])?;
    let commit = store.commit(request).await?;
    let cookie = cookie_of(commit.set_cookie.as_deref().unwrap_or_default());
    println!(
        "1. cart stored, Set-Cookie issued for session {:?}",
        commit.handle
    );

    // 2. The visitor signs in: new token, same data, old cookie dead.
    let mut request = store.begin(Some(&cookie), laptop.clone()).await?;
    request.login("demo-user");
    let commit = store.commit(request).await?;
    let signed_in = cookie_of(commit.set_cookie.as_deref().unwrap_or_default());
    let old = store.begin(Some(&cookie), laptop.clone()).await?;
    println!(
        "2. signed in as {:?}; the pre-login cookie now reads as anonymous: {}",
        commit.user,
        old.session().is_none()
    );

    // 3. A counter, incremented atomically in Redis.
    let mut request = store.begin(Some(&signed_in), laptop.clone()).await?;
    request.changes().incr("visits", 1)?;
    let commit = store.commit(request).await?;
    println!("3. visits = {:?}", commit.applied.map(|a| a.increments));

    // 4. A second device signs in; list the devices.
    let (_phone, _) = store
        .login(
            None,
            "demo-user",
            &Changes::new(),
            &ClientInfo::with_user_agent(Some("demo phone")),
        )
        .await?;
    for device in store.devices("demo-user").await? {
        println!(
            "4. device {} ({}), expires at {} ms",
            &device.handle.as_str()[..12],
            device.user_agent.as_deref().unwrap_or("?"),
            device.expires.as_millis()
        );
    }

    // 5. Log out everywhere from the laptop.
    let mut request = store.begin(Some(&signed_in), laptop).await?;
    let cart: Option<Vec<String>> = request.get("cart")?;
    println!("5. cart before logout: {cart:?}");
    request.logout(Logout::All);
    let commit = store.commit(request).await?;
    println!(
        "5. logged out everywhere: {} sessions destroyed, devices left: {}",
        commit.destroyed,
        store.devices("demo-user").await?.len()
    );
    Ok(())
}
