//! TLS 1.3 for QUIC, authenticated by identity keys alone.
//!
//! Both sides present their Ed25519 identity as an RFC 7250 raw public key; there are no
//! certificates, no CAs and no names. The caller pins the key from the ticket, so the handshake
//! itself fails if someone else answers. The callee accepts any valid key and applies its
//! policy after the handshake, when it knows who is calling.
//!
//! Forward secrecy is not optional: no session tickets, no resumption, no 0-RTT, so every
//! connection derives its keys from a fresh key exchange, and that exchange is always the
//! hybrid post-quantum X25519MLKEM768. It is the only group offered or accepted: both ends are
//! EXTRA SAFE, and the hybrid is never weaker than X25519 alone, so a downgrade buys an attacker
//! nothing but a failed call.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use extrasafe_core::{Identity, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{
    aws_lc_rs, ActiveKeyExchange, CompletedKeyExchange, CryptoProvider, SupportedKxGroup,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, PeerIncompatible,
    SignatureScheme,
};

/// The ALPN protocol ID of this protocol generation.
pub const ALPN: &[u8] = b"extrasafe/1";
/// Name of the only key-exchange group used.
pub const KEY_EXCHANGE: &str = "X25519MLKEM768";

/// Counts completed server-side key exchanges, so tests and diagnostics can see which group
/// a handshake actually used rather than which was configured.
struct CountedGroup {
    inner: &'static dyn SupportedKxGroup,
    completed: AtomicU64,
}

impl fmt::Debug for CountedGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.inner.name())
    }
}

impl SupportedKxGroup for CountedGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        self.inner.start()
    }
    fn start_and_complete(&self, peer: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        let done = self.inner.start_and_complete(peer)?;
        self.completed.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }
    fn name(&self) -> NamedGroup {
        self.inner.name()
    }
    fn fips(&self) -> bool {
        self.inner.fips()
    }
    fn usable_for_version(&self, v: rustls::ProtocolVersion) -> bool {
        self.inner.usable_for_version(v)
    }
}

static HYBRID_PQ: CountedGroup = CountedGroup {
    inner: aws_lc_rs::kx_group::X25519MLKEM768,
    completed: AtomicU64::new(0),
};

/// How many handshakes this process completed as a server, per key-exchange group.
pub fn server_key_exchanges() -> Vec<(NamedGroup, u64)> {
    vec![(
        HYBRID_PQ.name(),
        HYBRID_PQ.completed.load(Ordering::Relaxed),
    )]
}

/// Pays aws-lc's one-time set-up (30–50 ms here, measured on the first X25519MLKEM768 key
/// generation of a process) before a user places or answers a call, not during it.
pub fn warm_up() {
    let _ = HYBRID_PQ.inner.start();
}

/// aws-lc-rs with TLS 1.3 suites only and the hybrid post-quantum group only.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.kx_groups = vec![&HYBRID_PQ];
    p.cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    Arc::new(p)
}

/// Loads the identity into a TLS signing key. The PKCS#8 copy is wiped on return; the key
/// then lives only inside aws-lc, which clears it when freed.
pub fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let der = identity.to_pkcs8_der();
    let key = aws_lc_rs::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(&der[..]))?;
    let spki = CertificateDer::from(identity.peer_id().to_spki_der());
    Ok(Arc::new(CertifiedKey::new(vec![spki], key)))
}

fn verify_sig(
    algs: &WebPkiSupportedAlgorithms,
    msg: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerIncompatible(
            PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    rustls::crypto::verify_tls13_signature_with_raw_key(
        msg,
        &SubjectPublicKeyInfoDer::from(cert.as_ref()),
        dss,
        algs,
    )
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(PeerIncompatible::Tls13RequiredForQuic)
}

/// What the caller learned during the handshake, read after it fails or succeeds.
#[derive(Debug, Default)]
pub struct PinObservation {
    proved: Mutex<Option<PeerId>>,
}

impl PinObservation {
    /// The key the other side *proved* (signed the handshake with), if any. A key that was
    /// only presented is not recorded: anyone on the path can present any key.
    pub fn proved(&self) -> Option<PeerId> {
        *self.proved.lock().expect("pin observation lock poisoned")
    }
}

/// The caller's verifier: the server must hold exactly the pinned key.
#[derive(Debug)]
struct PinnedServerKey {
    expected: PeerId,
    observation: Arc<PinObservation>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Only the form is checked here; whether it is the pinned key is decided once the
        // signature proves possession (below), so an error can name a proven key.
        PeerId::from_spki_der(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = verify_sig(&self.algs, msg, cert, dss)?;
        let peer = PeerId::from_spki_der(cert.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        *self
            .observation
            .proved
            .lock()
            .expect("pin observation lock poisoned") = Some(peer);
        if peer != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(valid)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The callee's verifier: any valid Ed25519 key may knock; policy decides later.
#[derive(Debug)]
struct AnyPeerKey {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyPeerKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        PeerId::from_spki_der(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_sig(&self.algs, msg, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The listening side's TLS configuration.
pub fn server_config(
    key: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyPeerKey { algs }))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(key)));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(cfg)
}

/// The calling side's TLS configuration for one call, pinned to `expected`.
pub fn client_config(
    key: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
    expected: PeerId,
    observation: Arc<PinObservation>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerKey {
            expected,
            observation,
            algs,
        }))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(key)));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_early_data = false;
    // The server name would travel in clear text; there is no name to check anyway.
    cfg.enable_sni = false;
    Ok(cfg)
}

/// The identity the peer proved in the handshake.
pub fn peer_of(conn: &quinn::Connection) -> Option<PeerId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    PeerId::from_spki_der(certs.first()?.as_ref()).ok()
}
