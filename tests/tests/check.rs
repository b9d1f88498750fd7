//! `credits check` against DynamoDB Local: clean books exit 0; a balance
//! corrupted on purpose is named and exits non-zero.

use credits_shared::domain::{Actor, Attribution};
use credits_shared::store::{key, n};
use credits_tests::{reserve_request, user, TestEnv};

async fn some_activity(env: &TestEnv) -> Vec<credits_shared::domain::UserId> {
    let users = vec![user("clean"), user("victim")];
    for (i, u) in users.iter().enumerate() {
        env.grant(u, 100).await;
        let a = env.ledger.reserve(u, reserve_request("design_generate_image", 4)).await.expect("r").into_inner();
        env.ledger.confirm(Some(u), a.reservation_id, Some(3), Actor::Server).await.expect("confirm");
        let b = env.ledger.reserve(u, reserve_request("design_generate_logo", 1)).await.expect("r").into_inner();
        env.ledger.release(Some(u), b.reservation_id, Actor::Server).await.expect("release");
        env.ledger.reserve(u, reserve_request("design_trends", 2)).await.expect("pending");
        if i == 0 {
            env.ledger
                .refund(a.reservation_id, &Attribution { actor: "ops".into(), reason: None })
                .await
                .expect("refund");
            // Captured along the way: one hold still pending, one released after.
            for close in [false, true] {
                let c = env.ledger.reserve(u, reserve_request("design_generate_icon", 3)).await.expect("r");
                let id = c.into_inner().reservation_id;
                env.ledger.capture(Some(u), id, 1, "out-1", Actor::Server).await.expect("capture");
                if close {
                    env.ledger.release(Some(u), id, Actor::Server).await.expect("release");
                }
            }
        }
    }
    users
}

#[tokio::test]
async fn clean_books_pass_and_list_charged_prices() {
    let env = TestEnv::new().await;
    some_activity(&env).await;
    let report = credits_cli::check::run(&env.store, env.ledger.catalog(), false).await.expect("check");
    assert_eq!(report.drifts, vec![], "{}", report.render());
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.users, 2);
    let image = report.prices.iter().find(|p| p.operation == "design_generate_image").expect("charged");
    assert_eq!((image.unit_cost, image.holds, image.catalog), (5, 2, Some(5)));
    assert!(report.render().contains("every balance adds up"));
}

#[tokio::test]
async fn a_corrupted_balance_is_named_and_fails_the_check() {
    let env = TestEnv::new().await;
    let users = some_activity(&env).await;
    let victim = &users[1];
    corrupt(&env, victim, "SET spent = spent + :two, granted = granted + :two").await;
    let report = credits_cli::check::run(&env.store, env.ledger.catalog(), false).await.expect("check");
    assert_eq!(report.exit_code(), 1);
    assert!(report.drifts.iter().all(|d| d.user == victim.as_str()), "{}", report.render());
    let text = report.render();
    assert!(text.contains(victim.as_str()) && text.contains("spent 17"), "{text}");
    assert!(text.contains("granted 102"), "{text}");
}

/// The real binary, as an operator runs it.
#[tokio::test]
async fn the_credits_binary_exits_non_zero_on_drift() {
    let env = TestEnv::new().await;
    let users = some_activity(&env).await;
    // `make test` builds the binary first and names it; otherwise build it here.
    let binary = credits_tests::credits_bin();
    let run = || {
        std::process::Command::new(&binary)
            .args(["check", "--quiet"])
            .env("DYNAMODB_ENDPOINT", credits_tests::endpoint())
            .env("CREDITS_TABLE", env.store.table())
            .output()
            .expect("run credits check")
    };
    let clean = run();
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key(format!("USER#{}", users[0]), "BALANCE")))
        .update_expression("SET available = available + :one")
        .expression_attribute_values(":one", n(1))
        .send()
        .await
        .expect("corrupt");
    let drifted = run();
    let out = String::from_utf8_lossy(&drifted.stdout);
    assert_eq!(drifted.status.code(), Some(1), "{out}");
    assert!(out.contains(users[0].as_str()), "{out}");
}

#[tokio::test]
async fn a_price_change_applies_to_new_holds_only_and_check_shows_old_prices() {
    let env = TestEnv::new().await;
    let u = user("pricey");
    env.grant(&u, 100).await;
    let before = env.ledger.reserve(&u, reserve_request("design_generate_image", 1)).await.expect("r").into_inner();
    let current = env.ledger.prices().await.expect("prices");
    let previous = credits_shared::prices::set_price(
        &env.store,
        &current,
        "design_generate_image",
        credits_shared::domain::Credits(7),
        &credits_shared::domain::Attribution { actor: "test".into(), reason: Some("cost went up".into()) },
        env.ledger.now(),
    )
    .await
    .expect("set price");
    assert_eq!(previous, Some(credits_shared::domain::Credits(5)));
    let after = env.ledger.reserve(&u, reserve_request("design_generate_image", 1)).await.expect("r").into_inner();
    assert_eq!((before.unit_cost.get(), after.unit_cost.get()), (5, 7));
    // The hold placed before keeps its price when confirmed.
    let confirmed = env.ledger.confirm(Some(&u), before.reservation_id, None, Actor::Server).await.expect("confirm");
    assert_eq!(confirmed.captured_amount.get(), 5);
    assert_eq!(env.ledger.prices().await.expect("prices").unit_cost("design_generate_image").map(|c| c.get()), Some(7));

    let prices = env.ledger.prices().await.expect("prices");
    let report = credits_cli::check::run(&env.store, &prices, false).await.expect("check");
    assert_eq!(report.exit_code(), 0, "{}", report.render());
    assert!(report.render().contains("old price (today 7)"), "{}", report.render());
    // The change is recorded.
    let changes = env
        .store
        .client()
        .query()
        .table_name(env.store.table())
        .key_condition_expression("pk = :pk AND begins_with(sk, :change)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S("CATALOG".into()))
        .expression_attribute_values(":change", aws_sdk_dynamodb::types::AttributeValue::S("CHANGE#".into()))
        .send()
        .await
        .expect("query");
    assert_eq!(changes.count, 1);
    env.assert_books_balance().await;
}

#[tokio::test]
async fn an_open_hold_count_that_drifts_is_named() {
    let env = TestEnv::new().await;
    let users = some_activity(&env).await;
    let victim = &users[0];
    corrupt(&env, victim, "SET openHolds = openHolds + :two").await;
    let report = credits_cli::check::run(&env.store, env.ledger.catalog(), false).await.expect("check");
    assert_eq!(report.exit_code(), 1);
    let text = report.render();
    assert!(text.contains(victim.as_str()) && text.contains("openHolds"), "{text}");
}

/// Changes a balance behind the ledger's back (`:two` is 2).
async fn corrupt(env: &TestEnv, victim: &credits_shared::domain::UserId, expression: &str) {
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key(format!("USER#{victim}"), "BALANCE")))
        .update_expression(expression)
        .expression_attribute_values(":two", n(2))
        .send()
        .await
        .expect("corrupt");
}

#[tokio::test]
async fn a_lot_that_drifts_from_its_history_is_named() {
    let env = TestEnv::new().await;
    let u = user("lots");
    let request = credits_shared::ledger::GrantRequest {
        expires_at: Some(env.ledger.now().plus_seconds(86_400)),
        ..credits_shared::ledger::GrantRequest::new(10, credits_shared::domain::GrantReason::Promo, "promo-1", "ops")
    };
    env.ledger.grant(&u, request).await.expect("grant");
    env.grant(&u, 20).await;
    env.ledger.reserve(&u, reserve_request("design_generate_image", 3)).await.expect("hold");
    let clean = credits_cli::check::run(&env.store, env.ledger.catalog(), false).await.expect("check");
    assert_eq!(clean.drifts, vec![], "{}", clean.render());
    // Credits moved from the promo lot to the base lot behind the ledger's
    // back: every total still adds up, only the lots tell.
    let at = env.ledger.now().plus_seconds(86_400).millis();
    let promo = format!("lot#10#{at}#held");
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key(format!("USER#{u}"), "BALANCE")))
        .update_expression("SET #promo = #promo - :two, reserved = reserved + :two")
        .expression_attribute_names("#promo", promo)
        .expression_attribute_values(":two", n(2))
        .send()
        .await
        .expect("corrupt");
    let report = credits_cli::check::run(&env.store, env.ledger.catalog(), false).await.expect("check");
    assert_eq!(report.exit_code(), 1);
    let text = report.render();
    assert!(text.contains(&format!("lot 10#{at}")) && text.contains("lot 50#never"), "{text}");
}

/// `credits grant`, `debit` and `plan` as an operator runs them.
#[tokio::test]
async fn the_operator_commands_grant_into_lots_debit_and_set_plans() {
    let env = TestEnv::new().await;
    let u = user("operated");
    let binary = credits_tests::credits_bin();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&binary)
            .args(args)
            .env("DYNAMODB_ENDPOINT", credits_tests::endpoint())
            .env("CREDITS_TABLE", env.store.table())
            .output()
            .expect("run credits");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let soon = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let (code, out, err) = run(&[
        "grant",
        "--user",
        u.as_str(),
        "--amount",
        "10",
        "--reason",
        "signup",
        "--key",
        "s1",
        "--expires-at",
        &soon,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    run(&["grant", "--user", u.as_str(), "--amount", "100", "--reason", "purchase", "--key", "p1"]);
    let (code, out, err) =
        run(&["debit", "--user", u.as_str(), "--amount", "15", "--reason", "chargeback", "--key", "d1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let debit: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((debit["amount"].as_u64(), debit["lots"][0]["priority"].as_u64()), (Some(15), Some(10)));
    let (code, _, err) =
        run(&["debit", "--user", u.as_str(), "--amount", "15", "--reason", "chargeback", "--key", "d1"]);
    assert!(code == Some(0) && err.contains("replay"), "{err}");
    let (code, _, err) = run(&["debit", "--user", u.as_str(), "--amount", "500", "--reason", "refund", "--key", "d2"]);
    assert!(code == Some(1) && err.contains("insufficient"), "{err}");
    let (code, out, err) = run(&[
        "plan",
        "set",
        "--user",
        u.as_str(),
        "--plan",
        "pro",
        "--allowance",
        "30",
        "--period",
        "month",
        "--rollover",
        "5",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let balance: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((balance["plan"]["plan"].as_str(), balance["available"].as_u64()), (Some("pro"), Some(125)));
    let (code, out, _) = run(&["plan", "end", "--user", u.as_str()]);
    let ended: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(code == Some(0) && ended["plan"]["endsAt"].is_string(), "{out}");
    let (code, _, err) =
        run(&["plan", "set", "--user", u.as_str(), "--plan", "pro", "--allowance", "30", "--period", "fortnight"]);
    assert!(code == Some(1) && err.contains("--period"), "{err}");
    env.assert_books_balance().await;
}
