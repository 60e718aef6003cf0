//! What an RTSP pull connects to: the `rtsp://` source URL (credentials kept apart and never
//! shown), the transport, and the settings of an attempt.

use crate::inputs::pull::redact;
use retina::client::Credentials;
use std::time::Duration;
use url::Url;

/// How RTP packets travel from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspTransport {
    /// Interleaved on the RTSP TCP connection (RFC 2326 10.12): passes NAT and firewalls.
    Tcp,
    /// RTP/RTCP on UDP port pairs: lower latency on a LAN; packets may arrive out of order
    /// (reordered in a small window) or not at all (counted as lost).
    Udp,
}

impl std::str::FromStr for RtspTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            _ => Err(format!("transport must be tcp or udp, not {s:?}")),
        }
    }
}

/// A parsed `rtsp://[user:pass@]host[:port]/path[?transport=tcp|udp]` source.
#[derive(Clone)]
pub struct RtspSource {
    /// What the client connects to: no credentials, no `transport` parameter.
    pub(super) url: Url,
    pub(super) creds: Option<Credentials>,
    transport: RtspTransport,
    redacted: String,
}

impl std::fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &self.redacted)
            .field("transport", &self.transport)
            .finish()
    }
}

impl RtspSource {
    /// Parses a source URL. `default_transport` applies unless the URL's query says otherwise.
    /// Error messages never contain the credentials.
    pub fn parse(source: &str, default_transport: RtspTransport) -> Result<Self, String> {
        let shown = redact(source);
        let mut url = Url::parse(source).map_err(|e| format!("malformed URL {shown}: {e}"))?;
        if url.scheme() != "rtsp" {
            return Err(format!("{shown}: not an rtsp:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown}: no host"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let creds = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(Credentials {
                username: decode(url.username()),
                password: decode(url.password().unwrap_or("")),
            })
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport = default_transport;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == "transport" {
                transport = v.parse().map_err(|e| format!("{shown}: {e}"))?;
            } else {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let redacted = redact(&{
            let mut shown = url.clone();
            if creds.is_some() {
                let _ = shown.set_username("user");
            }
            shown.to_string()
        });
        Ok(RtspSource {
            url,
            creds,
            transport,
            redacted,
        })
    }

    /// The URL without credentials (`***@` marks where they were).
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub fn transport(&self) -> RtspTransport {
        self.transport
    }
}

/// Settings of one pull attempt.
#[derive(Debug, Clone)]
pub struct RtspSettings {
    /// DESCRIBE, SETUP and PLAY must be done within this time.
    pub connect_timeout: Duration,
    /// A session that delivers no media frame for this long is ended (and retried).
    pub idle_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_parsed_without_their_credentials() {
        let s =
            RtspSource::parse("rtsp://admin:p%40ss@cam.local/live", RtspTransport::Tcp).unwrap();
        assert_eq!(s.url.as_str(), "rtsp://cam.local/live");
        assert_eq!(s.creds.as_ref().unwrap().password, "p@ss");
        assert_eq!(s.redacted(), "rtsp://***@cam.local/live");
        assert!(!format!("{s:?}").contains("p%40ss"));
        let err =
            RtspSource::parse("rtsp://admin:secret@[bad/live", RtspTransport::Tcp).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn transport_comes_from_the_query_which_is_stripped() {
        let s =
            RtspSource::parse("rtsp://cam:8554/live?transport=udp", RtspTransport::Tcp).unwrap();
        assert_eq!(s.transport(), RtspTransport::Udp);
        assert_eq!(s.url.as_str(), "rtsp://cam:8554/live");
        let s = RtspSource::parse(
            "rtsp://cam/live?channel=2&transport=tcp",
            RtspTransport::Udp,
        )
        .unwrap();
        assert_eq!(s.transport(), RtspTransport::Tcp);
        assert_eq!(s.url.as_str(), "rtsp://cam/live?channel=2");
        assert!(RtspSource::parse("rtsp://cam/live?transport=sctp", RtspTransport::Tcp).is_err());
        assert!(RtspSource::parse("http://cam/live", RtspTransport::Tcp).is_err());
        assert!(RtspSource::parse("rtsp://", RtspTransport::Tcp).is_err());
    }
}
