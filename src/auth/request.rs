//! What is asked of authorization (an action on a stream, with a token, from an address) and
//! why it can be refused, shared by the rules (`mod.rs`), JWTs and the webhook.

use serde::Serialize;
use std::net::SocketAddr;

/// What a client asks to do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Play,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// One publish or play request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub action: Action,
    /// The stream name, as asked for (already validated).
    pub stream: &'a str,
    /// `rtmp`, `webrtc` (WHIP/WHEP), `hls` or `mse`.
    pub protocol: &'static str,
    pub token: Option<&'a str>,
    pub remote: Option<SocketAddr>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential was given, and one is needed: 401.
    #[error("{0}")]
    NoToken(String),
    /// A credential that is not valid (expired, bad signature, unknown): 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that does not allow this: 403.
    #[error("{0}")]
    Forbidden(String),
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::NoToken(_) | Denied::Unauthenticated(_) => 401,
            Denied::Forbidden(_) => 403,
        }
    }
}
