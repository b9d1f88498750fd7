//! CORS as API Gateway's HTTP API applies it when template.yaml's
//! `CorsConfiguration` is set (parameter `AllowedOrigins`): the gateway
//! answers a preflight itself (no route, authorizer or function runs) and
//! adds its headers to the answers to an allowed origin. The lists below are
//! the template's (a test compares them).

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::Method;

/// The dev server's list of allowed origins (deployed: `AllowedOrigins`).
pub const ORIGINS_VARIABLE: &str = "CREDITS_ALLOWED_ORIGINS";
/// The request headers the API reads.
pub const ALLOW_HEADERS: [&str; 5] =
    ["authorization", "content-type", "idempotency-key", "credits-user", "accept-language"];
/// The methods of the API's routes.
pub const ALLOW_METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
/// The response headers a browser client reads beyond the CORS-safelisted ones.
pub const EXPOSE_HEADERS: [&str; 2] = ["idempotent-replayed", "retry-after"];
/// How long a browser may reuse a preflight's answer, in seconds.
pub const MAX_AGE: u32 = 600;

/// The allowed origins: exact ones, or `*` for any. None: no CORS at all.
/// Credentials (cookies) are never allowed: the API reads a bearer token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Comma-separated origins (`scheme://host[:port]`) or `*`; blank: off.
    pub fn parse(value: &str) -> Result<Cors, String> {
        let mut origins = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry != "*" && !is_origin(entry) {
                return Err(format!(
                    "{ORIGINS_VARIABLE}: {entry:?} is not an origin (scheme://host[:port], no path, e.g. http://localhost:3001) nor *"
                ));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        Ok(Cors { origins })
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The answer to a preflight (204, these headers), or `None` when CORS
    /// is off or this is no preflight (it then goes to the routes as any
    /// request). An origin not allowed gets no CORS headers.
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Option<HeaderMap> {
        let preflight = method == Method::OPTIONS
            && request.contains_key(header::ORIGIN)
            && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if self.origins.is_empty() || !preflight {
            return None;
        }
        let mut out = HeaderMap::new();
        if self.add_origin(request.get(header::ORIGIN), &mut out) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list(&ALLOW_METHODS));
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list(&ALLOW_HEADERS));
            out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE));
        }
        Some(out)
    }

    /// Adds the CORS headers to the answer to a request from `origin`.
    pub fn answer(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if self.add_origin(origin, response) {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list(&EXPOSE_HEADERS));
        }
    }

    /// `Access-Control-Allow-Origin` and `Vary: Origin` when `origin` is allowed.
    fn add_origin(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) -> bool {
        let Some(origin) = origin else { return false };
        let allowed = if self.origins.iter().any(|o| o == "*") {
            HeaderValue::from_static("*")
        } else if origin.to_str().is_ok_and(|o| self.origins.contains(&o.to_ascii_lowercase())) {
            origin.clone()
        } else {
            return false;
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        out.append(header::VARY, HeaderValue::from_static("origin"));
        true
    }
}

fn list(items: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&items.join(",")).expect("constant header names")
}

/// `http(s)://host[:port]`: no path, query, user or trailing slash.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !rest.ends_with(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn origins_are_checked() {
        for good in [
            "http://localhost:3001",
            "https://app.example.com",
            "HTTPS://App.Example.com:8443",
            "http://[::1]:3000",
            "*",
        ] {
            assert!(Cors::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "localhost:3001",
            "http://localhost:3001/",
            "https://a.com/app",
            "ftp://a.com",
            "http://",
            "http://a.com:0",
            "http://a.com:x",
            "http://u@a.com",
            "null",
        ] {
            let error = Cors::parse(&format!("http://ok.com,{bad}")).expect_err(bad);
            assert!(error.starts_with(ORIGINS_VARIABLE) && error.contains(bad), "{error}");
        }
        assert_eq!(Cors::parse(" , ").expect("blank"), Cors::default());
        assert_eq!(
            Cors::parse("http://a.com, https://b.com").expect("two").origins(),
            ["http://a.com", "https://b.com"]
        );
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_with_the_lists() {
        let cors = Cors::parse("http://localhost:3001").expect("origins");
        let request = headers(&[("origin", "http://localhost:3001"), ("access-control-request-method", "GET")]);
        let out = cors.preflight(&Method::OPTIONS, &request).expect("a preflight");
        assert_eq!(out["access-control-allow-origin"], "http://localhost:3001");
        assert_eq!(out["access-control-allow-methods"], "GET,POST,PUT,DELETE");
        assert_eq!(
            out["access-control-allow-headers"],
            "authorization,content-type,idempotency-key,credits-user,accept-language"
        );
        assert_eq!(out["access-control-max-age"], "600");
        assert_eq!(out["vary"], "origin");

        let other = headers(&[("origin", "http://evil.example"), ("access-control-request-method", "GET")]);
        assert!(cors.preflight(&Method::OPTIONS, &other).expect("still answered").is_empty());
        // Not preflights: they go to the routes.
        let no_method = headers(&[("origin", "http://localhost:3001")]);
        assert!(cors.preflight(&Method::OPTIONS, &no_method).is_none());
        assert!(cors.preflight(&Method::GET, &request).is_none());
        assert!(Cors::default().preflight(&Method::OPTIONS, &request).is_none(), "CORS off");
    }

    #[test]
    fn answers_to_an_allowed_origin_carry_the_exposed_headers() {
        let cors = Cors::parse("http://localhost:3001").expect("origins");
        let mut out = HeaderMap::new();
        cors.answer(Some(&HeaderValue::from_static("http://localhost:3001")), &mut out);
        assert_eq!(out["access-control-allow-origin"], "http://localhost:3001");
        assert_eq!(out["access-control-expose-headers"], "idempotent-replayed,retry-after");
        assert_eq!(out["vary"], "origin");
        for (cors, origin) in [
            (cors.clone(), Some("http://localhost:3000")),
            (cors, None),
            (Cors::default(), Some("http://localhost:3001")),
        ] {
            let mut out = HeaderMap::new();
            cors.answer(origin.map(HeaderValue::from_static).as_ref(), &mut out);
            assert!(out.is_empty(), "{origin:?}: {out:?}");
        }
        let mut out = HeaderMap::new();
        Cors::parse("*").expect("any").answer(Some(&HeaderValue::from_static("https://x.example")), &mut out);
        assert_eq!(out["access-control-allow-origin"], "*");
        assert!(!out.contains_key("access-control-allow-credentials"));
    }
}
