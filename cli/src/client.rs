//! HTTP to keel-hostd: TLS (pinned or WebPKI), authentication, URLs, and turning failures into
//! messages that say what failed and what to do.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use keel_api::auth::{LoginRequest, LoginResponse, CSRF_HEADER, TICKET_COOKIE, TOKEN_SCHEME};
use keel_api::ErrorBody;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::tls::{self, SeenSlot};

/// Ordinary API calls; uploads have no overall timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// An error the API answered with (`{"error":{"code","message","field"?}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field: {field})")?;
        }
        Ok(())
    }
}

impl StdError for ApiError {}

impl ApiError {
    /// Build from a non-success response body.
    pub fn from_body(status: StatusCode, url: &Url, body: &str) -> ApiError {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(b) => ApiError {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message,
                field: b.error.field,
            },
            Err(_) => {
                let snippet: String = body.trim().chars().take(200).collect();
                ApiError {
                    status: status.as_u16(),
                    code: "http".into(),
                    message: if snippet.is_empty() {
                        format!("{} {status}", url_for_humans(url))
                    } else {
                        format!("{} {status}: {snippet}", url_for_humans(url))
                    },
                    field: None,
                }
            }
        }
    }
}

enum Auth {
    Token(String),
    Ticket { ticket: String, csrf: String },
    None,
}

enum Pinning {
    Pinned { seen: SeenSlot, expected: String },
    WebPki,
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    pinning: Pinning,
    node_flag: Option<String>,
    node: tokio::sync::OnceCell<String>,
}

/// The URL without query, for messages.
fn url_for_humans(u: &Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    u.to_string()
}

/// `a: b: c` from an error and its sources, skipping repeats (std's io::Error hides its
/// inner error from `source()`, so look inside those too).
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `<base>/api/v1/<segments…>?<query>`, each segment percent-encoded.
pub fn api_url(base: &Url, segs: &[&str], query: &[(&str, String)]) -> Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().extend(["api", "v1"]).extend(segs);
    }
    if !query.is_empty() {
        u.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    u
}

/// The rustls error somewhere in an error's chain (tokio-rustls and hyper nest it in
/// `io::Error`s, whose `source()` skips the wrapped error, so descend into those by hand).
fn find_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        let inner: &(dyn StdError + 'static) = inner;
        if let Some(r) = find_rustls_error(inner) {
            return Some(r);
        }
    }
    e.source().and_then(find_rustls_error)
}

/// Why a request failed, without reqwest's and hyper's wrappers (the URL is said elsewhere).
fn transport_reason(e: &reqwest::Error) -> String {
    if let Some(r) = find_rustls_error(e) {
        return r.to_string();
    }
    let chain = match e.source() {
        Some(s) => error_chain(s),
        None => e.to_string(),
    };
    let parts: Vec<&str> = chain
        .split(": ")
        .filter(|p| !p.starts_with("client error ("))
        .collect();
    if parts.is_empty() {
        chain
    } else {
        parts.join(": ")
    }
}

fn build_http(pinned: Option<rustls::ClientConfig>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("keel-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(cfg) = pinned {
        b = b.use_preconfigured_tls(cfg);
    }
    b.build().context("cannot set up the HTTP client")
}

impl Client {
    /// Set up TLS and log in (or use the API token).
    pub async fn connect(s: &Settings) -> Result<Client> {
        let base = Url::parse(&s.url).with_context(|| format!("invalid URL {:?}", s.url))?;
        let (http, pinning) = match &s.fingerprint {
            Some(fp) => {
                let want = tls::parse_fingerprint(fp).map_err(|e| anyhow!("--fingerprint: {e}"))?;
                let (cfg, seen) = tls::pinned_config(Some(want)).map_err(|e| anyhow!(e))?;
                (
                    build_http(Some(cfg))?,
                    Pinning::Pinned {
                        seen,
                        expected: tls::format_fingerprint(&want),
                    },
                )
            }
            None => (build_http(None)?, Pinning::WebPki),
        };
        let mut c = Client {
            http,
            base,
            auth: Auth::None,
            pinning,
            node_flag: s.node.clone(),
            node: tokio::sync::OnceCell::new(),
        };
        if let Some(t) = &s.token {
            let t = t.trim();
            let t = t.strip_prefix(TOKEN_SCHEME).map(str::trim).unwrap_or(t);
            if !t.contains('!') || !t.contains('=') {
                bail!("--token must look like user!tokenid=secret (as printed by `keel token create`)");
            }
            c.auth = Auth::Token(t.to_string());
        } else if let Some(pw) = &s.password {
            let req = LoginRequest {
                username: s.user.clone(),
                password: pw.clone(),
            };
            let r: LoginResponse = c
                .call(Method::POST, &["access", "ticket"], &[], Some(&req))
                .await
                .and_then(typed)?;
            c.auth = Auth::Ticket {
                ticket: r.ticket,
                csrf: r.csrf_token,
            };
        } else {
            bail!(
                "no credentials: pass --token user!tokenid=secret (or KEEL_TOKEN), or --password \
                 (or KEEL_PASSWORD) for user {:?}; both can also go into ~/.config/keel/cli.toml",
                s.user
            );
        }
        Ok(c)
    }

    /// End a password session (best effort: tickets expire anyway).
    pub async fn logout(&self) {
        if let Auth::Ticket { .. } = self.auth {
            let url = self.url(&["access", "ticket"], &[]);
            let rb = self
                .authed(self.http.request(Method::DELETE, url), true)
                .timeout(Duration::from_secs(5));
            let _ = rb.send().await;
        }
    }

    /// `<base>/api/v1/<segments…>?<query>`, each segment percent-encoded.
    pub fn url(&self, segs: &[&str], query: &[(&str, String)]) -> Url {
        api_url(&self.base, segs, query)
    }

    fn authed(&self, rb: RequestBuilder, mutating: bool) -> RequestBuilder {
        match &self.auth {
            Auth::Token(t) => rb.header(AUTHORIZATION, format!("{TOKEN_SCHEME} {t}")),
            Auth::Ticket { ticket, csrf } => {
                let rb = rb.header(COOKIE, format!("{TICKET_COOKIE}={ticket}"));
                match HeaderValue::from_str(csrf) {
                    Ok(v) if mutating => rb.header(CSRF_HEADER, v),
                    _ => rb,
                }
            }
            Auth::None => rb,
        }
    }

    /// Send a request; non-2xx answers become [`ApiError`], transport failures a message naming
    /// the URL and the reason.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let rb = build(self.authed(self.http.request(method, url.clone()), mutating));
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(&url, e).await),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ApiError::from_body(status, &url, &body).into())
    }

    /// A JSON call; returns the parsed body (`Null` for 204).
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segs: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Value> {
        let url = self.url(segs, query);
        let resp = self
            .send(method, url.clone(), |rb| {
                let rb = rb.timeout(REQUEST_TIMEOUT);
                match body {
                    Some(b) => rb.json(b),
                    None => rb,
                }
            })
            .await?;
        read_json(resp, &url).await
    }

    pub async fn get(&self, segs: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.call::<()>(Method::GET, segs, query, None).await
    }

    /// A `text/plain` GET.
    pub async fn get_text(&self, segs: &[&str], query: &[(&str, String)]) -> Result<String> {
        let url = self.url(segs, query);
        let resp = self
            .send(Method::GET, url.clone(), |rb| rb.timeout(REQUEST_TIMEOUT))
            .await?;
        resp.text()
            .await
            .with_context(|| format!("reading the answer of {}", url_for_humans(&url)))
    }

    /// The node to talk to: `--node`, else the first one the server lists.
    pub async fn node(&self) -> Result<&str> {
        self.node
            .get_or_try_init(|| async {
                if let Some(n) = &self.node_flag {
                    return Ok(n.clone());
                }
                // /health names the node and costs the server nothing.
                let health: keel_api::node::Health = typed(self.get(&["health"], &[]).await?)?;
                if !health.node.is_empty() {
                    return Ok(health.node);
                }
                Err(anyhow!(
                    "the server did not name its node; pass --node NAME"
                ))
            })
            .await
            .map(String::as_str)
    }

    /// `--node` if given, else `hint` (e.g. the node a UPID names), else [`Client::node`].
    pub async fn node_or(&self, hint: Option<String>) -> Result<String> {
        match (&self.node_flag, hint) {
            (Some(n), _) => Ok(n.clone()),
            (None, Some(h)) => Ok(h),
            (None, None) => self.node().await.map(str::to_string),
        }
    }

    async fn transport_error(&self, url: &Url, e: reqwest::Error) -> anyhow::Error {
        let shown = url_for_humans(url);
        if std::env::var_os("KEEL_DEBUG").is_some() {
            eprintln!("debug: {e:?}");
        }
        let reason = transport_reason(&e);
        if let Pinning::Pinned { seen, expected } = &self.pinning {
            let presented = seen.lock().ok().and_then(|s| s.clone());
            if let Some(p) = presented.filter(|p| p != expected) {
                return anyhow!(
                    "cannot connect to {shown}: certificate fingerprint mismatch: expected {expected}, \
                     server presented {p}\n  check the fingerprint keel-hostd printed at start \
                     (also in <state_dir>/hostd.fingerprint on the node); if the node's \
                     certificate was replaced on purpose, pass the new one with --fingerprint"
                );
            }
        }
        let cert_problem = matches!(
            find_rustls_error(&e),
            Some(rustls::Error::InvalidCertificate(_))
        );
        if matches!(self.pinning, Pinning::WebPki) && cert_problem {
            let presented = match self.probe_fingerprint().await {
                Some(fp) => format!("\n  the server presented a certificate with SHA-256 fingerprint {fp}\n  (compare it with the node's before trusting it)"),
                None => String::new(),
            };
            return anyhow!(
                "cannot connect to {shown}: the server's TLS certificate is not trusted ({reason})\n  \
                 keel-hostd uses a self-signed certificate unless given one: pass --fingerprint \
                 (or set KEEL_FINGERPRINT) to the SHA-256 fingerprint keel-hostd prints at start \
                 and stores in <state_dir>/hostd.fingerprint{presented}"
            );
        }
        if e.is_timeout() {
            return anyhow!("request to {shown} timed out: {reason}");
        }
        if e.is_connect() {
            return anyhow!("cannot connect to {shown}: {reason}");
        }
        anyhow!("request to {shown} failed: {reason}")
    }

    /// Handshake once more, recording (and rejecting) the certificate, to show its fingerprint.
    async fn probe_fingerprint(&self) -> Option<String> {
        let (cfg, seen) = tls::pinned_config(None).ok()?;
        let http = build_http(Some(cfg)).ok()?;
        let url = self.url(&["health"], &[]);
        let _ = http.get(url).timeout(Duration::from_secs(10)).send().await;
        let fp = seen.lock().ok()?.clone();
        fp
    }
}

async fn read_json(resp: Response, url: &Url) -> Result<Value> {
    if resp.status() == StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {}", url_for_humans(url)))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{} answered with {}: {e}",
            url_for_humans(url),
            if is_json {
                "invalid JSON"
            } else {
                "something that is not JSON"
            }
        )
    })
}

/// Convert a raw answer into a wire type.
pub fn typed<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        anyhow!(
            "unexpected answer from the server ({e}); are keel and keel-hostd the same version?"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_display_includes_field() {
        let u = Url::parse("https://x/api/v1/nodes/n1/vms").expect("url");
        let e = ApiError::from_body(
            StatusCode::BAD_REQUEST,
            &u,
            r#"{"error":{"code":"validation","message":"vcpus 0 is out of range","field":"vcpus"}}"#,
        );
        assert_eq!(e.to_string(), "vcpus 0 is out of range (field: vcpus)");
        let e = ApiError::from_body(
            StatusCode::NOT_FOUND,
            &u,
            r#"{"error":{"code":"not_found","message":"VM 5 not found"}}"#,
        );
        assert_eq!(e.to_string(), "VM 5 not found");
        assert_eq!(e.code, "not_found");
    }

    #[test]
    fn urls_encode_segments() {
        let b = Url::parse("https://n1:8006").expect("url");
        let u = api_url(
            &b,
            &["nodes", "n1", "tasks", "UPID:n1:0001:x:", "log"],
            &[("start", "5".into())],
        );
        assert_eq!(
            u.as_str(),
            "https://n1:8006/api/v1/nodes/n1/tasks/UPID:n1:0001:x:/log?start=5"
        );
        let u = api_url(&b, &["nodes", "a/b"], &[]);
        assert_eq!(u.as_str(), "https://n1:8006/api/v1/nodes/a%2Fb");
        let prefixed = Url::parse("https://proxy/keel").expect("url");
        assert_eq!(
            api_url(&prefixed, &["nodes"], &[]).as_str(),
            "https://proxy/keel/api/v1/nodes"
        );
    }

    #[test]
    fn non_json_error_names_url_and_status() {
        let u = Url::parse("https://x/api/v1/nodes?a=b").expect("url");
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, &u, "<html>bad</html>");
        let s = e.to_string();
        assert!(s.contains("https://x/api/v1/nodes"), "{s}");
        assert!(!s.contains("a=b"), "{s}");
        assert!(s.contains("502"), "{s}");
    }
}
