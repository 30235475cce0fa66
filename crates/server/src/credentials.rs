//! Verdicts on callers' credentials, kept so the site is asked once a while
//! rather than once a request: under a hash of every part of the credentials
//! the site checks (never the secret itself), in a bounded map whose least
//! recently used verdict goes first.
//!
//! An acceptance holds for `credential_ttl` while the site answers; past it
//! the site is asked again, so a revoked key stops being served within that
//! time. While the site cannot be reached, an acceptance younger than
//! `offline_grace` still serves cached reads. A refusal is kept briefly.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

use sg_protocol::envelope::Credentials;
use sg_protocol::{Auth, Fault};

use crate::access::Caller;

/// The key of a set of credentials: a hash of everything the site checks
/// (script name and key; login, password and 2FA token; session token;
/// `sudo_as_login`). Each part is length-prefixed, so no two sets collide by
/// moving bytes between parts.
pub fn key_of(auth: &Auth) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    match auth.credentials()? {
        Credentials::Script {
            script_name,
            script_key,
        } => {
            part(b"script");
            part(script_name.as_bytes());
            part(script_key.as_bytes());
        }
        Credentials::User {
            login,
            password,
            auth_token,
        } => {
            part(b"user");
            part(login.as_bytes());
            part(password.as_bytes());
            match &auth_token {
                Some(token) => {
                    part(b"token");
                    part(token.as_bytes());
                }
                None => part(b"no token"),
            }
        }
        Credentials::Session { token } => {
            part(b"session");
            part(token.as_bytes());
        }
    }
    match &auth.sudo_as_login {
        Some(login) => {
            part(b"sudo");
            part(login.as_bytes());
        }
        None => part(b"no sudo"),
    }
    Some(hasher.finalize().into())
}

/// What the site said of a set of credentials.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Accepted: who the caller is and what it may read from the cache.
    Accepted(Arc<Caller>),
    /// Refused, with the site's own fault.
    Refused(Fault),
}

/// A remembered verdict, as it stands now.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Still fresh: use it.
    Fresh(Verdict),
    /// An acceptance past `credential_ttl` but within `offline_grace`: ask the
    /// site again, and use it only if the site cannot be reached.
    Stale(Arc<Caller>),
    /// Nothing usable is remembered.
    Unknown,
}

/// How long verdicts hold.
#[derive(Debug, Clone, Copy)]
pub struct VerdictTimes {
    pub credential_ttl: Duration,
    pub refused_ttl: Duration,
    pub offline_grace: Duration,
}

/// Verdicts by hashed credentials, at most `capacity` of them.
pub struct Verdicts {
    times: VerdictTimes,
    kept: Mutex<LruCache<[u8; 32], (Verdict, Instant)>>,
}

impl Verdicts {
    pub fn new(times: VerdictTimes, capacity: usize) -> Verdicts {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Verdicts {
            times,
            kept: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The remembered verdict on `key`, as it stands now.
    pub fn lookup(&self, key: &[u8; 32]) -> Lookup {
        let Ok(mut kept) = self.kept.lock() else {
            return Lookup::Unknown;
        };
        let Some((verdict, at)) = kept.get(key) else {
            return Lookup::Unknown;
        };
        let age = at.elapsed();
        match verdict {
            Verdict::Accepted(caller) if age < self.times.credential_ttl => {
                Lookup::Fresh(Verdict::Accepted(caller.clone()))
            }
            Verdict::Accepted(caller) if age < self.times.offline_grace => {
                Lookup::Stale(caller.clone())
            }
            Verdict::Refused(fault) if age < self.times.refused_ttl => {
                Lookup::Fresh(Verdict::Refused(fault.clone()))
            }
            _ => {
                kept.pop(key);
                Lookup::Unknown
            }
        }
    }

    /// Remembers a verdict the site just gave.
    pub fn remember(&self, key: [u8; 32], verdict: Verdict) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.put(key, (verdict, Instant::now()));
        }
    }

    /// How many verdicts are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().map(|k| k.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Access, Identity};

    fn caller() -> Arc<Caller> {
        Arc::new(Caller::new(
            Identity::Script { name: "s".into() },
            Access::Cached,
        ))
    }

    fn times(ttl_ms: u64, refused_ms: u64, grace_ms: u64) -> VerdictTimes {
        VerdictTimes {
            credential_ttl: Duration::from_millis(ttl_ms),
            refused_ttl: Duration::from_millis(refused_ms),
            offline_grace: Duration::from_millis(grace_ms),
        }
    }

    #[test]
    fn keys_depend_on_every_part_the_site_checks() {
        let a = key_of(&Auth::script("s", "k1")).unwrap();
        assert_eq!(a, key_of(&Auth::script("s", "k1")).unwrap());
        assert_ne!(a, key_of(&Auth::script("s", "k2")).unwrap());
        assert_ne!(a, key_of(&Auth::user("s", "k1")).unwrap());
        assert_ne!(
            key_of(&Auth::script("ab", "c")).unwrap(),
            key_of(&Auth::script("a", "bc")).unwrap()
        );
        let mut sudo = Auth::script("s", "k1");
        sudo.sudo_as_login = Some("bob".into());
        assert_ne!(a, key_of(&sudo).unwrap());
        let user = Auth::user("u", "p");
        let mut with_token = user.clone();
        with_token.auth_token = Some("123456".into());
        let mut other_token = user.clone();
        other_token.auth_token = Some("654321".into());
        let keys = [&user, &with_token, &other_token].map(|a| key_of(a).unwrap());
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
        let mut session_sudo = Auth::session("t");
        session_sudo.sudo_as_login = Some("bob".into());
        assert_ne!(
            key_of(&Auth::session("t")).unwrap(),
            key_of(&session_sudo).unwrap()
        );
    }

    #[test]
    fn acceptances_go_stale_then_expire_and_refusals_are_brief() {
        let verdicts = Verdicts::new(times(30, 10, 80), 10);
        let (good, bad) = ([1u8; 32], [2u8; 32]);
        verdicts.remember(good, Verdict::Accepted(caller()));
        verdicts.remember(bad, Verdict::Refused(Fault::authentication("no")));
        assert!(matches!(
            verdicts.lookup(&good),
            Lookup::Fresh(Verdict::Accepted(_))
        ));
        assert!(matches!(
            verdicts.lookup(&bad),
            Lookup::Fresh(Verdict::Refused(_))
        ));
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(verdicts.lookup(&bad), Lookup::Unknown));
        assert!(matches!(verdicts.lookup(&good), Lookup::Stale(_)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(matches!(verdicts.lookup(&good), Lookup::Unknown));
    }

    #[test]
    fn a_flood_of_new_keys_keeps_the_map_bounded() {
        let verdicts = Verdicts::new(times(60_000, 60_000, 60_000), 1000);
        let kept = [7u8; 32];
        verdicts.remember(kept, Verdict::Accepted(caller()));
        for i in 0..100_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[31] = 1;
            verdicts.remember(key, Verdict::Refused(Fault::authentication("no")));
            if i % 100 == 0 {
                // A caller in use stays while the flood goes by.
                assert!(matches!(verdicts.lookup(&kept), Lookup::Fresh(_)));
            }
        }
        assert_eq!(verdicts.len(), 1000);
        assert!(matches!(verdicts.lookup(&kept), Lookup::Fresh(_)));
    }
}
