//! The format parameters of an SDP `a=fmtp` attribute (RFC 8866 6.15): `key=value` pairs
//! separated by `;`, and the base64 their parameter sets are written in (RFC 4648 4).
//!
//! Cameras write these loosely: spaces after `;`, a trailing `;`, upper-case keys, base64
//! without its `=` padding. All of that is accepted.

use crate::error::RtpError;
use bytes::Bytes;

/// The parameters of an fmtp value (the part after the payload type), keys lower-cased, in
/// order. A parameter without `=` gets an empty value.
pub fn parameters(fmtp: &str) -> Vec<(String, String)> {
    fmtp.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect()
}

/// The value of parameter `key` (lower case), if present.
pub fn get<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A comma-separated list of base64 NAL units (`sprop-parameter-sets`, `sprop-sps`, ...).
pub fn base64_list(what: &'static str, value: &str) -> Result<Vec<Bytes>, RtpError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| base64(s).map(Bytes::from).ok_or_else(|| bad(what, value)))
        .collect()
}

fn bad(what: &'static str, value: &str) -> RtpError {
    let shown: String = value.chars().take(80).collect();
    RtpError::BadParameter {
        what,
        reason: format!("not base64: {shown:?}"),
    }
}

/// Decodes standard base64 (RFC 4648 4), with or without `=` padding. `None` for any other
/// character or an impossible length.
pub fn base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_loosely() {
        let p = parameters(
            " streamtype=5;Profile-Level-ID=15; mode=AAC-hbr;config=1190; SizeLength=13 ;x;",
        );
        assert_eq!(get(&p, "profile-level-id"), Some("15"));
        assert_eq!(get(&p, "sizelength"), Some("13"));
        assert_eq!(get(&p, "mode"), Some("AAC-hbr"));
        assert_eq!(get(&p, "x"), Some(""));
        assert_eq!(get(&p, "indexlength"), None);
    }

    #[test]
    fn base64_with_and_without_padding() {
        assert_eq!(base64("Z0IAH5WoFAFuQA==").unwrap()[..3], [0x67, 0x42, 0x00]);
        assert_eq!(base64("aM48gA"), Some(vec![0x68, 0xce, 0x3c, 0x80]));
        assert_eq!(base64(""), Some(vec![]));
        assert_eq!(base64("a"), None);
        assert_eq!(base64("ab$d"), None);
        let list = base64_list("sprop-parameter-sets", "Z0IAH5WoFAFuQA==,aM48gA==").unwrap();
        assert_eq!(list.len(), 2);
        assert!(base64_list("sprop-sps", "Z0I,%%").is_err());
    }
}
