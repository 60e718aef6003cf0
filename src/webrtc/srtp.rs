//! SRTP for the media we send (RFC 3711; AES-GCM per RFC 7714), written straight into the
//! engine's outgoing buffer.
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
//! default provider and keeps the first such block it sees: with the pinned `rtc` =0.21.1 that
//! is the local (sending) context's SRTP encryption key (label 0), so the master key is the
//! block's key and the master salt is the block's first bytes. A wrong capture cannot go
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
const MASTER_KEY_LEN: usize = 16;

/// Crypto provider for one connection that remembers the first AES-128 key-derivation block
/// `rtc` computes through it (see the module docs).
pub struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    first_block: Mutex<Option<([u8; 16], [u8; 16])>>,
}

impl KeyCapture {
    pub fn new() -> Result<Arc<Self>, CryptoError> {
        Ok(Arc::new(KeyCapture {
            inner: rtc::crypto::default_provider()?,
            first_block: Mutex::new(None),
        }))
    }

    /// The sending side's SRTP, once DTLS has completed; `cipher` is the negotiated profile as
    /// `rtc`'s transport statistics name it (e.g. `SRTP_AEAD_AES_128_GCM`).
    pub fn sender(&self, cipher: &str) -> Result<SrtpSender, String> {
        let profile = match cipher {
            "SRTP_AEAD_AES_128_GCM" => Profile::AeadAes128Gcm,
            "SRTP_AES128_CM_HMAC_SHA1_80" => Profile::Aes128CmHmacSha1 { tag_len: 10 },
            "SRTP_AES128_CM_HMAC_SHA1_32" => Profile::Aes128CmHmacSha1 { tag_len: 4 },
            other => return Err(format!("SRTP profile {other:?} is not supported")),
        };
        let Some((key, block)) = *self.first_block.lock().unwrap_or_else(|e| e.into_inner()) else {
            return Err("the SRTP keys were not derived (DTLS not complete?)".into());
        };
        // Label 0, block 0: the PRF input is exactly the salt, zero-padded.
        let salt = &block[..profile.salt_len()];
        SrtpSender::new(profile, &key, salt, self.inner.crypto()).map_err(|e| e.to_string())
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
            let mut first = self.first_block.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                if let (Ok(key), Ok(input)) = (key.try_into(), (&*block).try_into()) {
                    *first = Some((key, input));
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

/// Protects the RTP packets one connection sends.
pub struct SrtpSender {
    cipher: Cipher,
}

impl SrtpSender {
    fn new(
        profile: Profile,
        master_key: &[u8; 16],
        master_salt: &[u8],
        crypto: &dyn RTCCrypto,
    ) -> Result<Self, CryptoError> {
        let derive = |label, len| derive_session_key(crypto, label, master_key, master_salt, len);
        let cipher = match profile {
            Profile::AeadAes128Gcm => Cipher::Gcm {
                aead: crypto.new_aead(
                    AeadAlgorithm::Aes128Gcm,
                    &derive(LABEL_SRTP_ENCRYPTION, MASTER_KEY_LEN)?,
                )?,
                salt: derive(LABEL_SRTP_SALT, 12)?
                    .try_into()
                    .expect("12 bytes derived"),
            },
            Profile::Aes128CmHmacSha1 { tag_len } => Cipher::CmSha1 {
                ctr: crypto.new_stream_cipher(
                    StreamCipherAlgorithm::Aes128Ctr,
                    &derive(LABEL_SRTP_ENCRYPTION, MASTER_KEY_LEN)?,
                )?,
                mac: crypto
                    .new_hmac(HmacAlgorithm::Sha1, &derive(LABEL_SRTP_AUTHENTICATION, 20)?)?,
                salt: derive(LABEL_SRTP_SALT, 14)?
                    .try_into()
                    .expect("14 bytes derived"),
                tag_len,
            },
        };
        Ok(SrtpSender { cipher })
    }

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
                // RFC 7714 8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(ssrc);
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(sequence);
                for (v, s) in iv.iter_mut().zip(salt.iter()) {
                    *v ^= s;
                }
                let mut tag = [0u8; 16];
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
                // RFC 3711 4.1.1: IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16).
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(ssrc);
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(sequence);
                for (v, s) in iv.iter_mut().zip(salt.iter()) {
                    *v ^= s;
                }
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

    #[test]
    fn no_keys_and_unknown_profiles_are_errors() {
        let capture = KeyCapture::new().unwrap();
        assert!(capture.sender("SRTP_AEAD_AES_128_GCM").is_err());
        assert!(capture.sender("SRTP_AEAD_AES_256_GCM").is_err());
    }
}
