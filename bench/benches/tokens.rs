//! Connection-token verifications per second, per algorithm: the cost a reconnect storm
//! multiplies when every reconnect presents a token (docs/capacity-planning.md).
//!
//! Each iteration is what the handshake does: `Auth::verify` (header decode, signature,
//! claims, grants) of one token minted with the test keys in tests/fixtures/keys.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use holdfast::auth::{Auth, AuthConfig};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mimalloc::MiMalloc;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys/");

fn file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}{name}")).expect("test key")
}

fn tokens(c: &mut Criterion) {
    let secret = String::from_utf8(file("hmac.secret")).unwrap();
    let auth = Auth::new(&AuthConfig {
        hmac_secret: Some(secret.trim().as_bytes().to_vec()),
        public_keys: vec![file("rsa.pub"), file("ec.pub"), file("ed.pub")],
        ..AuthConfig::default()
    })
    .unwrap();
    let now = 1_800_000_000u64;
    let claims = serde_json::json!({"sub": "user-123456", "exp": now + 3600,
        "channels": {"subscribe": ["news.*", "user.user-123456"], "publish": ["chat.*"]}});
    let mut g = c.benchmark_group("token_verify");
    g.throughput(Throughput::Elements(1));
    for (alg, key) in [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(secret.trim().as_bytes()),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&file("rsa.key")).unwrap(),
        ),
        (
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(&file("rsa.key")).unwrap(),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&file("ec.key")).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&file("ed.key")).unwrap(),
        ),
    ] {
        let token = encode(&Header::new(alg), &claims, &key).unwrap();
        assert!(auth.verify(&token, now).is_ok());
        g.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| black_box(auth.verify(black_box(&token), now).is_ok()))
        });
    }
    g.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
