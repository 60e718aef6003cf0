//! JWT verification (RFC 7519) for publish/play tokens: HS256 (RFC 7518 3.2) with a shared
//! secret, RS256 (RFC 7518 3.3) with a PEM public key or the keys of a JWKS file (RFC 7517 5),
//! the key picked by the header's `kid` (RFC 7515 4.1.4).
//!
//! Claims: `exp` (required; RFC 7519 4.1.4, 30 s of clock skew allowed), `action`
//! (`"publish"`, `"play"`, `"*"`, or a list of them) and `stream` (a stream-name pattern, as
//! in the rules). The algorithm is taken from the header but must be one we hold a key for,
//! and the key's type must fit it, so an HS256 token cannot be checked against a public key.

use super::request::{Action, Denied};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The `[auth.jwt]` section: where the verification keys come from (each optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSection {
    /// Shared secret of HS256 tokens (empty: HS256 is not accepted).
    pub hs256_secret: String,
    /// PEM file of the RSA public key of RS256 tokens (empty: none).
    pub rs256_public_key_file: String,
    /// JWKS file (RFC 7517 `{"keys": [...]}`) of RS256 keys, picked by `kid` (empty: none).
    pub jwks_file: String,
}

/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 30;

pub(super) struct JwtKeys {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    /// JWKS keys with their `kid`.
    jwks: Vec<(Option<String>, DecodingKey)>,
}

/// The claims we read; others are ignored.
#[derive(Debug, Deserialize)]
pub(super) struct Claims {
    action: Option<ActionClaim>,
    stream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ActionClaim {
    One(String),
    Many(Vec<String>),
}

impl Claims {
    /// Whether the claims allow `action` on `stream`: 403 when they do not.
    pub(super) fn permits(&self, action: Action, stream: &str) -> Result<(), Denied> {
        let allows = |a: &String| a == "*" || a == action.as_str();
        let action_ok = match &self.action {
            Some(ActionClaim::One(a)) => allows(a),
            Some(ActionClaim::Many(list)) => list.iter().any(allows),
            None => {
                return Err(Denied::Forbidden(
                    "the token has no \"action\" claim".to_string(),
                ))
            }
        };
        let Some(pattern) = &self.stream else {
            return Err(Denied::Forbidden(
                "the token has no \"stream\" claim".to_string(),
            ));
        };
        if !action_ok {
            return Err(Denied::Forbidden(format!(
                "the token does not allow to {}",
                action.as_str()
            )));
        }
        if !crate::bus::matches_pattern(pattern, stream) {
            return Err(Denied::Forbidden(format!(
                "the token is not for stream {stream:?}"
            )));
        }
        Ok(())
    }
}

/// Three base64url parts joined by dots (RFC 7519 3.1, the JWS compact form).
pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

impl JwtKeys {
    /// The keys `section` names; `None` when it names none.
    pub(super) fn load(section: &JwtSection) -> anyhow::Result<Option<JwtKeys>> {
        let hs256 = (!section.hs256_secret.is_empty())
            .then(|| DecodingKey::from_secret(section.hs256_secret.as_bytes()));
        let rs256 = match section.rs256_public_key_file.as_str() {
            "" => None,
            path => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("auth.jwt.rs256_public_key_file {path:?}: {e}"))?;
                Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    anyhow::anyhow!(
                        "auth.jwt.rs256_public_key_file {path:?}: not a PEM RSA public key: {e}"
                    )
                })?)
            }
        };
        let jwks = match section.jwks_file.as_str() {
            "" => Vec::new(),
            path => load_jwks(path)?,
        };
        if hs256.is_none() && rs256.is_none() && jwks.is_empty() {
            return Ok(None);
        }
        Ok(Some(JwtKeys { hs256, rs256, jwks }))
    }

    /// Verifies the signature and `exp`; 401 with the reason when they fail.
    pub(super) fn verify(&self, token: &str) -> Result<Claims, Denied> {
        let invalid = |why: String| Denied::Unauthenticated(format!("invalid token: {why}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("not a well-formed JWT".to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => match &header.kid {
                Some(kid) => self
                    .jwks
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some(kid.as_str()))
                    .map(|(_, key)| key)
                    .or(self.rs256.as_ref()),
                None => self.rs256.as_ref().or(match self.jwks.as_slice() {
                    [(_, only)] => Some(only),
                    _ => None,
                }),
            },
            _ => None,
        }
        .ok_or_else(|| {
            invalid(match &header.kid {
                Some(kid) => format!("no {:?} key with kid {kid:?}", header.alg),
                None => format!("no {:?} key configured", header.alg),
            })
        })?;
        let mut validation = Validation::new(header.alg);
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        Denied::Unauthenticated("token expired".to_string())
                    }
                    ErrorKind::InvalidSignature => invalid("bad signature".to_string()),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        invalid(format!("no {claim:?} claim"))
                    }
                    ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)".to_string()),
                    _ => invalid(e.to_string()),
                }
            })
    }
}

fn load_jwks(path: &str) -> anyhow::Result<Vec<(Option<String>, DecodingKey)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file {path:?}: {e}"))?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file {path:?}: not a JWKS: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            anyhow::anyhow!("auth.jwt.jwks_file {path:?}: key {kid:?} is not usable: {e}")
        })?;
        keys.push((kid, key));
    }
    anyhow::ensure!(!keys.is_empty(), "auth.jwt.jwks_file {path:?} has no keys");
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn keys() -> JwtKeys {
        JwtKeys::load(&JwtSection {
            hs256_secret: "s3cret".to_string(),
            ..JwtSection::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn hs256_claims_allow_their_action_and_streams_only() {
        let token = hs256(
            serde_json::json!({"exp": now() + 60, "action": ["play"], "stream": "live/*"}),
            "s3cret",
        );
        assert!(looks_like_jwt(&token));
        let claims = keys().verify(&token).unwrap();
        assert_eq!(claims.permits(Action::Play, "live/a"), Ok(()));
        assert!(matches!(
            claims.permits(Action::Publish, "live/a"),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            claims.permits(Action::Play, "other/a"),
            Err(Denied::Forbidden(_))
        ));
        let any = hs256(
            serde_json::json!({"exp": now() + 60, "action": "*", "stream": "**"}),
            "s3cret",
        );
        let claims = keys().verify(&any).unwrap();
        assert_eq!(claims.permits(Action::Publish, "a/b/c"), Ok(()));
    }

    #[test]
    fn expired_wrongly_signed_and_exp_less_tokens_are_unauthenticated() {
        let expired = hs256(
            serde_json::json!({"exp": now() - 3600, "action": "*", "stream": "**"}),
            "s3cret",
        );
        assert_eq!(
            keys().verify(&expired).unwrap_err(),
            Denied::Unauthenticated("token expired".to_string())
        );
        let forged = hs256(
            serde_json::json!({"exp": now() + 60, "action": "*", "stream": "**"}),
            "other",
        );
        assert_eq!(keys().verify(&forged).unwrap_err().status(), 401);
        let forever = hs256(serde_json::json!({"action": "*", "stream": "**"}), "s3cret");
        assert_eq!(keys().verify(&forever).unwrap_err().status(), 401);
        assert!(!looks_like_jwt("plain-token"));
    }
}
