//! Just enough STUN (RFC 8489) to route a datagram from an unknown address: is it a STUN
//! Binding request, and what is the local part of its ICE `USERNAME` (RFC 8445 7.2.2)?

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const USERNAME: u16 = 0x0006;

/// The ufrag we chose for the connection this STUN Binding request is meant for: the part of
/// `USERNAME` before the colon. `None` for anything else.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < 20 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
        return None;
    }
    let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let mut attributes = datagram.get(20..20 + length)?;
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = u16::from_be_bytes([attributes[2], attributes[3]]) as usize;
        let value = attributes.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        let padded = 4 + len.div_ceil(4) * 4;
        attributes = attributes.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, then USERNAME (padded), like real agents send.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_our_ufrag_and_ignores_everything_else() {
        assert_eq!(local_ufrag(&binding_request(b"abcd:xyz1")), Some("abcd"));
        assert_eq!(local_ufrag(&binding_request(b"abcde:x")), Some("abcde"));
        let mut response = binding_request(b"abcd:xyz1");
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(local_ufrag(&response), None);
        assert_eq!(local_ufrag(&[0x80, 0x60, 0, 1]), None); // RTP
        assert_eq!(local_ufrag(&[0x16; 40]), None); // DTLS
        let mut truncated = binding_request(b"abcd:xyz1");
        truncated.truncate(30);
        assert_eq!(local_ufrag(&truncated), None);
        for len in 0..64 {
            let _ = local_ufrag(&vec![0xff; len]);
        }
    }
}
