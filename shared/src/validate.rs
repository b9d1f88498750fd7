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
    /// Not an RFC 3339 date-time.
    NotDateTime,
    /// A date-time that has already passed.
    NotInFuture,
}

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
    fn uuids_must_be_canonical() {
        assert!(uuid("id", "0b6e6a3e-58a1-4f52-9d0d-3c8a7c1f0a11").is_ok());
        assert!(uuid("id", "0B6E6A3E-58A1-4F52-9D0D-3C8A7C1F0A11").is_err());
        assert!(uuid("id", "not-a-uuid").is_err());
    }
}
