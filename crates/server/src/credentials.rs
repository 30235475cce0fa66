//! Who may read cached data: credentials the site accepts. Each unknown set of
//! credentials is checked against the site once (a cheap authenticated call)
//! and the verdict kept for a while under a hash of the secret, never the
//! secret itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use sg_protocol::envelope::Credentials;
use sg_protocol::Auth;

/// A remembered verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Refused, with the site's own fault message.
    Refused(String),
}

/// Verdicts by hashed credentials.
pub struct CredentialCache {
    ttl: Duration,
    verdicts: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
}

/// The key of a set of credentials: a hash of everything that identifies them.
pub fn key_of(auth: &Auth) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    match auth.credentials()? {
        Credentials::Script {
            script_name,
            script_key,
        } => {
            hasher.update(b"script\0");
            hasher.update(script_name.as_bytes());
            hasher.update(b"\0");
            hasher.update(script_key.as_bytes());
        }
        Credentials::User {
            login, password, ..
        } => {
            hasher.update(b"user\0");
            hasher.update(login.as_bytes());
            hasher.update(b"\0");
            hasher.update(password.as_bytes());
        }
        Credentials::Session { token } => {
            hasher.update(b"session\0");
            hasher.update(token.as_bytes());
        }
    }
    if let Some(sudo) = &auth.sudo_as_login {
        hasher.update(b"\0sudo\0");
        hasher.update(sudo.as_bytes());
    }
    Some(hasher.finalize().into())
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> CredentialCache {
        CredentialCache {
            ttl,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// The remembered verdict, if it is still fresh.
    pub fn get(&self, key: &[u8; 32]) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().ok()?;
        verdicts
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub fn remember(&self, key: [u8; 32], verdict: Verdict) {
        if let Ok(mut verdicts) = self.verdicts.lock() {
            if verdicts.len() > 10_000 {
                let ttl = self.ttl;
                verdicts.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            verdicts.insert(key, (verdict, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part_of_the_secret() {
        let a = key_of(&Auth::script("s", "k1")).unwrap();
        assert_eq!(a, key_of(&Auth::script("s", "k1")).unwrap());
        assert_ne!(a, key_of(&Auth::script("s", "k2")).unwrap());
        assert_ne!(a, key_of(&Auth::user("s", "k1")).unwrap());
        let mut sudo = Auth::script("s", "k1");
        sudo.sudo_as_login = Some("bob".into());
        assert_ne!(a, key_of(&sudo).unwrap());
    }

    #[test]
    fn verdicts_expire() {
        let cache = CredentialCache::new(Duration::from_millis(20));
        let key = [1u8; 32];
        cache.remember(key, Verdict::Accepted);
        assert_eq!(cache.get(&key), Some(Verdict::Accepted));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(&key), None);
    }
}
