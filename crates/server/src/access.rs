//! Who is served what from the cache: the policy of `config.yaml`'s `access:`
//! section applied to a caller the site has vouched for, and the scoping of a
//! read to the projects its user is a member of.
//!
//! The cache cannot know a site's permission rules; it knows who a caller is
//! and the caller's permission rule set, and the policy says for each rule
//! set (and for scripts as a whole) whether its callers read every cached
//! record, only records of their projects, or nothing from the cache (the
//! site answers them). A caller the cache cannot identify gets the most
//! restrictive: the site.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;

use sg_engine::Layout;
use sg_protocol::{Condition, FilterNode, LogicalOperator, Relation, Schema};
use sg_sync::config::{AccessSection, Serve};

/// Reads one caller may run on the engine at once: fewer than the proxy's
/// slots, so no caller holds them all.
pub const SLOTS_PER_CALLER: usize = 2;

/// Who a caller is, as the site told the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An API script, acting as itself.
    Script { name: String },
    /// A user: logged in, or impersonated by a script (`via_script`) or a
    /// session with `sudo_as_login`.
    User {
        login: String,
        id: i64,
        /// The display name of the user's permission rule set, when the site
        /// has the field and the caller may read it.
        rule_set: Option<String>,
        via_script: Option<String>,
    },
    /// The site accepted the credentials but the cache could not learn whose
    /// they are (a session token; a user record the caller can't read).
    Unidentified,
}

/// What a caller may read from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Cached,
    /// Only records of these projects.
    Projects(Arc<BTreeSet<i64>>),
    /// Nothing: the site answers every read.
    Site,
}

/// An accepted caller: who it is, what it may read, and its share of the
/// engine.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    pub access: Access,
    pub slots: tokio::sync::Semaphore,
}

impl Caller {
    pub fn new(identity: Identity, access: Access) -> Caller {
        Caller {
            identity,
            access,
            slots: tokio::sync::Semaphore::new(SLOTS_PER_CALLER),
        }
    }
}

/// The `access:` policy, ready to apply.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    scripts: Serve,
    allow_scripts: Option<BTreeSet<String>>,
    rule_sets: BTreeMap<String, Serve>,
    other_rule_sets: Serve,
}

impl AccessPolicy {
    pub fn new(section: &AccessSection) -> AccessPolicy {
        AccessPolicy {
            scripts: section.scripts,
            allow_scripts: (!section.allow_scripts.is_empty())
                .then(|| section.allow_scripts.iter().cloned().collect()),
            rule_sets: section.rule_sets.clone(),
            other_rule_sets: section.other_rule_sets,
        }
    }

    /// The rule for a caller. With `allow_scripts`, only the scripts named
    /// read the cache (a user they impersonate by its rule set); logins and
    /// session tokens are served by the site.
    pub fn serve_for(&self, identity: &Identity) -> Serve {
        let allowed = |script: Option<&String>| match (&self.allow_scripts, script) {
            (None, _) => true,
            (Some(allowed), Some(name)) => allowed.contains(name),
            (Some(_), None) => false,
        };
        match identity {
            Identity::Script { name } if allowed(Some(name)) => self.scripts,
            Identity::User {
                rule_set,
                via_script,
                ..
            } if allowed(via_script.as_ref()) => rule_set
                .as_ref()
                .and_then(|r| self.rule_sets.get(r))
                .copied()
                .unwrap_or(self.other_rule_sets),
            _ => Serve::Site,
        }
    }
}

/// Why a read can't be scoped to projects by the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotScopable;

/// The condition that keeps records of `projects` only, for a type: `None`
/// for a type that belongs to no project (the site shows such records, people
/// and steps, to every user); an error when the type has a project but the
/// cache does not hold it.
fn project_condition(
    layout: &Layout,
    schema: &Schema,
    entity_type: &str,
    projects: &BTreeSet<i64>,
) -> Result<Option<FilterNode>, NotScopable> {
    if entity_type == "Project" {
        return Ok(Some(FilterNode::Condition(Condition {
            path: "id".into(),
            relation: Relation::In,
            values: projects.iter().map(|id| json!(id)).collect(),
        })));
    }
    let on_site = schema
        .entity(entity_type)
        .is_some_and(|e| e.field("project").is_some());
    if !on_site {
        return Ok(None);
    }
    let cached = layout
        .table(entity_type)
        .is_some_and(|t| t.field("project").is_some());
    if !cached {
        return Err(NotScopable);
    }
    Ok(Some(FilterNode::Condition(Condition {
        path: "project".into(),
        relation: Relation::In,
        values: projects
            .iter()
            .map(|id| json!({"type": "Project", "id": id}))
            .collect(),
    })))
}

/// Narrows the filters of a read or a summary of `entity_type` to records
/// of `projects`.
pub fn scope(
    layout: &Layout,
    schema: &Schema,
    entity_type: &str,
    filters: &mut FilterNode,
    projects: &BTreeSet<i64>,
) -> Result<(), NotScopable> {
    if let Some(condition) = project_condition(layout, schema, entity_type, projects)? {
        let original = std::mem::replace(filters, FilterNode::match_all());
        *filters = FilterNode::Group {
            operator: LogicalOperator::And,
            conditions: vec![original, condition],
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> AccessPolicy {
        AccessPolicy::new(&AccessSection {
            allow_scripts: allow.iter().map(|s| s.to_string()).collect(),
            ..AccessSection::default()
        })
    }

    fn user(rule_set: Option<&str>, via: Option<&str>) -> Identity {
        Identity::User {
            login: "u".into(),
            id: 1,
            rule_set: rule_set.map(str::to_string),
            via_script: via.map(str::to_string),
        }
    }

    #[test]
    fn the_default_policy() {
        let p = policy(&[]);
        assert_eq!(
            p.serve_for(&Identity::Script { name: "s".into() }),
            Serve::Cached
        );
        assert_eq!(p.serve_for(&user(Some("Admin"), None)), Serve::Cached);
        assert_eq!(p.serve_for(&user(Some("Artist"), None)), Serve::Projects);
        assert_eq!(p.serve_for(&user(Some("Vendor"), None)), Serve::Site);
        assert_eq!(p.serve_for(&user(None, None)), Serve::Site);
        assert_eq!(
            p.serve_for(&user(Some("Artist"), Some("s"))),
            Serve::Projects
        );
        assert_eq!(p.serve_for(&Identity::Unidentified), Serve::Site);
    }

    #[test]
    fn allowed_scripts_hold_for_logins_and_sessions_too() {
        let p = policy(&["pipeline"]);
        assert_eq!(
            p.serve_for(&Identity::Script {
                name: "pipeline".into()
            }),
            Serve::Cached
        );
        assert_eq!(
            p.serve_for(&Identity::Script {
                name: "other".into()
            }),
            Serve::Site
        );
        assert_eq!(p.serve_for(&user(Some("Admin"), None)), Serve::Site);
        assert_eq!(
            p.serve_for(&user(Some("Admin"), Some("other"))),
            Serve::Site
        );
        assert_eq!(
            p.serve_for(&user(Some("Admin"), Some("pipeline"))),
            Serve::Cached
        );
        assert_eq!(p.serve_for(&Identity::Unidentified), Serve::Site);
    }
}
