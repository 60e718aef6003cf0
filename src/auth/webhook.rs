//! The authorization webhook: a POST of `{"action", "stream", "protocol", "token",
//! "remote_addr"}` (JSON) to a URL of the operator's; 2xx allows, 401 and 403 deny with the
//! body's `reason` (or `error`, or its text), anything else denies. Answers are kept for a few
//! seconds per (action, protocol, stream, token, client address), bounded in number.

use super::request::{AccessRequest, Denied};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Cached answers at most; when full, expired ones go, and if none has, all.
const MAX_CACHED: usize = 4096;
/// A reason from the webhook is cut to this many characters.
const MAX_REASON: usize = 200;

/// When the webhook answered, and what.
type CachedAnswer = (Instant, Result<(), Denied>);
type CacheKey = (
    &'static str,
    &'static str,
    String,
    Option<String>,
    Option<IpAddr>,
);

pub(super) struct Webhook {
    http: reqwest::Client,
    cache_for: Duration,
    cache: Mutex<HashMap<CacheKey, CachedAnswer>>,
}

impl Webhook {
    pub(super) fn new(timeout: Duration, cache_for: Duration) -> Self {
        Webhook {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            cache_for,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn ask(
        &self,
        url: &reqwest::Url,
        request: &AccessRequest<'_>,
    ) -> Result<(), Denied> {
        let key: CacheKey = (
            request.action.as_str(),
            request.protocol,
            request.stream.to_string(),
            request.token.map(str::to_string),
            request.remote.map(|a| a.ip()),
        );
        if !self.cache_for.is_zero() {
            if let Some((at, answer)) = self.cache.lock().unwrap().get(&key) {
                if at.elapsed() < self.cache_for {
                    return answer.clone();
                }
            }
        }
        let (answer, cacheable) = self.post(url, request).await;
        if cacheable && !self.cache_for.is_zero() {
            let mut cache = self.cache.lock().unwrap();
            if cache.len() >= MAX_CACHED {
                let cache_for = self.cache_for;
                cache.retain(|_, (at, _)| at.elapsed() < cache_for);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        answer
    }

    /// The webhook's answer, and whether it is one to keep (the webhook did answer).
    async fn post(
        &self,
        url: &reqwest::Url,
        request: &AccessRequest<'_>,
    ) -> (Result<(), Denied>, bool) {
        let body = serde_json::json!({
            "action": request.action,
            "stream": request.stream,
            "protocol": request.protocol,
            "token": request.token,
            "remote_addr": request.remote.map(|a| a.to_string()),
        });
        let shown = url.as_str();
        let response = match self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                };
                tracing::warn!(webhook = shown, error = %e, "authorization webhook {why}: denying");
                return (
                    Err(Denied::Forbidden(format!(
                        "the authorization service is {why}"
                    ))),
                    false,
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            return (Ok(()), true);
        }
        let text = response.text().await.unwrap_or_default();
        let reason = reason_of(&text)
            .unwrap_or_else(|| format!("denied by the authorization service ({status})"));
        tracing::info!(webhook = shown, %status, reason = %reason, "authorization webhook denies");
        match status.as_u16() {
            401 => (Err(Denied::Unauthenticated(reason)), true),
            403 => (Err(Denied::Forbidden(reason)), true),
            _ => (
                Err(Denied::Forbidden(format!(
                    "the authorization service failed ({status})"
                ))),
                false,
            ),
        }
    }
}

/// A deny answer's reason: `{"reason": ...}` or `{"error": ...}`, or the text itself; printable
/// and short.
fn reason_of(body: &str) -> Option<String> {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["reason", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|r| r.as_str()).map(str::to_string))
        });
    let reason: String = from_json
        .unwrap_or_else(|| body.trim().to_string())
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect();
    (!reason.is_empty()).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_json_or_text() {
        assert_eq!(
            reason_of(r#"{"reason": "banned"}"#).as_deref(),
            Some("banned")
        );
        assert_eq!(reason_of(r#"{"error": "no"}"#).as_deref(), Some("no"));
        assert_eq!(reason_of("go away\n").as_deref(), Some("go away"));
        assert_eq!(reason_of(""), None);
        assert_eq!(reason_of(&"x".repeat(500)).unwrap().len(), MAX_REASON);
    }
}
