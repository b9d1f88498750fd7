//! Request validation: every rule names the field it is about, so the
//! problem's `detail` can tell the caller what to fix, in their language.

use serde::de::DeserializeOwned;

/// A rejected field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The body is not JSON, or not a JSON object.
    Malformed,
    UnknownField,
    /// The same key twice in one object: which one counts would be a
    /// guess, and a ledger does not guess at amounts.
    Duplicate,
    Missing,
    /// Wrong JSON type or a value outside what the type can hold.
    WrongType,
    OutOfRange {
        min: u64,
        max: u64,
    },
    Length {
        min: usize,
        max: usize,
    },
    NotUuid,
    /// Not one of the allowed words.
    NotOneOf(&'static [&'static str]),
    /// Not a pack of the catalog that has a price (`GET /v1/prices`).
    NotAPack,
    /// Not an RFC 3339 date-time.
    NotDateTime,
    /// A date-time that has already passed.
    NotInFuture,
    /// A list longer than allowed.
    TooMany {
        max: usize,
    },
    /// Not a URL a webhook may be sent to: absolute `https` with a host that
    /// is not an address webhooks refuse, no credentials, at most
    /// [`MAX_URL`] characters; with `local_http`, loopback and plain `http`
    /// to this machine too (the dev server).
    NotWebhookUrl {
        local_http: bool,
    },
}

/// The longest webhook endpoint URL, in characters.
pub const MAX_URL: usize = 2048;

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.field, self.problem)
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    pub fn new(field: impl Into<String>, problem: Problem) -> Invalid {
        Invalid { field: field.into(), problem }
    }
}

/// Parses a JSON body into `T`, naming the offending field on failure.
/// An empty body reads as `{}` for requests whose fields are all optional.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Invalid> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        classify(&path, &inner)
    })?;
    de.end().map_err(|_| Invalid::new("body", Problem::Malformed))?;
    Ok(value)
}

fn classify(path: &str, err: &serde_json::Error) -> Invalid {
    use serde_json::error::Category;
    let message = err.to_string();
    let quoted = || message.split('`').nth(1).unwrap_or("").to_owned();
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => Invalid::new("body", Problem::Malformed),
        // For an unknown field the path already ends at the field.
        Category::Data if message.starts_with("unknown field") && path != "." => {
            Invalid::new(path, Problem::UnknownField)
        }
        Category::Data if message.starts_with("unknown field") => Invalid::new(quoted(), Problem::UnknownField),
        Category::Data if message.starts_with("duplicate field") => {
            Invalid::new(join(path, &quoted()), Problem::Duplicate)
        }
        Category::Data if message.starts_with("missing field") => Invalid::new(join(path, &quoted()), Problem::Missing),
        Category::Data if path == "." => Invalid::new("body", Problem::Malformed),
        Category::Data => Invalid::new(path, Problem::WrongType),
    }
}

/// For a missing field, serde_path_to_error's path points at the object
/// holding it; the field itself is only in the message.
fn join(path: &str, field: &str) -> String {
    if path == "." || path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

pub fn range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, Invalid> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(field, Problem::OutOfRange { min, max }))
    }
}

/// An RFC 3339 date-time with a time zone.
pub fn time(field: &str, raw: &str) -> Result<crate::domain::Timestamp, Invalid> {
    let at = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| Invalid::new(field, Problem::NotDateTime))?;
    Ok(crate::domain::Timestamp(at.timestamp_millis()))
}

/// An RFC 3339 date-time (with a time zone) after `now`.
pub fn future_time(field: &str, raw: &str, now: crate::domain::Timestamp) -> Result<crate::domain::Timestamp, Invalid> {
    let at = time(field, raw)?;
    match at > now {
        true => Ok(at),
        false => Err(Invalid::new(field, Problem::NotInFuture)),
    }
}

/// A string of `min..=max` characters without control characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let len = value.chars().count();
    if len < min || len > max || value.chars().any(char::is_control) {
        return Err(Invalid::new(field, Problem::Length { min, max }));
    }
    Ok(())
}

pub fn optional_text(field: &str, value: &Option<String>, max: usize) -> Result<(), Invalid> {
    match value {
        Some(v) => text(field, v, 0, max),
        None => Ok(()),
    }
}

pub fn uuid(field: &str, raw: &str) -> Result<uuid::Uuid, Invalid> {
    // Only the canonical lower-case hyphenated form the service hands out.
    uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|id| id.hyphenated().to_string() == raw)
        .ok_or_else(|| Invalid::new(field, Problem::NotUuid))
}

/// A URL webhooks may be delivered to: an absolute `https://` URL with a
/// host and no user name or password (a credential in a URL ends up in
/// logs and answers), at most [`MAX_URL`] characters, no spaces or control
/// characters, whose host is not `localhost` nor an IP address webhooks may
/// not connect to (`address`). With `local_http` (the dev server)
/// loopback is allowed, and plain `http://` to `localhost`, `127.0.0.1` or
/// `[::1]`. It is parsed as the client that delivers will parse it
/// (`reqwest::Url`, the WHATWG parser), and the scheme must be written with
/// its `//`: the parser would also take `https:host` or `https:\\host`,
/// which are not what anyone means.
pub fn webhook_url(field: &str, raw: &str, local_http: bool) -> Result<(), Invalid> {
    let invalid = || Invalid::new(field, Problem::NotWebhookUrl { local_http });
    let printable = !raw.chars().any(|c| c.is_control() || c.is_whitespace());
    if raw.chars().count() > MAX_URL || !printable {
        return Err(invalid());
    }
    let scheme = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    if !scheme.starts_with("https://") && !scheme.starts_with("http://") {
        return Err(invalid());
    }
    let url = reqwest::Url::parse(raw).map_err(|_| invalid())?;
    // As written: the parser would read `https:///host` as `https://host`,
    // and `https://@host` as no user name at all; both refused all the same.
    let authority = raw.split(['/', '\\', '?', '#']).nth(2).unwrap_or("");
    if authority.is_empty() || authority.contains('@') || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid());
    }
    // The parser's own spelling: lower case, IPv4 in dotted decimal, IPv6
    // compressed in brackets.
    let host = url.host_str().unwrap_or("");
    let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    // Deployed, the function's own network is no target: `localhost`, or an
    // address written as such that webhooks would refuse to connect to
    // (`address`). A name is checked where it connects, at every
    // attempt. The dev server's receivers are on this machine: loopback.
    let named_local = host == "localhost" || host.ends_with(".localhost");
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok();
    let reachable = ip.is_none_or(|ip| crate::address::allowed(ip, local_http)) && (local_http || !named_local);
    match url.scheme() {
        "https" if !host.is_empty() && reachable => Ok(()),
        "http" if local_http && local => Ok(()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        operation: String,
        units: Option<u64>,
    }

    #[test]
    fn unknown_field_is_named() {
        let err = json_body::<Body>(br#"{"operation":"x","unitz":2}"#).unwrap_err();
        assert_eq!(err, Invalid::new("unitz", Problem::UnknownField));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = json_body::<Body>(br#"{"operation":"x","units":"two"}"#).unwrap_err();
        assert_eq!(err, Invalid::new("units", Problem::WrongType));
        let err = json_body::<Body>(br#"{"operation":"x","units":-1}"#).unwrap_err();
        assert_eq!(err, Invalid::new("units", Problem::WrongType));
    }

    #[test]
    fn duplicate_key_is_named() {
        let err = json_body::<Body>(br#"{"operation":"x","units":1,"units":2}"#).unwrap_err();
        assert_eq!(err, Invalid::new("units", Problem::Duplicate));
        let err = json_body::<Body>(br#"{"operation":"x","operation":"y"}"#).unwrap_err();
        assert_eq!(err, Invalid::new("operation", Problem::Duplicate));
    }

    #[test]
    fn missing_field_is_named() {
        let err = json_body::<Body>(br#"{"units":2}"#).unwrap_err();
        assert_eq!(err, Invalid::new("operation", Problem::Missing));
    }

    #[test]
    fn malformed_json_and_non_objects_are_malformed() {
        for body in [&b"{"[..], b"[]", b"42", br#"{"operation":"x"} trailing"#] {
            let err = json_body::<Body>(body).unwrap_err();
            assert_eq!(err.problem, Problem::Malformed, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn ranges_and_lengths() {
        assert!(range("units", 0, 1, 1000).is_err());
        assert!(range("units", 1000, 1, 1000).is_ok());
        assert!(text("description", &"é".repeat(500), 0, 500).is_ok());
        assert!(text("description", &"é".repeat(501), 0, 500).is_err());
    }

    #[test]
    fn webhook_urls() {
        for good in [
            "https://example.com",
            "https://example.com/hooks?x=1",
            "HTTPS://Example.COM:8443/a/b",
            "https://[2606:4700:4700::1111]/hook",
            "https://8.8.8.8/hook",
            "https://bücher.example/hook",
        ] {
            assert_eq!(webhook_url("url", good, false), Ok(()), "{good}");
        }
        let too_long = format!("https://example.com/{}", "a".repeat(MAX_URL - 19));
        assert_eq!(too_long.chars().count(), MAX_URL + 1);
        for bad in [
            "",
            "example.com",
            "/hooks",
            "//example.com/hooks",
            "ftp://example.com/hooks",
            "http://example.com/hooks",
            "http://localhost/hooks",
            "https:example.com",
            "https:\\\\example.com",
            "https://",
            "https:///hooks",
            "https:///example.com/hooks",
            "https://\\example.com/hooks",
            "https://user:pass@example.com/hooks",
            "https://user@example.com/hooks",
            "https://@example.com/hooks",
            "https://:pass@example.com/hooks",
            "https://exa mple.com",
            " https://example.com",
            "https://example.com/\n",
            "https://example.com:99999/",
            "javascript:alert(1)",
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.1.2.3/hook",
            "https://172.16.0.1/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            // Forms the address rules refuse that the old check let through.
            "https://[::7f00:1]/hook",
            "https://[64:ff9b::a9fe:a9fe]/hook",
            "https://[::ffff:a9fe:a9fe]/hook",
            "https://[fd00:ec2::254]/hook",
            "https://[2002:a9fe:a9fe::]/hook",
            "https://[2001:db8::1]/hook",
            "https://0xa9.0xfe.0xa9.0xfe/hook",
            "https://224.0.0.1/hook",
            "https://255.255.255.255/hook",
            too_long.as_str(),
        ] {
            assert_eq!(
                webhook_url("url", bad, false),
                Err(Invalid::new("url", Problem::NotWebhookUrl { local_http: false })),
                "{bad:?}"
            );
        }
        assert!(webhook_url("url", &too_long[..too_long.len() - 1], false).is_ok());
        // The dev server delivers to this machine, https or http.
        for local in ["https://127.0.0.1/hook", "http://127.0.0.1:8787/hook", "http://[::1]/hook", "http://localhost/h"]
        {
            assert_eq!(webhook_url("url", local, true), Ok(()), "{local}");
        }
    }

    #[test]
    fn local_http_only_to_this_machine() {
        for good in ["http://localhost:8080/hook", "http://127.0.0.1:9/", "http://[::1]:9/hook", "http://LOCALHOST/"] {
            assert_eq!(webhook_url("url", good, true), Ok(()), "{good}");
            assert!(webhook_url("url", good, false).is_err(), "{good}");
        }
        for bad in
            ["http://example.com/", "http://10.0.0.1/", "http://localhost.example.com/", "http://user:pw@localhost/"]
        {
            assert!(webhook_url("url", bad, true).is_err(), "{bad}");
        }
        assert!(webhook_url("url", "https://localhost/hook", true).is_ok());
        // The dev server's exception is loopback, not the rest of the inside.
        for bad in ["https://10.0.0.1/", "https://169.254.169.254/", "https://[::7f00:1]/", "https://[fd00::1]/"] {
            assert!(webhook_url("url", bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_problems_speak_three_languages() {
        use crate::http::problem::{detail, Lang};
        for problem in [
            Problem::NotWebhookUrl { local_http: false },
            Problem::NotWebhookUrl { local_http: true },
            Problem::TooMany { max: 12 },
        ] {
            let error = crate::error::Error::Validation(Invalid::new("url", problem.clone()));
            let [en, pt, es] = [Lang::En, Lang::Pt, Lang::Es].map(|lang| detail(&error, lang));
            assert!(en != pt && en != es && pt != es && en.contains("\"url\""), "{problem:?}");
        }
    }

    #[test]
    fn uuids_must_be_canonical() {
        assert!(uuid("id", "0b6e6a3e-58a1-4f52-9d0d-3c8a7c1f0a11").is_ok());
        assert!(uuid("id", "0B6E6A3E-58A1-4F52-9D0D-3C8A7C1F0A11").is_err());
        assert!(uuid("id", "not-a-uuid").is_err());
    }
}
