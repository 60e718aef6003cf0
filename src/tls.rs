//! Server certificates for HTTPS (and WSS) and RTMPS: TLS 1.2/1.3 (RFC 5246, RFC 8446) with
//! rustls and its ring provider, no OpenSSL.
//!
//! The certificate comes from PEM files (`tls.cert_file`, the chain with the leaf first, and
//! `tls.key_file`), or, for development, from `tls.self_signed`: a certificate made at boot
//! (rcgen) for `localhost`, the loopback and interface addresses, the host name and
//! `tls.hostnames`, so that a browser on another host can open the camera page in a secure
//! context (`getUserMedia` needs one) once its user trusts the certificate. It is written to
//! `tls.self_signed_dir` and kept while the names it covers stay the same, so a browser that
//! trusted it keeps trusting it across restarts; its path and SHA-256 fingerprint are logged.
//!
//! RTMPS is RTMP inside a TLS connection (what OBS and CDNs call `rtmps://`); HTTPS offers
//! HTTP/2 and HTTP/1.1 by ALPN (RFC 7301), since LL-HLS players want HTTP/2.

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// The `[tls]` section of the configuration: the certificate of `http.https_listen` and
/// `rtmp.rtmps_listen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate chain, the server's certificate first (empty: none).
    pub cert_file: String,
    /// PEM file of the private key of `cert_file` (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: String,
    /// Development: without `cert_file`, make a self-signed certificate at boot for
    /// `localhost`, this host's name and addresses and `hostnames`, and log its path and
    /// SHA-256 fingerprint (trust it in the browser, or pass it to clients as their CA).
    pub self_signed: bool,
    /// More DNS names or IP addresses the self-signed certificate is made for (e.g. the name
    /// other hosts reach this one by).
    pub hostnames: Vec<String>,
    /// Where the self-signed certificate (`cert.pem`) and key (`key.pem`) are kept, a directory
    /// only this user may write to; empty: `~/.cache/switchyard/tls` (without `HOME`,
    /// `switchyard-tls-UID` in the system's temporary directory).
    pub self_signed_dir: String,
}

impl TlsConfig {
    /// Checks that the keys fit together (files are read at boot, by [`ServerTls::load`]).
    pub fn validate(&self, listeners: &[(&str, bool)]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cert_file.is_empty() == self.key_file.is_empty(),
            "tls.cert_file and tls.key_file go together: set both or neither"
        );
        anyhow::ensure!(
            !self.self_signed || self.cert_file.is_empty(),
            "tls.self_signed makes a certificate: leave tls.cert_file and tls.key_file empty, or set tls.self_signed = false"
        );
        for (key, on) in listeners {
            anyhow::ensure!(
                !on || self.has_certificate(),
                "{key} needs a certificate: set tls.cert_file and tls.key_file, or tls.self_signed = true"
            );
        }
        Ok(())
    }

    fn has_certificate(&self) -> bool {
        self.self_signed || !self.cert_file.is_empty()
    }
}

/// The server's certificate chain and key, loaded or made once at boot.
pub struct ServerTls {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The PEM file of the certificate (what a client passes as its CA for a self-signed one).
    pub cert_path: PathBuf,
    /// SHA-256 of the server's certificate, `AB:CD:...`.
    pub fingerprint: String,
}

/// ALPN protocols of the HTTPS listener, preferred first.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

impl ServerTls {
    /// The configured certificate, `None` when there is none; an error a person can act on
    /// when a file is missing, unreadable, holds no certificate or key, or the key is not the
    /// certificate's.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<ServerTls>> {
        let (cert_path, key_path) = if config.self_signed {
            make_self_signed(config)?
        } else if !config.cert_file.is_empty() {
            (
                PathBuf::from(&config.cert_file),
                PathBuf::from(&config.key_file),
            )
        } else {
            return Ok(None);
        };
        let certs = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        let tls = ServerTls {
            fingerprint: fingerprint(&certs[0]),
            certs,
            key,
            cert_path,
        };
        // Refuse a key that is not the certificate's now, not at the first handshake.
        tls.server_config(&[]).map_err(|e| {
            anyhow::anyhow!(
                "tls.key_file {} does not go with tls.cert_file {}: {e}",
                key_path.display(),
                tls.cert_path.display()
            )
        })?;
        Ok(Some(tls))
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A TLS acceptor offering `alpn` (none for RTMPS).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let config = self
            .server_config(alpn)
            .expect("the certificate and key were checked at load");
        TlsAcceptor::from(Arc::new(config))
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let what = format!("tls.cert_file {}", path.display());
    std::fs::metadata(path).map_err(|e| file_error(&what, e))?;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{what}: not a PEM certificate file: {e}"))?;
    anyhow::ensure!(!certs.is_empty(), "{what}: no CERTIFICATE in it");
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let what = format!("tls.key_file {}", path.display());
    std::fs::metadata(path).map_err(|e| file_error(&what, e))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{what}: no PRIVATE KEY in it")
        }
        e => anyhow::anyhow!("{what}: not a PEM private key file: {e}"),
    })
}

fn file_error(what: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{what}: no such file"),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!("{what}: permission denied"),
        _ => anyhow::anyhow!("{what}: {e}"),
    }
}

/// `AB:CD:...`, the form browsers and `openssl x509 -fingerprint -sha256` show.
fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The names a self-signed certificate is made for: `localhost`, the host name, the loopback
/// and interface addresses, and `extra`.
fn self_signed_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Some(host) = host_name() {
        names.push(host);
    }
    names.push("127.0.0.1".to_string());
    names.push("::1".to_string());
    names.extend(
        crate::webrtc::udp::interface_ips(true)
            .iter()
            .map(|ip| ip.to_string()),
    );
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (!name.is_empty() && name != "localhost").then(|| name.to_string())
}

/// How long a self-signed certificate is valid.
const SELF_SIGNED_VALIDITY: time::Duration = time::Duration::days(397);
/// A self-signed certificate older than this is made anew at boot, long before it expires.
const SELF_SIGNED_REUSE: std::time::Duration = std::time::Duration::from_secs(300 * 86_400);

/// Makes (or finds, made earlier for the same names) the self-signed certificate; returns
/// the paths of its certificate and key.
fn make_self_signed(config: &TlsConfig) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match (config.self_signed_dir.as_str(), std::env::var_os("HOME")) {
        ("", Some(home)) => PathBuf::from(home).join(".cache/switchyard/tls"),
        // SAFETY: geteuid has no preconditions.
        ("", None) => {
            std::env::temp_dir().join(format!("switchyard-tls-{}", unsafe { libc::geteuid() }))
        }
        (dir, _) => PathBuf::from(dir),
    };
    private_dir(&dir)?;
    let names = self_signed_names(&config.hostnames);
    let (cert_path, key_path, names_path) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("names.txt"),
    );
    let names_text = names.join("\n") + "\n";
    let same_names = std::fs::read_to_string(&names_path).is_ok_and(|t| t == names_text);
    let fresh = std::fs::metadata(&cert_path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < SELF_SIGNED_REUSE));
    if same_names && fresh && read_certs(&cert_path).is_ok() && read_key(&key_path).is_ok() {
        tracing::info!(cert = %cert_path.display(), "reusing the self-signed certificate made earlier for these names");
        return Ok((cert_path, key_path));
    }
    let mut params = rcgen::CertificateParams::new(names.clone())
        .with_context(|| format!("tls.hostnames: {:?}", config.hostnames))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Switchyard development certificate",
    );
    // Apple's platforms refuse server certificates valid for more than 825 days or without
    // the serverAuth usage, even ones their user trusts; a phone is a likely camera.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + SELF_SIGNED_VALIDITY;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params
        .self_signed(&key)
        .context("making the self-signed certificate")?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_private(&cert_path, cert.pem().as_bytes())?;
    write_private(&names_path, names_text.as_bytes())?;
    tracing::info!(names = ?names, cert = %cert_path.display(), "made a self-signed certificate");
    Ok((cert_path, key_path))
}

/// Creates `dir` (mode 0700) or checks that it is this user's and nobody else may write to it:
/// a key another user could plant there would not be a secret.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let what = || format!("tls.self_signed_dir {}", dir.display());
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        builder.mode(0o700);
        builder.create(dir).with_context(what)?;
        let meta = std::fs::metadata(dir).with_context(what)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        anyhow::ensure!(
            meta.uid() == me && meta.mode() & 0o022 == 0,
            "{}: other users may write to it; give a directory only this user can write to",
            what()
        );
    }
    #[cfg(not(unix))]
    builder.create(dir).with_context(what)?;
    Ok(())
}

/// Writes `path` readable by this user only, atomically (another server starting at the same
/// time sees the old file or the new one, never half of one).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    result.with_context(|| format!("writing {}", path.display()))
}

/// Logs where the certificate is and how to trust it, and the `https://` URLs of `listen`.
pub fn log_certificate(tls: &ServerTls) {
    tracing::info!(
        cert = %tls.cert_path.display(),
        sha256 = %tls.fingerprint,
        "TLS certificate (clients of a self-signed one trust this file, e.g. curl --cacert, ffmpeg -ca_file)"
    );
}

/// The URLs a browser on this host or another can open for a listener bound to `addr`.
pub fn urls(scheme: &str, addr: std::net::SocketAddr) -> Vec<String> {
    let ips = if addr.ip().is_unspecified() {
        crate::webrtc::udp::interface_ips(addr.is_ipv6())
    } else {
        vec![addr.ip()]
    };
    ips.into_iter()
        .map(|ip| format!("{scheme}://{}/", std::net::SocketAddr::new(ip, addr.port())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_need_a_certificate_and_the_keys_fit_together() {
        let none = TlsConfig::default();
        assert!(none.validate(&[("http.https_listen", false)]).is_ok());
        let e = none
            .validate(&[("rtmp.rtmps_listen", true)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("rtmp.rtmps_listen needs a certificate"),
            "{e}"
        );
        let half = TlsConfig {
            cert_file: "/c.pem".into(),
            ..Default::default()
        };
        assert!(half.validate(&[]).is_err());
        let both = TlsConfig {
            cert_file: "/c.pem".into(),
            key_file: "/k.pem".into(),
            self_signed: true,
            ..Default::default()
        };
        assert!(both.validate(&[]).is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let config = TlsConfig {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            ..Default::default()
        };
        let e = ServerTls::load(&config).err().unwrap().to_string();
        assert_eq!(e, "tls.cert_file /nonexistent/cert.pem: no such file");
    }

    #[test]
    fn self_signed_certificate_is_made_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("switchyard-tls-unit-{}", std::process::id()));
        let config = TlsConfig {
            self_signed: true,
            hostnames: vec!["cam.example".into(), "10.9.8.7".into()],
            self_signed_dir: dir.display().to_string(),
            ..Default::default()
        };
        let first = ServerTls::load(&config).unwrap().unwrap();
        let second = ServerTls::load(&config).unwrap().unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let names = std::fs::read_to_string(dir.join("names.txt")).unwrap();
        assert!(names.contains("cam.example\n") && names.contains("10.9.8.7\n"));
        let other = TlsConfig {
            hostnames: vec!["other.example".into()],
            ..config
        };
        let third = ServerTls::load(&other).unwrap().unwrap();
        assert_ne!(
            third.fingerprint, first.fingerprint,
            "new names, new certificate"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_may_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("switchyard-tls-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = TlsConfig {
            self_signed: true,
            self_signed_dir: dir.display().to_string(),
            ..Default::default()
        };
        let e = ServerTls::load(&config).err().unwrap().to_string();
        assert!(e.contains("other users may write to it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
