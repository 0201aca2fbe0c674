//! TLS for the encrypted upstreams, on rustls with the ring provider.
//!
//! One `ClientConfig` per upstream, so its session cache resumes sessions
//! with that server across reconnects (TLS 1.3 tickets, TLS 1.2 ids).
//! Certificates are checked against the PEM bundle of `ca_file` (on
//! OpenWrt, the ca-bundle package) with the upstream's host as the expected
//! name; `allow_insecure` accepts any certificate, for self-signed servers,
//! but still checks that the server holds the key of the certificate it
//! shows.
//!
//! Neighbours: `tcp` (DoT connections are TLS over its pipeline), `https`
//! (DoH), `quic` (DoQ takes the same config), `forwarder` (builds one per
//! upstream).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

use super::ForwardError;

/// The ring provider, which builds for every router target.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the trusted certificates from a PEM bundle.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    let mut bad = 0;
    for cert in certs {
        match cert {
            Ok(c) => {
                if roots.add(c).is_err() {
                    bad += 1;
                }
            }
            Err(e) => return Err(format!("ca_file {}: {e}", path.display())),
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "ca_file {}: no certificates in it (install ca-bundle, or set ca_file)",
            path.display()
        ));
    }
    if bad > 0 {
        log::debug!(
            "ca_file {}: skipped {bad} unusable certificate(s)",
            path.display()
        );
    }
    Ok(Arc::new(roots))
}

/// The client side of TLS to one upstream.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry (and the SNI, for a host name).
    pub name: ServerName<'static>,
}

impl TlsClient {
    /// `host` is the upstream URL's host (a name or an IP address); `alpn`
    /// the application protocols to offer (`dot`, `h2`, `doq` ...).
    pub fn new(
        host: &str,
        roots: Option<Arc<RootCertStore>>,
        alpn: &[&[u8]],
    ) -> Result<TlsClient, String> {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|e| format!("'{host}' cannot be a TLS server name: {e}"))?,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut config = match roots {
            Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }
}

impl TlsClient {
    /// The TLS handshake on a connected stream (DoT, DoH, TLS to a proxy
    /// server); a failure carries rustls's reason. The caller bounds it in
    /// time.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<TlsStream<S>, ForwardError> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), stream)
            .await
            .map_err(ForwardError::from_tls)
    }
}

/// `allow_insecure`: any certificate is taken, but the handshake signature
/// must still be made with the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
