//! The operator dashboard in headless Chromium (Debian's package, installed
//! by `make`): it loads the monitoring data with an admin token and renders
//! the figures; a screenshot is kept as a test artefact.

use std::path::{Path, PathBuf};

use credits_shared::domain::Actor;
use credits_shared::monitoring::Monitor;
use credits_shared::stats::Period;
use credits_tests::{reserve_request, user, TestServer};

async fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempdir();
    let mut command = tokio::process::Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.args(args);
    let output = command.output().await.expect("chromium must be installed (make test installs Debian's chromium)");
    let _ = std::fs::remove_dir_all(profile);
    output
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("credits-chromium-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("profile dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_renders_the_monitoring_figures() {
    let server = TestServer::start().await;
    let env = &server.env;
    let mut spenders = Vec::new();
    for (i, name) in ["dora", "enzo", "fay"].iter().enumerate() {
        let u = user(name);
        env.grant(&u, 200).await;
        for _ in 0..=i {
            let hold = env.ledger.reserve(&u, reserve_request("design_generate_image", 2)).await.expect("r");
            env.ledger.confirm(Some(&u), hold.into_inner().reservation_id, None, Actor::Server).await.expect("c");
        }
        let failed = env.ledger.reserve(&u, reserve_request("design_generate_logo", 1)).await.expect("r");
        env.ledger.release(Some(&u), failed.into_inner().reservation_id, Actor::Server).await.expect("release");
        spenders.push(u);
    }
    env.aggregate().await;
    let monitor = Monitor::new(env.store.clone());
    let totals = monitor.totals(&credits_shared::stats::buckets(env.ledger.now())[1]).await.expect("totals");
    assert_eq!((totals.confirmed, totals.released), (6, 3));

    let admin = server.admin_token();
    let url = format!("{}/v1/admin/dashboard#token={admin}&period=day", server.base);
    let dom = chromium(&["--dump-dom".into(), url.clone()]).await;
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains(r#"data-loaded="true""#),
        "the page did not load its data: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for (name, value) in [
        ("holdsPlaced", totals.holds_placed),
        ("confirmed", totals.confirmed),
        ("released", totals.released),
        ("creditsCaptured", totals.credits_captured),
        ("creditsGranted", totals.credits_granted),
        ("creditsExpired", totals.credits_expired),
        ("creditsDebited", totals.credits_debited),
    ] {
        let cell = format!(r#"data-figure="{name}">{value}<"#);
        assert!(html.contains(&cell), "{cell} not rendered");
    }
    for u in &spenders {
        assert!(html.contains(&format!(r#"data-user="{u}""#)), "top user {u} not listed");
    }
    let top = monitor.top_users(Period::Day, env.ledger.now(), 10).await.expect("top");
    assert_eq!(top[0].user_id, spenders[2].as_str(), "fay spent most");
    assert!(html.contains(r#"data-operation="design_generate_image""#));
    assert!(html.contains(r#"data-check="inconsistent_balances""#));
    assert!(html.contains("<rect data-bucket="), "the usage chart has bars");

    // The screenshot, kept for people to look at.
    let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefacts dir");
    let shot = artefacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let taken = chromium(&[format!("--screenshot={}", shot.display()), "--window-size=1400,1000".into(), url]).await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot missing or empty: {}", String::from_utf8_lossy(&taken.stderr));

    // Without a token the page shows no data.
    let bare = chromium(&["--dump-dom".into(), format!("{}/v1/admin/dashboard", server.base)]).await;
    let bare = String::from_utf8_lossy(&bare.stdout);
    assert!(!bare.contains(r#"data-loaded="true""#));
    assert!(!bare.contains(spenders[0].as_str()));
}
