//! A DynamoDB Local that cannot start says why at once, with its output,
//! instead of waiting for a port that never opens.

use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn a_java_that_exits_is_reported_with_its_output() {
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("no-jar-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create a folder without the jar");
    // The only test of this binary: nothing else reads the variable.
    std::env::set_var("CREDITS_DYNAMODB_LOCAL_DIR", &empty);
    let started = Instant::now();
    let error = dynamodb_local::start(None).expect_err("no jar, no DynamoDB Local");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}: {error}", started.elapsed());
    assert!(error.contains("exited before listening"), "{error}");
    assert!(error.contains("DynamoDBLocal.jar"), "Java's own message is missing: {error}");
    std::fs::remove_dir_all(&empty).expect("remove the folder");
}
