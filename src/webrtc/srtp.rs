//! SRTP for the media we send (RFC 3711; AES-GCM per RFC 7714), written straight into the
//! engine's outgoing buffer; and for the load generator's WHEP client, the receiving side:
//! SRTP packets decrypted in place in the receive buffer ([`SrtpReceiver`]) and the RTCP
//! feedback it sends protected as SRTCP ([`SrtcpSender`]).
//!
//! `rtc` protects every packet handed to `write_rtp` itself, but that path costs more than
//! half of a WHEP server's CPU: each packet travels through its interceptor chain and handler
//! queues as a large message, and the SRTP step allocates a buffer per packet. So the engine
//! lets `rtc` do ICE, DTLS and RTCP, and protects media packets here: the RTP header and the
//! shared payload are written once into the send buffer and encrypted in place.
//!
//! The keys: DTLS-SRTP (RFC 5764 4.2) derives one master key and salt per direction from the
//! handshake, and `rtc` does not export them. It does take a crypto provider per connection,
//! and derives the session keys through it (RFC 3711 4.3, AES-CM PRF: one AES block per 16
//! bytes, input = master salt with the label XORed into byte 7). [`KeyCapture`] wraps the
//! default provider and keeps the first such block it sees per AES key: with the pinned `rtc`
//! =0.21.1 the first is the local (sending) context's SRTP encryption key (label 0), the second
//! the remote (receiving) context's, so each master key is its block's key and each master
//! salt is its block's first bytes. A wrong capture cannot go
//! unnoticed: every packet would fail authentication at the receiver, which each WebRTC test
//! checks by decoding. The unit tests below run `rtc`'s own SRTP context through the capture
//! and decrypt our packets with it.

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CryptoAlgorithm, CryptoError,
    HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac, PublicKey, RTCCrypto,
    RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher, StreamCipherAlgorithm,
};
use std::sync::{Arc, Mutex};

/// Length of the fixed RTP header we write (RFC 3550 5.1, no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_AUTHENTICATION: u8 = 0x01;
const LABEL_SRTP_SALT: u8 = 0x02;
const LABEL_SRTCP_ENCRYPTION: u8 = 0x03;
const LABEL_SRTCP_AUTHENTICATION: u8 = 0x04;
const LABEL_SRTCP_SALT: u8 = 0x05;
const MASTER_KEY_LEN: usize = 16;
/// RFC 5764 4.1.2: both AES-CM profiles authenticate SRTCP with an 80-bit tag.
const SRTCP_CM_TAG_LEN: usize = 10;
const GCM_TAG_LEN: usize = 16;

/// The (key, first derivation block) pairs a capture keeps: local, then remote.
type Captured = Vec<([u8; 16], [u8; 16])>;

/// Crypto provider for one connection that remembers the first AES-128 key-derivation block
/// `rtc` computes through it for each of the first two keys (see the module docs).
pub struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    blocks: Mutex<Captured>,
}

impl KeyCapture {
    pub fn new() -> Result<Arc<Self>, CryptoError> {
        Ok(Arc::new(KeyCapture {
            inner: rtc::crypto::default_provider()?,
            blocks: Mutex::new(Vec::with_capacity(2)),
        }))
    }

    /// The master key and salt of the local (`0`) or remote (`1`) SRTP context.
    fn master(&self, which: usize, profile: Profile) -> Result<([u8; 16], Vec<u8>), String> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let Some((key, block)) = blocks.get(which) else {
            return Err("the SRTP keys were not derived (DTLS not complete?)".into());
        };
        // Label 0, block 0: the PRF input is exactly the salt, zero-padded.
        Ok((*key, block[..profile.salt_len()].to_vec()))
    }

    /// The sending side's SRTP, once DTLS has completed; `cipher` is the negotiated profile as
    /// `rtc`'s transport statistics name it (e.g. `SRTP_AEAD_AES_128_GCM`).
    pub fn sender(&self, cipher: &str) -> Result<SrtpSender, String> {
        let profile = Profile::named(cipher)?;
        let (key, salt) = self.master(0, profile)?;
        let cipher = Cipher::new(profile, &key, &salt, self.inner.crypto(), false);
        Ok(SrtpSender {
            cipher: cipher.map_err(|e| e.to_string())?,
        })
    }

    /// The receiving side of a client connection once DTLS has completed: the SRTP that
    /// decrypts what the remote sends, and the SRTCP that protects the feedback we send.
    pub fn receiver(&self, cipher: &str) -> Result<(SrtpReceiver, SrtcpSender), String> {
        let profile = Profile::named(cipher)?;
        let (local_key, local_salt) = self.master(0, profile)?;
        let (remote_key, remote_salt) = self.master(1, profile)?;
        let crypto = self.inner.crypto();
        let receiver = SrtpReceiver {
            cipher: Cipher::new(profile, &remote_key, &remote_salt, crypto, false)
                .map_err(|e| e.to_string())?,
            streams: Vec::new(),
        };
        let sender = SrtcpSender {
            cipher: Cipher::new(profile, &local_key, &local_salt, crypto, true)
                .map_err(|e| e.to_string())?,
            index: 0,
        };
        Ok((receiver, sender))
    }
}

impl RTCCryptoProvider for KeyCapture {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyCapture {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if algorithm == BlockCipherAlgorithm::Aes128 {
            let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            if blocks.len() < 2 {
                if let (Ok(key), Ok(input)) = (<[u8; 16]>::try_from(key), (&*block).try_into()) {
                    if !blocks.iter().any(|(k, _)| *k == key) {
                        blocks.push((key, input));
                    }
                }
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn rtc::crypto::CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn rtc::crypto::ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// RFC 7714: AEAD_AES_128_GCM, 12-byte salt, 16-byte tag.
    AeadAes128Gcm,
    /// RFC 3711: AES-128 counter mode, 14-byte salt, HMAC-SHA1 truncated to `tag_len`.
    Aes128CmHmacSha1 { tag_len: usize },
}

impl Profile {
    /// The profile as `rtc`'s transport statistics name it.
    fn named(cipher: &str) -> Result<Self, String> {
        match cipher {
            "SRTP_AEAD_AES_128_GCM" => Ok(Profile::AeadAes128Gcm),
            "SRTP_AES128_CM_HMAC_SHA1_80" => Ok(Profile::Aes128CmHmacSha1 { tag_len: 10 }),
            "SRTP_AES128_CM_HMAC_SHA1_32" => Ok(Profile::Aes128CmHmacSha1 { tag_len: 4 }),
            other => Err(format!("SRTP profile {other:?} is not supported")),
        }
    }

    fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            Profile::Aes128CmHmacSha1 { .. } => 14,
        }
    }
}

enum Cipher {
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
    CmSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; 14],
        tag_len: usize,
    },
}

impl Cipher {
    /// The session keys of one direction (RFC 3711 4.3): SRTP's labels 0-2, or SRTCP's 3-5.
    fn new(
        profile: Profile,
        master_key: &[u8; 16],
        master_salt: &[u8],
        crypto: &dyn RTCCrypto,
        rtcp: bool,
    ) -> Result<Self, CryptoError> {
        let (encryption, authentication, salt) = if rtcp {
            (
                LABEL_SRTCP_ENCRYPTION,
                LABEL_SRTCP_AUTHENTICATION,
                LABEL_SRTCP_SALT,
            )
        } else {
            (
                LABEL_SRTP_ENCRYPTION,
                LABEL_SRTP_AUTHENTICATION,
                LABEL_SRTP_SALT,
            )
        };
        let derive = |label, len| derive_session_key(crypto, label, master_key, master_salt, len);
        Ok(match profile {
            Profile::AeadAes128Gcm => Cipher::Gcm {
                aead: crypto.new_aead(
                    AeadAlgorithm::Aes128Gcm,
                    &derive(encryption, MASTER_KEY_LEN)?,
                )?,
                salt: derive(salt, 12)?.try_into().expect("12 bytes derived"),
            },
            Profile::Aes128CmHmacSha1 { tag_len } => Cipher::CmSha1 {
                ctr: crypto.new_stream_cipher(
                    StreamCipherAlgorithm::Aes128Ctr,
                    &derive(encryption, MASTER_KEY_LEN)?,
                )?,
                mac: crypto.new_hmac(HmacAlgorithm::Sha1, &derive(authentication, 20)?)?,
                salt: derive(salt, 14)?.try_into().expect("14 bytes derived"),
                tag_len: if rtcp { SRTCP_CM_TAG_LEN } else { tag_len },
            },
        })
    }

    /// RFC 7714 8.1 (SRTP) and 9.1 (SRTCP): IV = (00 00 || SSRC || `index`) XOR salt, where
    /// `index` is ROC || SEQ, or 00 00 || SRTCP index.
    fn gcm_iv(salt: &[u8; 12], ssrc: &[u8], index: [u8; 6]) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(ssrc);
        iv[6..12].copy_from_slice(&index);
        for (v, s) in iv.iter_mut().zip(salt.iter()) {
            *v ^= s;
        }
        iv
    }

    /// RFC 3711 4.1.1: IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16).
    fn ctr_iv(salt: &[u8; 14], ssrc: &[u8], index: [u8; 6]) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(ssrc);
        iv[8..14].copy_from_slice(&index);
        for (v, s) in iv.iter_mut().zip(salt.iter()) {
            *v ^= s;
        }
        iv
    }
}

/// ROC || SEQ, the 48-bit SRTP packet index (RFC 3711 3.3.1).
fn packet_index(roc: u32, sequence: &[u8]) -> [u8; 6] {
    let mut index = [0u8; 6];
    index[..4].copy_from_slice(&roc.to_be_bytes());
    index[4..].copy_from_slice(sequence);
    index
}

/// Protects the RTP packets one connection sends.
pub struct SrtpSender {
    cipher: Cipher,
}

impl SrtpSender {
    /// Appends the SRTP packet for `header` (12 bytes, its SSRC and sequence number inside)
    /// and `payload` to `out`. `roc` is the sequence number's rollover count (RFC 3711 3.3.1).
    pub fn protect(
        &mut self,
        header: &[u8; RTP_HEADER_LEN],
        payload: &[u8],
        roc: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        let ssrc = &header[8..12];
        let sequence = &header[2..4];
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                let iv = Cipher::gcm_iv(salt, ssrc, packet_index(roc, sequence));
                let mut tag = [0u8; GCM_TAG_LEN];
                let (aad, body) = out[start..].split_at_mut(RTP_HEADER_LEN);
                let sealed = aead.seal_in_place(&iv, aad, body, &mut tag);
                if let Err(e) = sealed {
                    out.truncate(start);
                    return Err(e);
                }
                out.extend_from_slice(&tag);
            }
            Cipher::CmSha1 {
                ctr,
                mac,
                salt,
                tag_len,
            } => {
                let iv = Cipher::ctr_iv(salt, ssrc, packet_index(roc, sequence));
                let body = &mut out[start + RTP_HEADER_LEN..];
                if let Err(e) = ctr.apply_keystream(&iv, body) {
                    out.truncate(start);
                    return Err(e);
                }
                // RFC 3711 4.2: HMAC-SHA1 over the packet and the ROC, truncated.
                let mut tag = [0u8; 20];
                if let Err(e) = mac.sign(&[&out[start..], &roc.to_be_bytes()], &mut tag) {
                    out.truncate(start);
                    return Err(e);
                }
                out.extend_from_slice(&tag[..*tag_len]);
            }
        }
        Ok(())
    }
}

/// Why a received SRTP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnprotectError {
    /// Shorter than its RTP header and tag, or its header is not RTP version 2.
    Malformed,
    /// The authentication tag does not match (tampered, or not for these keys).
    Authentication,
}

impl std::fmt::Display for UnprotectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnprotectError::Malformed => "malformed SRTP packet",
            UnprotectError::Authentication => "SRTP authentication failed",
        })
    }
}

/// Decrypts the SRTP packets one connection receives, in place.
pub struct SrtpReceiver {
    cipher: Cipher,
    /// Per SSRC: the rollover counter and the highest sequence number authenticated (RFC
    /// 3711 3.3.1, `s_l`). A WHEP session has two streams, so a short list.
    streams: Vec<(u32, u32, u16)>,
}

/// The length of an RTP packet's header: fixed part, CSRCs and extension (RFC 3550 5.1, 5.3.1).
pub fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

impl SrtpReceiver {
    /// Authenticates and decrypts the SRTP packet in `packet`; returns the length of the RTP
    /// packet (header and payload, in place at the start of `packet`). Replays are not
    /// refused: the caller counts sequence numbers, duplicates included.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, UnprotectError> {
        let tag_len = match &self.cipher {
            Cipher::Gcm { .. } => GCM_TAG_LEN,
            Cipher::CmSha1 { tag_len, .. } => *tag_len,
        };
        let header_len = rtp_header_len(packet).ok_or(UnprotectError::Malformed)?;
        if packet.len() < header_len + tag_len {
            return Err(UnprotectError::Malformed);
        }
        let end = packet.len() - tag_len;
        let ssrc_value = u32::from_be_bytes(packet[8..12].try_into().expect("4 bytes"));
        let sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let stream = match self.streams.iter().position(|s| s.0 == ssrc_value) {
            Some(i) => i,
            None => {
                self.streams.push((ssrc_value, 0, sequence));
                self.streams.len() - 1
            }
        };
        let (_, roc, highest) = self.streams[stream];
        let guess = estimate_roc(roc, highest, sequence);
        let (head, tail) = packet.split_at_mut(end);
        let ssrc = &head[8..12];
        let index = packet_index(guess, &head[2..4]);
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                let iv = Cipher::gcm_iv(salt, ssrc, index);
                let (aad, body) = head.split_at_mut(header_len);
                aead.open_in_place(&iv, aad, body, tail)
                    .map_err(|_| UnprotectError::Authentication)?;
            }
            Cipher::CmSha1 { ctr, mac, salt, .. } => {
                let mut expected = [0u8; 20];
                mac.sign(&[head, &guess.to_be_bytes()], &mut expected)
                    .map_err(|_| UnprotectError::Authentication)?;
                if !rtc::crypto::constant_time_eq(&expected[..tail.len()], tail) {
                    return Err(UnprotectError::Authentication);
                }
                let iv = Cipher::ctr_iv(salt, ssrc, index);
                ctr.apply_keystream(&iv, &mut head[header_len..])
                    .map_err(|_| UnprotectError::Authentication)?;
            }
        }
        // RFC 3711 3.3.1: only an authenticated packet moves the ROC and s_l.
        let state = &mut self.streams[stream];
        if guess == roc.wrapping_add(1) {
            (state.1, state.2) = (guess, sequence);
        } else if guess == roc && sequence > highest {
            state.2 = sequence;
        }
        Ok(end)
    }
}

/// RFC 3711 3.3.1 (appendix A): the ROC of a packet with `sequence`, given the stream's ROC and
/// highest sequence number.
fn estimate_roc(roc: u32, highest: u16, sequence: u16) -> u32 {
    if highest < 32_768 {
        if sequence > highest && sequence - highest > 32_768 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if sequence < highest - 32_768 {
        roc.wrapping_add(1)
    } else {
        roc
    }
}

/// Protects the RTCP packets (compound) one connection sends, as SRTCP (RFC 3711 3.4, RFC 7714
/// 9), always encrypted.
pub struct SrtcpSender {
    cipher: Cipher,
    /// The next SRTCP index (31 bits).
    index: u32,
}

impl SrtcpSender {
    /// Appends the SRTCP packet for the RTCP packet `rtcp` (at least its 8-byte header and
    /// sender SSRC) to `out`.
    pub fn protect(&mut self, rtcp: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if rtcp.len() < 8 {
            return Err(CryptoError::Provider(
                "an RTCP packet has at least 8 bytes".into(),
            ));
        }
        let index = self.index;
        self.index = (self.index + 1) & 0x7fff_ffff;
        let e_index = (index | 0x8000_0000).to_be_bytes();
        let start = out.len();
        out.extend_from_slice(rtcp);
        let ssrc: [u8; 4] = rtcp[4..8].try_into().expect("4 bytes");
        let mut counter = [0u8; 6];
        counter[2..].copy_from_slice(&index.to_be_bytes());
        let result = match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                // RFC 7714 9.1: AAD = the first 8 bytes || E || SRTCP index; the tag, then
                // E || index, follow the encrypted part.
                let iv = Cipher::gcm_iv(salt, &ssrc, counter);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&rtcp[..8]);
                aad[8..].copy_from_slice(&e_index);
                let mut tag = [0u8; GCM_TAG_LEN];
                aead.seal_in_place(&iv, &aad, &mut out[start + 8..], &mut tag)
                    .map(|()| {
                        out.extend_from_slice(&tag);
                        out.extend_from_slice(&e_index);
                    })
            }
            Cipher::CmSha1 {
                ctr,
                mac,
                salt,
                tag_len,
            } => {
                // RFC 3711 3.4: encrypt after the first 8 bytes, then E || index, then the tag
                // over everything before it.
                let iv = Cipher::ctr_iv(salt, &ssrc, counter);
                ctr.apply_keystream(&iv, &mut out[start + 8..])
                    .and_then(|()| {
                        out.extend_from_slice(&e_index);
                        let mut tag = [0u8; 20];
                        mac.sign(&[&out[start..]], &mut tag)?;
                        out.extend_from_slice(&tag[..*tag_len]);
                        Ok(())
                    })
            }
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// RFC 3711 4.3.1/4.3.3 with a key derivation rate of 0 (RFC 5764 4.1.2): AES-CM of the master
/// salt, with `label` in byte 7, under the master key.
fn derive_session_key(
    crypto: &dyn RTCCrypto,
    label: u8,
    master_key: &[u8; 16],
    master_salt: &[u8],
    len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(len.div_ceil(16) * 16);
    let mut counter: u16 = 0;
    while out.len() < len {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..16].copy_from_slice(&counter.to_be_bytes());
        crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// Writes the fixed RTP header (RFC 3550 5.1: version 2, no padding, extension or CSRC).
pub fn rtp_header(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) -> [u8; RTP_HEADER_LEN] {
    let mut h = [0u8; RTP_HEADER_LEN];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    h[2..4].copy_from_slice(&sequence.to_be_bytes());
    h[4..8].copy_from_slice(&timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    const MASTER_KEY: [u8; 16] = [
        0x0d, 0xcd, 0x21, 0x3e, 0x4c, 0xbc, 0xf2, 0x8f, 0x01, 0x7f, 0x69, 0x94, 0x40, 0x1e, 0x28,
        0x89,
    ];
    const MASTER_SALT: [u8; 14] = [
        0x62, 0x77, 0x60, 0x38, 0xc0, 0x6d, 0xc9, 0x41, 0x9f, 0x6d, 0xd9, 0x43, 0x3e, 0x7c,
    ];

    /// `rtc`'s own SRTP context, built through a capture, decrypts what we protect with the
    /// captured keys: the capture finds the keys, and our packets are what a receiver expects.
    fn round_trip(profile: ProtectionProfile, cipher: &str) {
        let salt = &MASTER_SALT[..profile.salt_len()];
        let capture = KeyCapture::new().unwrap();
        // What rtc's DTLS handler does after the handshake: the local context first.
        let mut receiver = Context::new(&MASTER_KEY, salt, profile, None, None, capture.crypto())
            .expect("rtc context");
        let mut sender = capture.sender(cipher).expect("captured keys");
        let payload: Vec<u8> = (0..1100u32).map(|i| (i * 7) as u8).collect();
        for (i, (sequence, roc)) in [(65_534u16, 0u32), (65_535, 0), (0, 1), (1, 1)]
            .into_iter()
            .enumerate()
        {
            let header = rtp_header(i == 3, 102, sequence, 90_000 + i as u32, 0x1234_5678);
            let mut out = vec![0xee; 3]; // protect appends
            sender.protect(&header, &payload, roc, &mut out).unwrap();
            let decrypted = receiver.decrypt_rtp(&out[3..]).expect("authentic SRTP");
            assert_eq!(&decrypted[..RTP_HEADER_LEN], &header);
            assert_eq!(&decrypted[RTP_HEADER_LEN..], &payload[..]);
        }
    }

    #[test]
    fn aes_gcm_packets_decrypt_with_rtc() {
        round_trip(ProtectionProfile::AeadAes128Gcm, "SRTP_AEAD_AES_128_GCM");
    }

    #[test]
    fn aes_cm_hmac_sha1_packets_decrypt_with_rtc() {
        round_trip(
            ProtectionProfile::Aes128CmHmacSha1_80,
            "SRTP_AES128_CM_HMAC_SHA1_80",
        );
        round_trip(
            ProtectionProfile::Aes128CmHmacSha1_32,
            "SRTP_AES128_CM_HMAC_SHA1_32",
        );
    }

    const REMOTE_KEY: [u8; 16] = [
        0x91, 0x2a, 0x07, 0xc3, 0x55, 0x10, 0xfe, 0x6b, 0x3d, 0x8e, 0x21, 0x74, 0xa9, 0x02, 0x5c,
        0xe7,
    ];
    const REMOTE_SALT: [u8; 14] = [
        0x17, 0x3b, 0x90, 0x4e, 0xd2, 0x68, 0x0a, 0xc5, 0x71, 0x2f, 0x9c, 0x36, 0xeb, 0x48,
    ];

    /// What a client connection's DTLS handler does: the local context, then the remote one,
    /// both through the capture. Returns our receiving side, `rtc`'s context that sends with
    /// the remote keys (the server) and `rtc`'s context that receives with the local keys.
    fn client_side(
        profile: ProtectionProfile,
        cipher: &str,
    ) -> (SrtpReceiver, SrtcpSender, Context, Context) {
        let salt_len = profile.salt_len();
        let capture = KeyCapture::new().unwrap();
        let _local = Context::new(
            &MASTER_KEY,
            &MASTER_SALT[..salt_len],
            profile,
            None,
            None,
            capture.crypto(),
        )
        .unwrap();
        let _remote = Context::new(
            &REMOTE_KEY,
            &REMOTE_SALT[..salt_len],
            profile,
            None,
            None,
            capture.crypto(),
        )
        .unwrap();
        let (receiver, srtcp) = capture.receiver(cipher).expect("captured keys");
        let plain = rtc::crypto::default_provider().unwrap();
        let server_send = Context::new(
            &REMOTE_KEY,
            &REMOTE_SALT[..salt_len],
            profile,
            None,
            None,
            plain.crypto(),
        )
        .unwrap();
        let server_receive = Context::new(
            &MASTER_KEY,
            &MASTER_SALT[..salt_len],
            profile,
            None,
            None,
            plain.crypto(),
        )
        .unwrap();
        (receiver, srtcp, server_send, server_receive)
    }

    /// `rtc` encrypts RTP with the remote keys, we decrypt it (across a sequence-number wrap,
    /// one packet late, with CSRCs and an extension), and tampered packets are refused; our
    /// SRTCP decrypts with `rtc`'s context of the local keys.
    fn receive_round_trip(profile: ProtectionProfile, cipher: &str) {
        let (mut receiver, mut srtcp, mut server, mut server_rtcp) = client_side(profile, cipher);
        let payload: Vec<u8> = (0..900u32).map(|i| (i * 13) as u8).collect();
        for (i, sequence) in [65_534u16, 65_535, 1, 0, 2].into_iter().enumerate() {
            let mut plain =
                rtp_header(i == 4, 102, sequence, 3000 * i as u32, 0xcafe_f00d).to_vec();
            if i == 2 {
                // One CSRC and a one-word extension (RFC 3550 5.3.1).
                plain[0] |= 0x11;
                plain.extend_from_slice(&[0, 0, 0, 7, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
            }
            plain.extend_from_slice(&payload);
            let encrypted = server.encrypt_rtp(&plain).expect("rtc encrypts");
            let mut buffer = encrypted.to_vec();
            let len = receiver.unprotect(&mut buffer).expect("authentic");
            assert_eq!(&buffer[..len], &plain[..], "packet {sequence}");

            let mut tampered = encrypted.to_vec();
            let middle = tampered.len() / 2;
            tampered[middle] ^= 1;
            assert_eq!(
                receiver.unprotect(&mut tampered),
                Err(UnprotectError::Authentication)
            );
            let mut wrong_tag = encrypted.to_vec();
            *wrong_tag.last_mut().unwrap() ^= 0x80;
            assert_eq!(
                receiver.unprotect(&mut wrong_tag),
                Err(UnprotectError::Authentication)
            );
        }
        assert_eq!(
            receiver.unprotect(&mut [0x80; 20]),
            Err(UnprotectError::Malformed)
        );
        assert_eq!(
            receiver.unprotect(&mut [0x00; 60]),
            Err(UnprotectError::Malformed)
        );

        let pli = [0x81, 206, 0, 2, 0, 0, 0, 9, 0xca, 0xfe, 0xf0, 0x0d];
        for _ in 0..3 {
            let mut out = vec![0xee; 2]; // protect appends
            srtcp.protect(&pli, &mut out).unwrap();
            let decrypted = server_rtcp
                .decrypt_rtcp(&out[2..])
                .expect("authentic SRTCP");
            assert_eq!(&decrypted[..], &pli[..]);
        }
    }

    #[test]
    fn aes_gcm_packets_from_rtc_decrypt_and_our_srtcp_decrypts_with_rtc() {
        receive_round_trip(ProtectionProfile::AeadAes128Gcm, "SRTP_AEAD_AES_128_GCM");
    }

    #[test]
    fn aes_cm_hmac_sha1_packets_from_rtc_decrypt_and_our_srtcp_decrypts_with_rtc() {
        receive_round_trip(
            ProtectionProfile::Aes128CmHmacSha1_80,
            "SRTP_AES128_CM_HMAC_SHA1_80",
        );
    }

    #[test]
    fn roc_estimates_follow_rfc_3711() {
        assert_eq!(estimate_roc(0, 65_535, 0), 1);
        assert_eq!(estimate_roc(1, 0, 65_535), 0);
        assert_eq!(estimate_roc(1, 10, 11), 1);
        assert_eq!(estimate_roc(0, 40_000, 10_000), 0);
        assert_eq!(estimate_roc(0, 40_000, 7_000), 1);
    }

    #[test]
    fn no_keys_and_unknown_profiles_are_errors() {
        let capture = KeyCapture::new().unwrap();
        assert!(capture.sender("SRTP_AEAD_AES_128_GCM").is_err());
        assert!(capture.sender("SRTP_AEAD_AES_256_GCM").is_err());
    }
}
