//! `make run` passes its data folder relative to the working folder
//! (`.data`); DynamoDB Local runs inside that folder, so it must be given
//! the folder's absolute path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};

/// `to` relative to `from` (both absolute): `..` up to what they share.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<Component>, Vec<Component>) = (from.components().collect(), to.components().collect());
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = from[shared..].iter().map(|_| Component::ParentDir).collect();
    path.extend(&to[shared..]);
    path
}

/// A DynamoDB JSON request over plain HTTP (DynamoDB Local wants a SigV4
/// header with an access key, not a valid signature).
fn call(endpoint: &str, action: &str, body: &str) -> String {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDB_20120810.{action}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
}

#[test]
fn a_relative_data_dir_keeps_its_tables_across_a_restart() {
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("relative-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let relative = relative(&std::env::current_dir().expect("working folder"), &data);
    assert!(relative.is_relative(), "{}", relative.display());

    let local = dynamodb_local::start(Some(&relative)).unwrap_or_else(|e| panic!("{e}"));
    let table = r#"{"TableName":"kept","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],
        "AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#;
    let created = call(&local.endpoint, "CreateTable", table);
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    local.stop();

    let local = dynamodb_local::start(Some(&relative)).unwrap_or_else(|e| panic!("{e}"));
    let listed = call(&local.endpoint, "ListTables", "{}");
    local.stop();
    assert!(listed.contains(r#""TableNames":["kept"]"#), "{listed}");
    assert!(data.join("shared-local-instance.db").is_file(), "no database file in {}", data.display());
    std::fs::remove_dir_all(&data).expect("remove the data folder");
}
