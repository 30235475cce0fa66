//! Asking the site whether it accepts a caller's credentials, and who they
//! belong to, with the caller's own credentials. Only a well-formed success
//! (HTTP 200, JSON, `results` of a read's shape) is an acceptance: a fault,
//! an HTML page, a redirect, another status or a truncated reply is not.

use std::collections::BTreeSet;

use axum::body::Bytes;
use serde_json::{json, Value};

use sg_protocol::{Auth, Fault, Request, Schema};

use crate::access::Identity;
use crate::forward::{Forwarder, SiteReply};

/// What the site said of a set of credentials.
#[derive(Debug)]
pub enum Probe {
    /// A well-formed success: the credentials are good.
    Accepted(Identity),
    /// The site's fault (bad credentials, 2FA or SSO required, no such user
    /// to `sudo` as, ...): the caller gets this reply as it is.
    Refused { fault: Fault, reply: SiteReply },
    /// The site could not be reached, or answered with something that is not
    /// its API (a maintenance page, 502/503/504).
    Unavailable(Unavailable),
    /// Another HTTP reply (a redirect, 4xx): passed on, never an acceptance.
    Other(SiteReply),
}

/// Why the site could not vouch for a caller.
#[derive(Debug)]
pub enum Unavailable {
    Unreachable(String),
    /// A reply that is not the API's, with HTTP 200 (a maintenance page).
    NotTheApi,
    /// 502, 503 or 504, passed on as it came.
    Status(SiteReply),
}

/// The login whose user record tells who a caller is: the one impersonated,
/// else the one logged in.
fn login_to_learn(auth: &Auth) -> Option<&str> {
    auth.sudo_as_login.as_deref().or(auth
        .user_login
        .as_deref()
        .filter(|_| auth.user_password.is_some()))
}

fn read_request(auth: &Auth, params: Value) -> Bytes {
    let request = Request {
        method_name: "read".into(),
        auth: Some(auth.clone()),
        params: Some(params),
    };
    Bytes::from(request.to_json().to_string())
}

/// The entities of a reply, if it is a well-formed `read` success; otherwise
/// what it is instead.
fn entities(reply: SiteReply) -> Result<Vec<Value>, Probe> {
    let status = reply.status.as_u16();
    if matches!(status, 502..=504) {
        return Err(Probe::Unavailable(Unavailable::Status(reply)));
    }
    if status != 200 {
        return Err(Probe::Other(reply));
    }
    let json_type = reply.content_type.as_deref().is_none_or(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("application/json") || t.starts_with("text/javascript")
    });
    let body: Option<Value> = json_type
        .then(|| serde_json::from_slice(&reply.body).ok())
        .flatten();
    let Some(body) = body else {
        return Err(Probe::Unavailable(Unavailable::NotTheApi));
    };
    if let Some(fault) = Fault::from_json(&body) {
        return Err(Probe::Refused { fault, reply });
    }
    let found = body
        .get("results")
        .and_then(|r| r.get("entities"))
        .and_then(Value::as_array)
        .filter(|items| {
            items
                .iter()
                .all(|e| e.get("type").is_some_and(Value::is_string) && e.get("id").is_some())
        });
    match found {
        Some(items) => Ok(items.clone()),
        None => Err(Probe::Unavailable(Unavailable::NotTheApi)),
    }
}

async fn read(forwarder: &Forwarder, auth: &Auth, params: Value) -> Result<Vec<Value>, Probe> {
    match forwarder.send(read_request(auth, params)).await {
        Ok(reply) => entities(reply),
        Err(e) => Err(Probe::Unavailable(Unavailable::Unreachable(e.to_string()))),
    }
}

/// Asks the site, with the caller's credentials, who the caller is.
pub async fn probe(forwarder: &Forwarder, schema: &Schema, auth: &Auth) -> Probe {
    let human_user = schema.entity("HumanUser");
    if let (Some(login), Some(entity)) = (login_to_learn(auth), human_user) {
        let mut fields = vec!["login"];
        if entity.field("permission_rule_set").is_some() {
            fields.push("permission_rule_set");
        }
        let params = json!({"type": "HumanUser", "return_fields": fields,
            "filters": {"logical_operator": "and", "conditions": [
                {"path": "login", "relation": "is", "values": [login]}]},
            "paging": {"entities_per_page": 1, "current_page": 1},
            "return_paging_info_without_counts": true});
        return match read(forwarder, auth, params).await {
            Ok(users) => Probe::Accepted(user_identity(&users, login, auth)),
            Err(other) => other,
        };
    }
    let params = json!({"type": "EventLogEntry", "return_fields": ["id"],
        "paging": {"entities_per_page": 1, "current_page": 1},
        "return_paging_info_without_counts": true});
    match read(forwarder, auth, params).await {
        Ok(_) => Probe::Accepted(match (&auth.script_name, &auth.script_key) {
            (Some(name), Some(_)) if auth.user_login.is_none() => {
                Identity::Script { name: name.clone() }
            }
            _ => Identity::Unidentified,
        }),
        Err(other) => other,
    }
}

fn user_identity(users: &[Value], login: &str, auth: &Auth) -> Identity {
    let Some(user) = users
        .iter()
        .find(|u| u.get("login").and_then(Value::as_str) == Some(login))
    else {
        return Identity::Unidentified;
    };
    let Some(id) = user.get("id").and_then(Value::as_i64) else {
        return Identity::Unidentified;
    };
    let via_script = match (&auth.script_name, &auth.script_key, &auth.user_login) {
        (Some(name), Some(_), None) => Some(name.clone()),
        _ => None,
    };
    Identity::User {
        login: login.to_string(),
        id,
        rule_set: user
            .get("permission_rule_set")
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        via_script,
    }
}

/// Most projects a membership is read for; a user in more is served by the site.
const MAX_PROJECT_PAGES: u64 = 20;

/// The projects a user is a member of (`Project.users`), read with the
/// caller's credentials; `None` when they can't be known.
pub async fn projects_of(
    forwarder: &Forwarder,
    schema: &Schema,
    auth: &Auth,
    user_id: i64,
) -> Option<BTreeSet<i64>> {
    schema.entity("Project")?.field("users")?;
    let mut out = BTreeSet::new();
    for page in 1..=MAX_PROJECT_PAGES {
        let params = json!({"type": "Project", "return_fields": ["id"],
            "filters": {"logical_operator": "and", "conditions": [
                {"path": "users", "relation": "is", "values": [{"type": "HumanUser", "id": user_id}]}]},
            "sorts": [{"field_name": "id", "direction": "asc"}],
            "paging": {"entities_per_page": 500, "current_page": page},
            "return_paging_info_without_counts": true});
        let projects = read(forwarder, auth, params).await.ok()?;
        out.extend(
            projects
                .iter()
                .filter_map(|p| p.get("id").and_then(Value::as_i64)),
        );
        if projects.len() < 500 {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn reply(status: u16, content_type: Option<&str>, body: &str) -> SiteReply {
        SiteReply {
            status: StatusCode::from_u16(status).unwrap(),
            content_type: content_type.map(str::to_string),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn only_a_well_formed_read_is_an_acceptance() {
        let json = Some("application/json; charset=utf-8");
        let ok =
            r#"{"results": {"entities": [{"type": "HumanUser", "id": 3}], "paging_info": {}}}"#;
        assert_eq!(entities(reply(200, json, ok)).unwrap().len(), 1);
        assert_eq!(
            entities(reply(200, None, r#"{"results": {"entities": []}}"#))
                .unwrap()
                .len(),
            0
        );
        let fault = r#"{"exception": true, "error_code": 108, "message": "SSO only"}"#;
        assert!(
            matches!(entities(reply(200, json, fault)), Err(Probe::Refused { fault, .. }) if fault.code.as_i64() == 108)
        );
        for (status, content_type, body) in [
            (200, Some("text/html"), "<html>down for maintenance</html>"),
            (200, json, "<html>down for maintenance</html>"),
            (200, json, r#"{"results": {"entities": [{"type": "Hu"#),
            (200, json, r#"{"results": true}"#),
            (200, json, r#"{"results": {"entities": [{"id": 1}]}}"#),
            (200, json, r#"[]"#),
        ] {
            assert!(
                matches!(
                    entities(reply(status, content_type, body)),
                    Err(Probe::Unavailable(Unavailable::NotTheApi))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            entities(reply(503, json, ok)),
            Err(Probe::Unavailable(Unavailable::Status(_)))
        ));
        for status in [301, 302, 401, 403, 404, 500] {
            assert!(matches!(
                entities(reply(status, json, ok)),
                Err(Probe::Other(_))
            ));
        }
    }

    #[test]
    fn the_user_learned_is_the_one_impersonated() {
        let mut auth = Auth::script("tool", "key");
        assert_eq!(login_to_learn(&auth), None);
        auth.sudo_as_login = Some("bob".into());
        assert_eq!(login_to_learn(&auth), Some("bob"));
        let users = vec![
            json!({"type": "HumanUser", "id": 4, "login": "bob", "permission_rule_set": {"type": "PermissionRuleSet", "id": 2, "name": "Artist"}}),
        ];
        assert_eq!(
            user_identity(&users, "bob", &auth),
            Identity::User {
                login: "bob".into(),
                id: 4,
                rule_set: Some("Artist".into()),
                via_script: Some("tool".into())
            }
        );
        assert_eq!(
            user_identity(&users, "alice", &auth),
            Identity::Unidentified
        );
        let login = Auth::user("alice", "pw");
        assert_eq!(login_to_learn(&login), Some("alice"));
    }
}
