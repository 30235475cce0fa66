//! The gate in front of the cache: which callers get cached data, and what.
//! A caller is let through only on the site's well-formed acceptance of its
//! credentials (asked with [`crate::probe`], remembered in
//! [`crate::credentials`]), and gets the access the policy of
//! [`crate::access`] gives its identity. While the site cannot be reached, a
//! caller accepted within `offline_grace` keeps its access; nobody new does.

use std::sync::Arc;
use std::time::Duration;

use sg_protocol::{Auth, Fault, Schema};
use sg_sync::config::{AccessSection, Serve};

use crate::access::{Access, AccessPolicy, Caller, Identity};
use crate::credentials::{key_of, Lookup, Verdict, VerdictTimes, Verdicts};
use crate::forward::Forwarder;
use crate::probe::{probe, projects_of, Probe, Unavailable};
use crate::proxy::Answer;

/// The gate of one proxy.
pub struct Gate {
    forwarder: Forwarder,
    verdicts: Verdicts,
    policy: AccessPolicy,
    /// The cache's own script: callers may not use its key.
    own_script: (String, String),
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

fn refused(message: &str) -> Answer {
    Answer::Json(Fault::authentication(message).to_json())
}

impl Gate {
    pub fn new(forwarder: Forwarder, access: &AccessSection, own_script: (String, String)) -> Gate {
        Gate {
            forwarder,
            verdicts: Verdicts::new(
                VerdictTimes {
                    credential_ttl: seconds(access.credential_ttl),
                    refused_ttl: seconds(access.refused_ttl),
                    offline_grace: seconds(access.offline_grace),
                },
                access.max_callers,
            ),
            policy: AccessPolicy::new(access),
            own_script,
        }
    }

    /// The caller these credentials belong to, if the site accepts them;
    /// otherwise the answer the caller gets instead. `schema` is the site's,
    /// as the cache keeps it.
    pub async fn admit(&self, auth: Option<&Auth>, schema: &Schema) -> Result<Arc<Caller>, Answer> {
        let no_credentials = "No authentication credentials were given";
        let Some(auth) = auth else {
            return Err(refused(no_credentials));
        };
        if auth.script_name.as_deref() == Some(self.own_script.0.as_str())
            && auth.script_key.as_deref() == Some(self.own_script.1.as_str())
        {
            return Err(refused(
                "The cache's own API key can't be used through the cache",
            ));
        }
        let Some(key) = key_of(auth) else {
            return Err(refused(no_credentials));
        };
        let stale = match self.verdicts.lookup(&key) {
            Lookup::Fresh(Verdict::Accepted(caller)) => return Ok(caller),
            Lookup::Fresh(Verdict::Refused(fault)) => return Err(Answer::Json(fault.to_json())),
            Lookup::Stale(caller) => Some(caller),
            Lookup::Unknown => None,
        };
        match probe(&self.forwarder, schema, auth).await {
            Probe::Accepted(identity) => {
                let access = self.access_of(&identity, schema, auth).await;
                let caller = Arc::new(Caller::new(identity, access));
                self.verdicts
                    .remember(key, Verdict::Accepted(caller.clone()));
                Ok(caller)
            }
            Probe::Refused { fault, reply } => {
                self.verdicts.remember(key, Verdict::Refused(fault));
                Err(Answer::Site(reply))
            }
            Probe::Unavailable(why) => match stale {
                // Reads during an outage, for callers the site accepted lately.
                Some(caller) => Ok(caller),
                None => Err(match why {
                    Unavailable::Unreachable(e) => {
                        Answer::Unreachable(format!("can't check credentials with the site: {e}"))
                    }
                    Unavailable::NotTheApi => Answer::SiteUnavailable(
                        "the site answered with something that is not its API (down for maintenance?)"
                            .into(),
                    ),
                    Unavailable::Status(reply) => Answer::Site(reply),
                }),
            },
            Probe::Other(reply) => Err(Answer::Site(reply)),
        }
    }

    async fn access_of(&self, identity: &Identity, schema: &Schema, auth: &Auth) -> Access {
        match self.policy.serve_for(identity) {
            Serve::Cached => Access::Cached,
            Serve::Site => Access::Site,
            Serve::Projects => {
                let Identity::User { id, .. } = identity else {
                    return Access::Site;
                };
                match projects_of(&self.forwarder, schema, auth, *id).await {
                    Some(projects) => Access::Projects(Arc::new(projects)),
                    None => Access::Site,
                }
            }
        }
    }
}
