//! A configured secret (or allowed origin) that cannot be used stops the dev
//! server and the functions at start-up with a message naming its variable
//! (never the value), instead of a server that silently refuses every
//! delivery; so does a Stripe secret without the mode its events must be of.

use std::process::Command;

use credits_shared::config::Config;

const UNUSABLE: [(&str, &str); 8] = [
    ("CREDITS_WEBHOOK_SECRET_GENERIC", "whsec_c2VjcmV0,whsec_not*base64!"),
    ("CREDITS_WEBHOOK_SECRET_GENERIC", "whsec_c2VjcmV0,"),
    ("CREDITS_WEBHOOK_SECRET_BFL", "bfl-secret-a,,bfl-secret-b"),
    ("CREDITS_DEV_JWT_SECRET", "   "),
    // Browser origins (CORS) are `scheme://host[:port]`, nothing more.
    ("CREDITS_ALLOWED_ORIGINS", "localhost:3001"),
    ("CREDITS_ALLOWED_ORIGINS", "http://localhost:3001/"),
    ("CREDITS_ALLOWED_ORIGINS", "https://app.example.com/app"),
    ("CREDITS_ALLOWED_ORIGINS", "http://a.com,ftp://b.com"),
];

#[tokio::test]
async fn an_unusable_secret_stops_start_up_naming_its_variable() {
    let data = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("startup-data");
    for (variable, value) in UNUSABLE {
        let out = Command::new(credits_tests::credits_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("DYNAMODB_ENDPOINT")
            .env_remove("CREDITS_WEBHOOK_SECRET_GENERIC")
            .env_remove("CREDITS_WEBHOOK_SECRET_BFL")
            .env_remove("CREDITS_ALLOWED_ORIGINS")
            .env_remove("CREDITS_STRIPE_WEBHOOK_SECRET")
            .env_remove("CREDITS_STRIPE_LIVEMODE")
            .env(variable, value)
            .output()
            .expect("run credits serve");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{variable}={value:?} started: {said}");
        assert!(said.contains(variable), "{variable}: {said}");
        assert!(!said.contains("not*base64") && !said.contains("bfl-secret"), "the value leaked: {said}");
        assert!(!said.contains("DynamoDB Local on"), "refused before starting anything: {said}");
    }

    // A Stripe secret needs the mode its events must be of: which one is never guessed.
    for livemode in [None, Some(""), Some("live")] {
        let mut command = Command::new(credits_tests::credits_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("DYNAMODB_ENDPOINT")
            .env_remove("CREDITS_STRIPE_LIVEMODE")
            .env("CREDITS_STRIPE_WEBHOOK_SECRET", "whsec_mine");
        if let Some(value) = livemode {
            command.env("CREDITS_STRIPE_LIVEMODE", value);
        }
        let out = command.output().expect("run credits serve");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "CREDITS_STRIPE_LIVEMODE={livemode:?} started: {said}");
        assert!(said.contains("CREDITS_STRIPE_LIVEMODE") && !said.contains("whsec_mine"), "{livemode:?}: {said}");
        assert!(!said.contains("DynamoDB Local on"), "refused before starting anything: {said}");
    }

    // So does the stack: a rule refuses a deploy with Stripe secrets and no mode.
    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml"),
    )
    .expect("yaml");
    let rule = format!("{:?}", template["Rules"]["StripeLivemodeWithStripeSecrets"]);
    assert!(rule.contains("StripeWebhookSecrets") && rule.contains("StripeLivemode"), "{rule}");
    assert!(template["Parameters"]["StripeLivemode"]["AllowedValues"].as_sequence().is_some_and(|v| v.len() == 3));

    // The default development secret is public: not on a reachable address.
    let out = Command::new(credits_tests::credits_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("DYNAMODB_ENDPOINT")
        .env_remove("CREDITS_DEV_JWT_SECRET")
        .output()
        .expect("run credits serve");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("CREDITS_DEV_JWT_SECRET"), "{said}");
    // So are the local webhook secrets `make run` shares with `make demo`.
    let makefile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Makefile")).expect("Makefile");
    // `make run` shares a Stripe secret with the demo, whose stand-in sends test-mode events.
    assert!(makefile.contains("run: export CREDITS_STRIPE_LIVEMODE ?= false"), "make run names no Stripe mode");
    for (variable, public) in credits_cli::token::LOCAL_WEBHOOK_SECRETS {
        assert!(
            makefile.contains(&format!("export {variable} ?= {public}")),
            "the Makefile's {variable} is not {public}"
        );
        let out = Command::new(credits_tests::credits_bin())
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(&data)
            .env_remove("DYNAMODB_ENDPOINT")
            .env("CREDITS_DEV_JWT_SECRET", "a-secret-of-mine")
            .env(variable, format!("whsec_mine,{public}"))
            .output()
            .expect("run credits serve");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains(&format!("make run's local {variable}")), "{variable}: {said}");
        assert!(!said.contains("DynamoDB Local on"), "refused before starting anything: {said}");
    }
    let help = Command::new(credits_tests::credits_bin())
        .args(["serve", "--help"])
        .env("CREDITS_DEV_JWT_SECRET", "a-secret-of-mine")
        .output()
        .expect("credits serve --help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("a-secret-of-mine"), "help shows the secret");

    // The functions build their configuration the same way (`run_function`
    // returns this error before serving). This binary's only test sets it.
    std::env::set_var("CREDITS_WEBHOOK_SECRET_GENERIC", "whsec_%%%");
    let refused = Config::from_env().app().await.expect_err("an unusable secret");
    assert!(refused.to_string().starts_with("CREDITS_WEBHOOK_SECRET_GENERIC"), "{refused}");
    std::env::set_var("CREDITS_WEBHOOK_SECRET_GENERIC", "whsec_c2VjcmV0");
    assert!(Config::from_env().app().await.is_ok());
    std::env::remove_var("CREDITS_STRIPE_LIVEMODE");
    std::env::set_var("CREDITS_STRIPE_WEBHOOK_SECRET", "whsec_mine");
    let refused = Config::from_env().app().await.expect_err("a Stripe secret without a mode");
    assert!(refused.to_string().starts_with("CREDITS_STRIPE_LIVEMODE"), "{refused}");
    std::env::set_var("CREDITS_STRIPE_LIVEMODE", "true");
    assert!(Config::from_env().app().await.is_ok());
    // Stripe's API key (to save cards): a restricted or secret key, never echoed.
    std::env::set_var("CREDITS_STRIPE_API_KEY", "pk_live_published_by_mistake");
    let refused = Config::from_env().app().await.expect_err("a publishable key");
    assert!(refused.to_string().starts_with("CREDITS_STRIPE_API_KEY"), "{refused}");
    assert!(!refused.to_string().contains("pk_live_published_by_mistake"), "{refused}");
    std::env::set_var("CREDITS_STRIPE_API_KEY", "rk_live_mine");
    std::env::set_var("CREDITS_STRIPE_API_BASE", "http://stripe.example.com");
    let refused = Config::from_env().app().await.expect_err("plain http to another host");
    assert!(refused.to_string().starts_with("CREDITS_STRIPE_API_BASE"), "{refused}");
    std::env::remove_var("CREDITS_STRIPE_API_BASE");
    assert!(Config::from_env().app().await.is_ok());
}
