//! `FileTokenStore`: owner-only, atomic, encrypted with a key, refused without it.

use std::os::unix::fs::PermissionsExt;

use dovetail_core::remote::TokenStore;
use dovetail_core::{ErrorKind, Secret};
use dovetail_state::{FileTokenStore, SecretKey};

const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn plain_store_round_trips_and_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open_in_dir(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path().join("tokens.json"));
    assert!(store.load("k").await.unwrap().is_none());
    store.save("k", &Secret::new("rt-1")).await.unwrap();
    store.save("other", &Secret::new("rt-x")).await.unwrap();
    store.save("k", &Secret::new("rt-2")).await.unwrap();
    assert_eq!(mode(store.path()), 0o600);
    // A restart: a new store on the same file.
    let again = FileTokenStore::open(store.path(), None).unwrap();
    assert_eq!(again.load("k").await.unwrap().unwrap().expose(), "rt-2");
    assert_eq!(again.load("other").await.unwrap().unwrap().expose(), "rt-x");
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp")), "{names:?}");
}

#[tokio::test]
async fn an_existing_file_is_made_owner_only_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    FileTokenStore::open(&path, None).unwrap().save("k", &Secret::new("rt")).await.unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    FileTokenStore::open(&path, None).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn with_a_key_no_token_is_in_clear_and_without_it_reading_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let key = SecretKey::parse(HEX_KEY).unwrap();
    let store = FileTokenStore::open(&path, Some(key.clone())).unwrap();
    assert!(store.is_encrypted());
    store.save("oauth2:https://id.example.com/token:c", &Secret::new("refresh-token-SECRET-42")).await.unwrap();
    let raw = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("refresh-token-SECRET-42"), "{text}");
    assert!(!text.contains("id.example.com"), "keys are sealed too: {text}");
    assert_eq!(mode(&path), 0o600);
    // Each write uses a fresh nonce: the same content seals differently.
    store.save("oauth2:https://id.example.com/token:c", &Secret::new("refresh-token-SECRET-42")).await.unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), raw);

    let again = FileTokenStore::open(&path, Some(key)).unwrap();
    let got = again.load("oauth2:https://id.example.com/token:c").await.unwrap().unwrap();
    assert_eq!(got.expose(), "refresh-token-SECRET-42");

    let err = FileTokenStore::open(&path, None).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.message().contains("is encrypted") && err.message().contains("DOVETAIL_SECRET_KEY"), "{err}");
    let wrong = SecretKey::parse(&"ab".repeat(32)).unwrap();
    let err = FileTokenStore::open(&path, Some(wrong)).unwrap_err();
    assert!(err.message().contains("cannot decrypt"), "{err}");
}

#[tokio::test]
async fn a_plain_file_is_sealed_on_the_next_write_once_a_key_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    FileTokenStore::open(&path, None).unwrap().save("a", &Secret::new("token-AAAA")).await.unwrap();
    let sealed = FileTokenStore::open(&path, Some(SecretKey::parse(HEX_KEY).unwrap())).unwrap();
    assert_eq!(sealed.load("a").await.unwrap().unwrap().expose(), "token-AAAA");
    sealed.save("b", &Secret::new("token-BBBB")).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("token-AAAA") && !text.contains("token-BBBB"), "{text}");
}

#[test]
fn keys_parse_from_hex_or_base64_and_bad_keys_are_not_echoed() {
    use base64::Engine;
    let bytes: Vec<u8> = (0u8..32).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
    for text in [HEX_KEY.to_owned(), b64, url] {
        SecretKey::parse(&text).unwrap();
    }
    let err = SecretKey::parse("short-and-SECRETISH").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(!err.message().contains("SECRETISH"));
    assert!(!format!("{:?}", SecretKey::parse(HEX_KEY).unwrap()).contains("0001"));
}

#[tokio::test]
async fn concurrent_saves_keep_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(dir.path().join("t.json"), Some(SecretKey::parse(HEX_KEY).unwrap())).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = store.clone();
        tasks.spawn(async move { s.save(&format!("k{i}"), &Secret::new(format!("v{i}"))).await });
    }
    for r in tasks.join_all().await {
        r.unwrap();
    }
    for i in 0..20 {
        assert_eq!(store.load(&format!("k{i}")).await.unwrap().unwrap().expose(), format!("v{i}"));
    }
}
