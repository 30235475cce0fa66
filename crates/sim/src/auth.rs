//! Who may call the simulated site: API scripts (name and key) and users
//! (login and password), checked as a site checks them.

use sg_protocol::envelope::Credentials;
use sg_protocol::{Auth, Fault};

/// One allowed credential, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API script; `generate_events` is the site's "Generate Events" switch.
    Script {
        name: String,
        key: String,
        generate_events: bool,
    },
    User {
        login: String,
        password: String,
    },
}

impl Credential {
    /// Reads `NAME:KEY` or `NAME:KEY:no-events`; the key may itself contain colons.
    pub fn parse_script(text: &str) -> Result<Credential, String> {
        let (rest, generate_events) = match text.strip_suffix(":no-events") {
            Some(rest) => (rest, false),
            None => (text, true),
        };
        match rest.split_once(':') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(Credential::Script {
                name: name.to_string(),
                key: key.to_string(),
                generate_events,
            }),
            _ => Err(format!("expected NAME:KEY[:no-events], got '{text}'")),
        }
    }

    /// Reads `LOGIN:PASSWORD`.
    pub fn parse_user(text: &str) -> Result<Credential, String> {
        match text.split_once(':') {
            Some((login, password)) if !login.is_empty() => Ok(Credential::User {
                login: login.to_string(),
                password: password.to_string(),
            }),
            _ => Err(format!("expected LOGIN:PASSWORD, got '{text}'")),
        }
    }
}

/// The credentials a site accepts.
#[derive(Debug, Clone, Default)]
pub struct Logins {
    pub allowed: Vec<Credential>,
}

impl Logins {
    /// Checks an auth block and returns the credential it matched; the fault
    /// is the site's 102 in its own words. Session tokens are checked by the site.
    pub fn check(&self, auth: Option<&Auth>) -> Result<&Credential, Fault> {
        let Some(credentials) = auth.and_then(Auth::credentials) else {
            return Err(Fault::authentication(
                "No authentication credentials were given",
            ));
        };
        match credentials {
            Credentials::Script { script_name, script_key } => self
                .allowed
                .iter()
                .find(|c| {
                    matches!(c, Credential::Script { name, key, .. } if *name == script_name && *key == script_key)
                })
                .ok_or_else(|| Fault::authentication(format!("Can't authenticate script '{script_name}'"))),
            Credentials::User { login, password: given, .. } => self
                .allowed
                .iter()
                .find(|c| {
                    matches!(c, Credential::User { login: l, password } if *l == login && *password == given)
                })
                .ok_or_else(|| Fault::authentication(format!("Can't authenticate user '{login}'"))),
            Credentials::Session { .. } => Err(Fault::authentication("Invalid or expired session token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_scripts_and_users() {
        let logins = Logins {
            allowed: vec![
                Credential::parse_script("pipeline:s3cr:et").unwrap(),
                Credential::parse_user("artist:pw").unwrap(),
            ],
        };
        assert!(logins
            .check(Some(&Auth::script("pipeline", "s3cr:et")))
            .is_ok());
        assert!(logins.check(Some(&Auth::user("artist", "pw"))).is_ok());
        for bad in [
            Auth::script("pipeline", "wrong"),
            Auth::script("other", "s3cr:et"),
            Auth::user("artist", "x"),
            Auth::session("t"),
        ] {
            assert_eq!(logins.check(Some(&bad)).unwrap_err().code.as_i64(), 102);
        }
        assert_eq!(logins.check(None).unwrap_err().code.as_i64(), 102);
        assert!(Credential::parse_script("nokey").is_err());
        assert_eq!(
            Credential::parse_script("quiet:k:no-events").unwrap(),
            Credential::Script {
                name: "quiet".into(),
                key: "k".into(),
                generate_events: false
            }
        );
    }
}
