use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::server::UnbufferedServerConnection;
use rustls::HandshakeKind;

use super::stream::MAX_HELD;
use super::Records;
use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn files(cert: &str, key: &str) -> TlsFiles {
    TlsFiles {
        cert: fixture(cert),
        key: fixture(key),
    }
}

type Server = TlsStream<UnbufferedServerConnection>;
type Client = TlsStream<UnbufferedClientConnection>;

fn server(cfg: &Arc<rustls::ServerConfig>) -> Server {
    TlsStream::new(UnbufferedServerConnection::new(cfg.clone()).unwrap())
}

fn client(cfg: &Arc<rustls::ClientConfig>) -> Client {
    let name = config::server_name("localhost").unwrap();
    TlsStream::new(UnbufferedClientConnection::new(cfg.clone(), name).unwrap())
}

/// Move every pending byte between the two until neither has output, feeding `chunk`
/// bytes at a time; returns the plaintext each side received.
fn pump(c: &mut Client, s: &mut Server, chunk: usize) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let (mut to_c, mut to_s) = (Vec::new(), Vec::new());
    for _ in 0..64 {
        let (co, so) = (c.take_output(), s.take_output());
        if co.is_none() && so.is_none() {
            return Ok((to_c, to_s));
        }
        for piece in co.unwrap_or_default().chunks(chunk) {
            s.input(&mut piece.to_vec(), &mut |p| to_s.extend_from_slice(p))?;
        }
        for piece in so.unwrap_or_default().chunks(chunk) {
            c.input(&mut piece.to_vec(), &mut |p| to_c.extend_from_slice(p))?;
        }
    }
    panic!("the handshake did not settle in 64 rounds");
}

/// A client and a server through a whole handshake.
fn handshake(
    ccfg: &Arc<rustls::ClientConfig>,
    scfg: &Arc<rustls::ServerConfig>,
) -> (Client, Server) {
    let (mut c, mut s) = (client(ccfg), server(scfg));
    start(&mut c);
    pump(&mut c, &mut s, 1 << 20).unwrap();
    (c, s)
}

/// The client speaks first: kick it (an empty input makes it produce its hello).
fn start(c: &mut Client) {
    c.input(&mut [], &mut |_| panic!("no data yet")).unwrap();
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let store = Arc::new(CertStore::load(files("server.pem", "server.key")).unwrap());
    let s = server_config(store).unwrap();
    let c = client_config(&Trust::Ca(fixture("ca.pem")), true).unwrap();
    (s, c)
}

#[test]
fn a_handshake_then_data_both_ways_whatever_the_read_sizes() {
    let (scfg, ccfg) = configs();
    for chunk in [1, 7, 300, 1 << 20] {
        let (mut c, mut s) = (client(&ccfg), server(&scfg));
        start(&mut c);
        pump(&mut c, &mut s, chunk).unwrap();
        assert!(c.is_established() && s.is_established(), "chunk {chunk}");
        assert_eq!(s.endpoint().alpn_protocol(), Some(&b"http/1.1"[..]));
        // The server's preference wins over the client's (rustls puts AES-256 first).
        assert_eq!(
            s.endpoint().negotiated_cipher_suite().map(|c| c.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let msg: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        c.encrypt(&msg, &mut wire).unwrap();
        assert!(wire.len() > msg.len(), "records add their overhead");
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            s.input(&mut piece.to_vec(), &mut |p| got.extend_from_slice(p))
                .unwrap();
        }
        assert_eq!(got, msg, "chunk {chunk}");
        // Nothing is held between whole records.
        assert_eq!(s.held_bytes(), 0, "chunk {chunk}");
        let mut back = Vec::new();
        s.encrypt(b"pong", &mut back).unwrap();
        let mut got = Vec::new();
        c.input(&mut back, &mut |p| got.extend_from_slice(p))
            .unwrap();
        assert_eq!(got, b"pong");
    }
}

#[test]
fn a_second_connection_resumes_with_the_ticket_of_the_first() {
    let (scfg, ccfg) = configs();
    let (_c, s) = handshake(&ccfg, &scfg);
    assert_eq!(s.handshake_kind(), Some(HandshakeKind::Full));
    let (_c2, s2) = handshake(&ccfg, &scfg);
    assert_eq!(s2.handshake_kind(), Some(HandshakeKind::Resumed));

    // Without resumption on the client, every handshake is a full one.
    let fresh = client_config(&Trust::Ca(fixture("ca.pem")), false).unwrap();
    for _ in 0..2 {
        let (_c, s) = handshake(&fresh, &scfg);
        assert_eq!(s.handshake_kind(), Some(HandshakeKind::Full));
    }
}

#[test]
fn tls12_clients_are_served_and_resume_too() {
    let (scfg, _) = configs();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let ccfg = Arc::new(
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (_c, s) = handshake(&ccfg, &scfg);
        assert_eq!(
            s.endpoint().protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        kinds.push(s.handshake_kind());
    }
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
}

#[test]
fn a_client_that_does_not_trust_the_ca_fails_and_the_server_is_told() {
    let (scfg, _) = configs();
    let other = client_config(&Trust::Ca(fixture("server2.pem")), false).unwrap();
    let (mut c, mut s) = (client(&other), server(&scfg));
    start(&mut c);
    let err = pump(&mut c, &mut s, 1 << 20).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err}");
    // The client's alert reaches the server, which fails too.
    let alert = c.take_output().expect("an alert");
    let err = s.input(&mut alert.clone(), &mut |_| {}).unwrap_err();
    assert!(format!("{err}").contains("alert"), "{err}");
    assert!(s.failed());
}

#[test]
fn garbage_and_plain_http_fail_with_an_alert_and_hold_nothing() {
    let (scfg, _) = configs();
    for input in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
        &[0x17; 64][..],
    ] {
        let mut s = server(&scfg);
        let r = s.input(&mut input.to_vec(), &mut |_| panic!("no data"));
        if r.is_ok() {
            // A header announcing a record rustls must refuse, or a partial one: held.
            assert!(s.held_bytes() <= MAX_HELD);
            continue;
        }
        assert!(s.failed());
        assert_eq!(
            s.held_bytes() - s.take_output().map_or(0, |o| o.capacity()),
            0
        );
    }
}

#[test]
fn a_record_that_never_ends_is_bounded() {
    let (scfg, ccfg) = configs();
    let (_c, mut s) = handshake(&ccfg, &scfg);
    // An application-data header promising 16 KiB, then bytes that never complete it, then
    // more such headers: each is refused or held, never more than MAX_HELD.
    let mut fed = 0;
    let mut failed = false;
    for _ in 0..200 {
        let mut junk = vec![0x17, 0x03, 0x03, 0x40, 0x00];
        junk.extend(std::iter::repeat_n(0xAA, 1000));
        fed += junk.len();
        if s.input(&mut junk, &mut |_| {}).is_err() {
            failed = true;
            break;
        }
        assert!(s.held_bytes() <= MAX_HELD + 2048, "{}", s.held_bytes());
    }
    assert!(
        failed,
        "fed {fed} bytes of never-ending records and was not refused"
    );
}

#[test]
fn close_notify_reaches_the_peer() {
    let (scfg, ccfg) = configs();
    let (mut c, mut s) = handshake(&ccfg, &scfg);
    c.close_notify();
    let mut wire = c.take_output().expect("close_notify");
    s.input(&mut wire, &mut |_| {}).unwrap();
    assert!(s.peer_closed());
}

#[test]
fn a_bad_or_mismatched_key_is_refused_with_the_file_names() {
    let err = CertStore::load(files("server.pem", "server2.key")).unwrap_err();
    assert!(
        err.contains("does not belong") && err.contains("server2.key"),
        "{err}"
    );
    let err = CertStore::load(files("server.pem", "missing.key")).unwrap_err();
    assert!(err.contains("missing.key"), "{err}");
    let err = CertStore::load(files("server.key", "server.key")).unwrap_err();
    assert!(err.contains("no CERTIFICATE"), "{err}");
    let err = CertStore::load(files("server.pem", "server.pem")).unwrap_err();
    assert!(err.contains("no PRIVATE KEY"), "{err}");
    assert!(CertStore::load(files("server-rsa.pem", "server-rsa.key")).is_ok());
}

#[test]
fn a_reload_changes_the_certificate_for_new_handshakes_only() {
    let dir = std::env::temp_dir().join(format!("holdfast-tls-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(fixture("server.pem"), &cert).unwrap();
    std::fs::copy(fixture("server.key"), &key).unwrap();
    let store = Arc::new(
        CertStore::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap(),
    );
    let first = store.current();
    // A half-written pair (new certificate, old key) is refused; the old pair stays.
    std::fs::copy(fixture("server2.pem"), &cert).unwrap();
    assert!(store.reload().is_err());
    assert!(Arc::ptr_eq(&first, &store.current()));
    std::fs::copy(fixture("server2.key"), &key).unwrap();
    store.reload().unwrap();
    assert_ne!(first.cert[0], store.current().cert[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_tls_is_probed_without_failing() {
    // Either answer is fine; the probe must not panic or leak (it runs at every start).
    match kernel_tls() {
        KernelTls::Available => {}
        KernelTls::Unavailable(why) => assert!(!why.is_empty()),
    }
}

#[test]
fn a_connection_s_tls_state_stays_small() {
    // Printed for the record (docs/benchmarks.md); bounded so growth is a decision. The
    // heap behind it (keys, the handshake state) is measured by the density benchmark.
    let server = std::mem::size_of::<TlsStream<UnbufferedServerConnection>>();
    let client = std::mem::size_of::<TlsStream<UnbufferedClientConnection>>();
    println!("TLS stream: server {server} B, client {client} B");
    assert!(server <= 1200 && client <= 1200, "{server} {client}");
}

#[test]
fn a_load_generator_s_first_connections_are_full_and_its_reconnects_resume() {
    let (scfg, _) = configs();
    let both = client_configs(&Trust::Ca(fixture("ca.pem")), true).unwrap();
    let mut kinds = Vec::new();
    for cfg in [&both.fresh, &both.fresh, &both.returning, &both.returning] {
        let (_c, s) = handshake(cfg, &scfg);
        kinds.push(s.handshake_kind().unwrap());
    }
    use HandshakeKind::{Full, Resumed};
    // The two first connections left two tickets: both reconnects resume with them.
    assert_eq!(kinds, [Full, Full, Resumed, Resumed]);
}

/// A client that offers only `suite` (and the versions it belongs to).
fn client_with_suite(suite: rustls::SupportedCipherSuite) -> Arc<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Handshake, then turn the server into its compact record layer; the tickets it still
/// had to send reach the client.
fn established(
    ccfg: &Arc<rustls::ClientConfig>,
    scfg: &Arc<rustls::ServerConfig>,
) -> (Client, Records) {
    let (mut c, mut s) = (client(ccfg), server(scfg));
    start(&mut c);
    // Stop once the server is established (tickets may still be in its output).
    for _ in 0..16 {
        if let Some(mut o) = c.take_output() {
            s.input(&mut o, &mut |_| {}).unwrap();
        }
        if s.is_established() {
            break;
        }
        if let Some(mut o) = s.take_output() {
            c.input(&mut o, &mut |_| {}).unwrap();
        }
    }
    let (records, out) = s.into_records().unwrap();
    if let Some(mut o) = out {
        c.input(&mut o, &mut |_| panic!("no data")).unwrap();
    }
    assert!(c.is_established());
    (c, records)
}

#[test]
fn the_compact_record_layer_interoperates_with_rustls_in_every_suite_and_version() {
    use rustls::crypto::ring::cipher_suite::*;
    let (scfg, _) = configs();
    for suite in [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let ccfg = client_with_suite(suite);
        let (mut c, mut r) = established(&ccfg, &scfg);
        assert_eq!(
            c.endpoint().negotiated_cipher_suite(),
            Some(suite),
            "{suite:?}"
        );
        for (len, chunk) in [(1, 1), (5, 3), (1000, 7), (40_000, 300), (70_000, 1 << 20)] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut wire = Vec::new();
            c.encrypt(&msg, &mut wire).unwrap();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                r.input(&mut piece.to_vec(), &mut |p| got.extend_from_slice(p))
                    .unwrap();
            }
            assert_eq!(got, msg, "{suite:?} {len} in pieces of {chunk}");
            assert_eq!(r.held_bytes(), 0);
            let mut back = Vec::new();
            r.encrypt(&msg, &mut back).unwrap();
            let mut got = Vec::new();
            c.input(&mut back, &mut |p| got.extend_from_slice(p))
                .unwrap();
            assert_eq!(got, msg, "{suite:?} {len} back");
        }
        // close_notify both ways.
        let mut bye = Vec::new();
        r.close_notify(&mut bye);
        c.input(&mut bye, &mut |_| {}).unwrap();
        assert!(c.peer_closed(), "{suite:?}");
        c.close_notify();
        r.input(&mut c.take_output().unwrap(), &mut |_| {}).unwrap();
        assert!(r.peer_closed(), "{suite:?}");
    }
}

#[test]
fn the_ticket_sent_before_the_switch_resumes_the_next_connection() {
    let (scfg, ccfg) = configs();
    let (mut c, _r) = established(&ccfg, &scfg);
    // The client has taken its ticket (with the server's last output).
    let _ = c.take_output();
    let (_c2, s2) = handshake(&ccfg, &scfg);
    assert_eq!(s2.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[test]
fn tampered_oversized_and_post_handshake_records_end_the_connection() {
    let (scfg, ccfg) = configs();
    // A flipped bit: the tag does not verify.
    let (mut c, mut r) = established(&ccfg, &scfg);
    let mut wire = Vec::new();
    c.encrypt(b"hello", &mut wire).unwrap();
    wire[7] ^= 1;
    let err = r.input(&mut wire, &mut |_| panic!("no data")).unwrap_err();
    assert!(format!("{err}").contains("decrypt"), "{err}");
    assert!(r.failed());
    // A header announcing more than any record may hold.
    let (_, mut r) = established(&ccfg, &scfg);
    let err = r
        .input(&mut [23, 3, 3, 0xff, 0xff], &mut |_| panic!("no data"))
        .unwrap_err();
    assert!(format!("{err}").contains("excess record size"), "{err}");
    // A KeyUpdate (TLS 1.3): the compact layer cannot follow new keys, so it says so and
    // the connection ends (docs/security.md).
    let (mut c, mut r) = established(&ccfg, &scfg);
    c.refresh_traffic_keys().unwrap();
    let mut wire = c.take_output().unwrap_or_default();
    c.encrypt(b"after", &mut wire).unwrap();
    let err = r.input(&mut wire, &mut |_| panic!("no data")).unwrap_err();
    assert!(format!("{err}").contains("KeyUpdate"), "{err}");
    assert!(r.failed());
    // A record replayed: the sequence number moved on, so it does not verify.
    let (mut c, mut r) = established(&ccfg, &scfg);
    let mut wire = Vec::new();
    c.encrypt(b"once", &mut wire).unwrap();
    let copy = wire.clone();
    r.input(&mut wire, &mut |p| assert_eq!(p, b"once")).unwrap();
    assert!(r
        .input(&mut copy.clone(), &mut |_| panic!("replayed"))
        .is_err());
}

#[test]
fn a_record_layer_exported_mid_stream_and_imported_carries_on_in_every_suite() {
    use rustls::crypto::ring::cipher_suite::*;
    let (scfg, _) = configs();
    for suite in [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let ccfg = client_with_suite(suite);
        let (mut c, mut r) = established(&ccfg, &scfg);
        // Some traffic both ways, and a record cut in half, before the move.
        let mut wire = Vec::new();
        c.encrypt(b"before", &mut wire).unwrap();
        c.encrypt(b"split record", &mut wire).unwrap();
        let cut = wire.len() - 5;
        let mut got = Vec::new();
        r.input(&mut wire[..cut].to_vec(), &mut |p| got.extend_from_slice(p))
            .unwrap();
        assert_eq!(got, b"before");
        let mut back = Vec::new();
        r.encrypt(b"reply", &mut back).unwrap();
        c.input(&mut back, &mut |_| {}).unwrap();
        // The move: the new process's copy finishes the split record and goes on.
        let state = r.export();
        drop(r);
        let mut moved = Records::import(&state).unwrap();
        let mut got = Vec::new();
        moved
            .input(&mut wire[cut..].to_vec(), &mut |p| got.extend_from_slice(p))
            .unwrap();
        assert_eq!(got, b"split record", "{suite:?}");
        let mut back = Vec::new();
        moved.encrypt(b"after the move", &mut back).unwrap();
        let mut got = Vec::new();
        c.input(&mut back, &mut |p| got.extend_from_slice(p))
            .unwrap();
        assert_eq!(
            got, b"after the move",
            "{suite:?}: sequence numbers continue"
        );
    }
    // What export cannot have written is refused.
    assert!(Records::import(&[0u8; 10]).is_err());
    let mut bad = vec![0u8; 3 + 2 * 52];
    bad[0] = 9;
    assert!(Records::import(&bad).is_err());
}
