//! Tokens minted here with the test keys in tests/fixtures/keys, verified by [`Auth`].

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");

fn file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}{name}")).unwrap()
}

const NOW: u64 = 1_800_000_000;

fn auth(f: impl FnOnce(&mut AuthConfig)) -> Auth {
    let mut cfg = AuthConfig {
        hmac_secret: Some(file("hmac.secret")),
        public_keys: vec![file("rsa.pub"), file("ec.pub"), file("ed.pub")],
        ..AuthConfig::default()
    };
    f(&mut cfg);
    Auth::new(&cfg).unwrap()
}

fn mint(alg: Algorithm, key: &str, claims: serde_json::Value) -> String {
    let k = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(&file(key))
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&file(key)).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&file(key)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&file(key)).unwrap(),
    };
    encode(&Header::new(alg), &claims, &k).unwrap()
}

fn alice(exp: u64) -> serde_json::Value {
    json!({"sub": "alice", "exp": exp,
           "channels": {"subscribe": ["news.*", "user.alice"], "publish": ["chat.*"]}})
}

#[test]
fn every_algorithm_family_verifies_and_gives_the_claims() {
    let a = auth(|_| {});
    for (alg, key) in [
        (Algorithm::HS256, "hmac.secret"),
        (Algorithm::HS512, "hmac.secret"),
        (Algorithm::RS256, "rsa.key"),
        (Algorithm::PS256, "rsa.key"),
        (Algorithm::ES256, "ec.key"),
        (Algorithm::EdDSA, "ed.key"),
    ] {
        let id = a
            .verify(&mint(alg, key, alice(NOW + 60)), NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert_eq!(id.exp, Some(NOW + 60));
        assert!(id.grants.may_subscribe("news.sport"));
        assert!(id.grants.may_subscribe("user.alice"));
        assert!(!id.grants.may_subscribe("user.bob"));
        assert!(
            !id.grants.may_subscribe("chat.lobby"),
            "publish is not subscribe"
        );
        assert!(id.grants.may_publish("chat.lobby"));
        assert!(
            !id.grants.may_publish("news.sport"),
            "subscribe is not publish"
        );
    }
}

#[test]
fn bad_tokens_are_refused_with_their_reason() {
    let a = auth(|c| c.audience = Some("holdfast".into()));
    let with_aud = |mut v: serde_json::Value| {
        v["aud"] = json!("holdfast");
        v
    };
    let cases = [
        (
            mint(Algorithm::HS256, "hmac.secret", with_aud(alice(NOW))),
            AuthError::Expired,
        ),
        (
            mint(
                Algorithm::HS256,
                "hmac.secret",
                with_aud(json!({"sub": "a", "exp": NOW + 600, "nbf": NOW + 300})),
            ),
            AuthError::NotYetValid,
        ),
        (
            mint(Algorithm::RS256, "other-rsa.key", with_aud(alice(NOW + 60))),
            AuthError::BadSignature,
        ),
        (
            mint(Algorithm::HS256, "hmac.secret", alice(NOW + 60)),
            AuthError::Malformed("Missing required claim: aud".into()),
        ),
        (
            mint(Algorithm::HS256, "hmac.secret", {
                let mut v = alice(NOW + 60);
                v["aud"] = json!("elsewhere");
                v
            }),
            AuthError::WrongAudience,
        ),
        (
            mint(
                Algorithm::HS256,
                "hmac.secret",
                json!({"sub": "a", "aud": "holdfast"}),
            ),
            AuthError::Malformed("the `exp` claim is required".into()),
        ),
    ];
    for (token, want) in cases {
        let got = a.verify(&token, NOW).unwrap_err();
        assert_eq!(got.label(), want.label(), "{got:?}");
    }
    assert!(matches!(
        a.verify("not.a.jwt", NOW),
        Err(AuthError::Malformed(_))
    ));
    // An unsigned token ("alg":"none") is never accepted.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert!(a.verify(none, NOW).is_err());
}

#[test]
fn a_token_for_a_key_family_that_is_not_configured_is_refused() {
    let a = auth(|c| c.public_keys.clear());
    let t = mint(Algorithm::RS256, "rsa.key", alice(NOW + 60));
    assert_eq!(a.verify(&t, NOW), Err(AuthError::WrongAlgorithm));
}

#[test]
fn leeway_applies_to_both_ends() {
    let a = auth(|c| c.leeway = 30);
    let t = mint(Algorithm::HS256, "hmac.secret", alice(NOW - 10));
    assert_eq!(a.verify(&t, NOW).unwrap().exp, Some(NOW + 20));
    let t = mint(Algorithm::HS256, "hmac.secret", alice(NOW - 40));
    assert_eq!(a.verify(&t, NOW), Err(AuthError::Expired));
}

#[test]
fn anonymous_connections_get_only_the_anonymous_patterns() {
    let strict = auth(|_| {});
    assert_eq!(strict.admit(None, NOW), Err(AuthError::Missing));
    let open = auth(|c| c.anonymous = Some("public.*, status".into()));
    let id = open.admit(None, NOW).unwrap();
    assert_eq!(id.user, None);
    assert!(id.grants.may_subscribe("public.prices"));
    assert!(id.grants.may_subscribe("status"));
    assert!(!id.grants.may_subscribe("status.internal"));
    assert!(!id.grants.may_publish("public.prices"));
    // Authentication off: everything.
    let off = Auth::new(&AuthConfig::default()).unwrap();
    assert!(!off.enabled());
    let id = off.admit(None, NOW).unwrap();
    assert!(id.grants.may_subscribe("x") && id.grants.may_publish("y"));
}

#[test]
fn the_per_user_cap_counts_across_joins_and_leaves() {
    let a = auth(|c| c.max_per_user = 2);
    let u: Arc<str> = "alice".into();
    assert!(a.join_user(&u));
    assert!(a.join_user(&u));
    assert!(!a.join_user(&u));
    a.leave_user(&u);
    assert!(a.join_user(&u));
    assert!(a.join_user(&"bob".into()));
}

#[test]
fn bad_key_material_is_a_start_up_error() {
    let short = AuthConfig {
        hmac_secret: Some(b"short".to_vec()),
        ..AuthConfig::default()
    };
    assert!(Auth::new(&short).unwrap_err().contains("32"));
    let junk = AuthConfig {
        public_keys: vec![b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec()],
        ..AuthConfig::default()
    };
    assert!(Auth::new(&junk).unwrap_err().contains("public key 1"));
    // A private key given where a public key belongs is refused too.
    let private = AuthConfig {
        public_keys: vec![file("ec.key")],
        ..AuthConfig::default()
    };
    assert!(Auth::new(&private).is_err());
}

#[test]
fn patterns_match_names_prefixes_and_everything() {
    let p = patterns("a.b, c.*, *");
    assert_eq!(p.len(), 3);
    assert!(Pattern::parse("a.b").matches("a.b"));
    assert!(!Pattern::parse("a.b").matches("a.bc"));
    assert!(Pattern::parse("c.*").matches("c.x"));
    assert!(!Pattern::parse("c.*").matches("cx"));
    assert!(Pattern::parse("*").matches("anything"));
}

#[test]
fn a_subscription_token_grants_one_channel_to_its_user() {
    let a = auth(|_| {});
    let t = |c: serde_json::Value| mint(Algorithm::HS256, "hmac.secret", c);
    let good = t(json!({"sub": "alice", "exp": NOW + 60, "channel": "vip"}));
    assert_eq!(a.verify_channel(&good, "vip", Some("alice"), NOW), Ok(()));
    assert_eq!(
        a.verify_channel(&good, "vip", None, NOW),
        Ok(()),
        "anonymous holder"
    );
    assert_eq!(
        a.verify_channel(&good, "vip", Some("bob"), NOW),
        Err(AuthError::OtherUser)
    );
    assert!(matches!(
        a.verify_channel(&good, "other", Some("alice"), NOW),
        Err(AuthError::Malformed(_))
    ));
    let old = t(json!({"sub": "alice", "exp": NOW - 1, "channel": "vip"}));
    assert_eq!(
        a.verify_channel(&old, "vip", Some("alice"), NOW),
        Err(AuthError::Expired)
    );
    let forged = mint(
        Algorithm::RS256,
        "other-rsa.key",
        json!({"exp": NOW + 60, "channel": "vip"}),
    );
    assert!(a.verify_channel(&forged, "vip", None, NOW).is_err());
}
