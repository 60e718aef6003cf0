//! Authentication and authorization: who may use the API, and who may publish or play which
//! stream.
//!
//! - **API** (`/api/*`, `/rest-api/*`, `/metrics`): bearer tokens from `auth.api_tokens`
//!   (RFC 6750 2.1 `Authorization: Bearer`; `?token=` too, for `EventSource`, which cannot
//!   set headers: RFC 6750 2.3). Empty: open.
//! - **Publish and play**: `[[auth.rules]]`, checked in order; the first whose `streams` pattern
//!   ([`crate::bus::matches_pattern`]) and `action` match decides. A rule accepts static
//!   tokens, JWTs (RFC 7519: HS256 with a shared secret, RS256 with a PEM public key or the
//!   keys of a JWKS file, RFC 7517, picked by `kid`; claims `exp`, `action`, `stream`), and/or
//!   asks an HTTP webhook. No rule matches: allowed, so a config without rules is open.
//! - **Carriers**: WHIP/WHEP `Authorization: Bearer` on the POST (RFC 9725 4.1; the session
//!   URL it answers is unguessable and is not checked again), RTMP `?token=` on the stream key
//!   or on the application, HLS and MSE `?token=` (HLS playlists then carry it on every URI
//!   they list, see [`switchyard_hls::with_query`]).
//! - **Answers**: 401 with `WWW-Authenticate: Bearer` (RFC 6750 3) for a missing or invalid
//!   credential, 403 for a valid one that does not allow this action on this stream. Streams
//!   are authorized before they are looked up, so an unauthorized caller gets the same answer
//!   for a stream that exists and one that does not. Tokens are never logged.

mod jwt;
mod request;
mod webhook;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

pub use jwt::JwtSection;
pub use request::{AccessRequest, Action, Denied};

/// The `[auth]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens accepted by the REST API (`/api/*`, `/rest-api/*`) and `/metrics`
    /// (`Authorization: Bearer TOKEN`, or `?token=TOKEN`). Empty: the API is open.
    pub api_tokens: Vec<String>,
    /// How long the webhook may take to answer; no answer in time denies.
    pub webhook_timeout_ms: u64,
    /// A webhook's answer for the same action, protocol, stream, token and client address is
    /// reused for this long (HLS players ask for a part every few hundred milliseconds). 0:
    /// ask every time.
    pub webhook_cache_secs: u64,
    /// Keys that JWTs are verified with.
    pub jwt: JwtSection,
    /// Publish/play rules (`[[auth.rules]]`), checked in order: the first whose `streams`
    /// pattern and `action` match decides. No rule matches: allowed.
    pub rules: Vec<AuthRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_tokens: Vec::new(),
            webhook_timeout_ms: 2000,
            webhook_cache_secs: 5,
            jwt: JwtSection::default(),
            rules: Vec::new(),
        }
    }
}

/// One `[[auth.rules]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRule {
    /// Stream-name pattern: `*` matches within a path segment (`live/*`), a `**` segment
    /// matches one or more segments (`**` matches every stream).
    pub streams: String,
    /// What the rule governs: `publish`, `play` or `any` (the default).
    #[serde(default)]
    pub action: RuleAction,
    /// Static tokens that are allowed.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Accept a JWT verified with the keys of `[auth.jwt]` whose `action` and `stream` claims
    /// allow the request.
    #[serde(default)]
    pub jwt: bool,
    /// Ask this URL: a POST of `{"action", "stream", "protocol", "token", "remote_addr"}`;
    /// 2xx allows, 401/403 deny (with the body's `reason` or text), anything else, a timeout
    /// or no answer denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Publish,
    Play,
    #[default]
    Any,
}

impl RuleAction {
    fn covers(self, action: Action) -> bool {
        match self {
            RuleAction::Any => true,
            RuleAction::Publish => action == Action::Publish,
            RuleAction::Play => action == Action::Play,
        }
    }
}

/// The configured checks, built once at start (key files read, URLs parsed).
pub struct Auth {
    api_tokens: Vec<String>,
    rules: Vec<Rule>,
    jwt: Option<jwt::JwtKeys>,
    webhook: webhook::Webhook,
    /// Denials by (protocol, action), for `/metrics`.
    denials: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

struct Rule {
    streams: String,
    action: RuleAction,
    tokens: Vec<String>,
    jwt: bool,
    webhook: Option<reqwest::Url>,
}

impl Default for Auth {
    /// No checks at all: everything is allowed.
    fn default() -> Self {
        Auth::from_config(&AuthConfig::default()).expect("the default auth config is valid")
    }
}

impl Auth {
    /// Checks `config` and reads the key files it names.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Auth> {
        let jwt = jwt::JwtKeys::load(&config.jwt)?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let at = format!("auth.rules[{i}] (streams = {:?})", rule.streams);
            anyhow::ensure!(!rule.streams.is_empty(), "{at}: streams must not be empty");
            anyhow::ensure!(
                !rule.jwt || jwt.is_some(),
                "{at}: jwt = true needs a key in [auth.jwt] (hs256_secret, rs256_public_key_file or jwks_file)"
            );
            anyhow::ensure!(
                rule.tokens.iter().all(|t| !t.is_empty()),
                "{at}: a token must not be empty"
            );
            let webhook = match &rule.webhook {
                None => None,
                Some(url) => {
                    let parsed = reqwest::Url::parse(url)
                        .map_err(|e| anyhow::anyhow!("{at}: webhook {url:?} is not a URL: {e}"))?;
                    anyhow::ensure!(
                        matches!(parsed.scheme(), "http" | "https"),
                        "{at}: webhook {url:?} is not an http(s) URL"
                    );
                    Some(parsed)
                }
            };
            rules.push(Rule {
                streams: rule.streams.clone(),
                action: rule.action,
                tokens: rule.tokens.clone(),
                jwt: rule.jwt,
                webhook,
            });
        }
        anyhow::ensure!(
            config.api_tokens.iter().all(|t| !t.is_empty()),
            "auth.api_tokens: a token must not be empty"
        );
        anyhow::ensure!(
            (1..=60_000).contains(&config.webhook_timeout_ms),
            "auth.webhook_timeout_ms must be within 1..=60000, not {}",
            config.webhook_timeout_ms
        );
        Ok(Auth {
            api_tokens: config.api_tokens.clone(),
            rules,
            jwt,
            webhook: webhook::Webhook::new(
                std::time::Duration::from_millis(config.webhook_timeout_ms),
                std::time::Duration::from_secs(config.webhook_cache_secs),
            ),
            denials: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether the API needs a token.
    pub fn api_protected(&self) -> bool {
        !self.api_tokens.is_empty()
    }

    /// Checks an API request's bearer token.
    pub fn check_api(&self, token: Option<&str>, path: &str) -> Result<(), Denied> {
        if !self.api_protected() {
            return Ok(());
        }
        let result = match token.filter(|t| !t.is_empty()) {
            Some(t) if self.api_tokens.iter().any(|k| same_secret(k, t)) => Ok(()),
            Some(_) => Err(Denied::Unauthenticated("invalid API token".to_string())),
            None => Err(Denied::NoToken(
                "this API needs a bearer token (Authorization: Bearer TOKEN)".to_string(),
            )),
        };
        if let Err(denied) = &result {
            self.count_denial("http", "api");
            tracing::info!(path, reason = %denied, "API request denied");
        }
        result
    }

    /// Whether `request` is allowed; a denial is counted and logged (without the token).
    pub async fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), Denied> {
        let Some(rule) = self.rules.iter().find(|r| {
            r.action.covers(request.action)
                && crate::bus::matches_pattern(&r.streams, request.stream)
        }) else {
            return Ok(());
        };
        let result = self.decide(rule, request).await;
        if let Err(denied) = &result {
            self.count_denial(request.protocol, request.action.as_str());
            tracing::info!(
                protocol = request.protocol,
                action = request.action.as_str(),
                stream = request.stream,
                remote = %request.remote.map_or_else(|| "-".to_string(), |a| a.to_string()),
                status = denied.status(),
                reason = %denied,
                "denied"
            );
        }
        result
    }

    async fn decide(&self, rule: &Rule, request: &AccessRequest<'_>) -> Result<(), Denied> {
        let token = request.token.filter(|t| !t.is_empty());
        if let Some(t) = token {
            if rule.tokens.iter().any(|k| same_secret(k, t)) {
                return Ok(());
            }
        }
        let mut jwt_error = None;
        if let (Some(t), true, Some(keys)) = (token, rule.jwt, &self.jwt) {
            if jwt::looks_like_jwt(t) {
                match keys.verify(t) {
                    Ok(claims) => return claims.permits(request.action, request.stream),
                    Err(e) => jwt_error = Some(e),
                }
            }
        }
        if let Some(url) = &rule.webhook {
            return self.webhook.ask(url, request).await;
        }
        let (action, stream) = (request.action.as_str(), request.stream);
        Err(match (token, jwt_error) {
            (None, _) => Denied::NoToken(format!("a token is needed to {action} {stream:?}")),
            (_, Some(e)) => e,
            (Some(t), None) if self.is_known_token(t) => {
                Denied::Forbidden(format!("this token does not allow to {action} {stream:?}"))
            }
            (Some(_), None) => Denied::Unauthenticated("invalid token".to_string()),
        })
    }

    /// A static token of some rule (or of the API): valid, but not for what was asked.
    fn is_known_token(&self, token: &str) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.tokens)
            .chain(&self.api_tokens)
            .any(|k| same_secret(k, token))
    }

    fn count_denial(&self, protocol: &'static str, action: &'static str) {
        *self
            .denials
            .lock()
            .unwrap()
            .entry((protocol, action))
            .or_default() += 1;
    }

    /// Denials so far by (protocol, action).
    pub fn denials(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.denials
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// Compares a secret without stopping at the first different byte (only the length shows).
fn same_secret(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The token of an `Authorization: Bearer TOKEN` header value (RFC 6750 2.1; the scheme is
/// case-insensitive, RFC 9110 11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The `token` parameter of a query string (`a=1&token=...`, percent-decoded), if any.
pub fn query_token(query: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The `token` parameter after the `?` of an RTMP application or stream key
/// (`cam1?token=abc`), if any.
pub fn rtmp_token(app_or_key: &str) -> Option<String> {
    app_or_key.split_once('?').and_then(|(_, q)| query_token(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(action: Action, stream: &'a str, token: Option<&'a str>) -> AccessRequest<'a> {
        AccessRequest {
            action,
            stream,
            protocol: "rtmp",
            token,
            remote: None,
        }
    }

    /// A configuration file holding only an `[auth]` section (the whole `Config` is a layer
    /// above; its round trip of `[auth]` is tested there).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AuthFile {
        #[serde(default)]
        auth: AuthConfig,
    }

    fn auth_config(toml: &str) -> Result<AuthConfig, toml::de::Error> {
        toml::from_str::<AuthFile>(toml).map(|file| file.auth)
    }

    fn auth(toml: &str) -> Auth {
        Auth::from_config(&auth_config(toml).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn first_matching_rule_decides_and_no_rule_allows() {
        let auth = auth(
            r#"
            [[auth.rules]]
            streams = "live/*"
            action = "publish"
            tokens = ["pub"]
            [[auth.rules]]
            streams = "live/*"
            action = "play"
            tokens = ["view"]
            "#,
        );
        let ok = |a, s, t| {
            let auth = &auth;
            async move { auth.authorize(&request(a, s, t)).await }
        };
        assert_eq!(ok(Action::Publish, "live/a", Some("pub")).await, Ok(()));
        assert_eq!(ok(Action::Play, "live/a", Some("view")).await, Ok(()));
        assert_eq!(ok(Action::Play, "open/a", None).await, Ok(()));
        assert!(matches!(
            ok(Action::Publish, "live/a", None).await,
            Err(Denied::NoToken(_))
        ));
        assert!(matches!(
            ok(Action::Publish, "live/a", Some("nope")).await,
            Err(Denied::Unauthenticated(_))
        ));
        // A valid token of another rule: forbidden, not unauthenticated.
        assert!(matches!(
            ok(Action::Publish, "live/a", Some("view")).await,
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(auth.denials(), vec![(("rtmp", "publish"), 3)]);
    }

    #[test]
    fn api_tokens_are_checked_only_when_configured() {
        let open = Auth::default();
        assert_eq!(open.check_api(None, "/api/v1/streams"), Ok(()));
        let closed = auth("[auth]\napi_tokens = [\"adm\"]");
        assert_eq!(closed.check_api(Some("adm"), "/x"), Ok(()));
        assert_eq!(
            closed.check_api(Some("ad"), "/x").unwrap_err().status(),
            401
        );
        assert_eq!(closed.check_api(None, "/x").unwrap_err().status(), 401);
    }

    #[test]
    fn tokens_come_from_headers_queries_and_rtmp_names() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(
            query_token("_HLS_msn=1&token=a%2Bb"),
            Some("a+b".to_string())
        );
        assert_eq!(query_token("?token="), None);
        assert_eq!(query_token(""), None);
        assert_eq!(rtmp_token("cam1?token=abc"), Some("abc".to_string()));
        assert_eq!(rtmp_token("live?x=1&token=t"), Some("t".to_string()));
        assert_eq!(rtmp_token("cam1"), None);
    }

    #[test]
    fn bad_rules_are_refused() {
        let parse = |t: &str| Auth::from_config(&auth_config(t).unwrap());
        assert!(parse("[[auth.rules]]\nstreams = \"a\"\njwt = true").is_err());
        assert!(parse("[[auth.rules]]\nstreams = \"a\"\nwebhook = \"ftp://x\"").is_err());
        assert!(parse("[[auth.rules]]\nstreams = \"\"").is_err());
        assert!(auth_config("[[auth.rules]]\nstreams = \"a\"\naction = \"read\"").is_err());
    }
}
