//! What a project's records refer to: the site's people, groups, steps,
//! file types and projects ([`World`]), and the project being built
//! ([`ProjectCtx`]) with the entity its work hangs off ([`Target`]).

use std::cell::RefCell;
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;

use super::builder::link;
use super::studio::PRODUCTION;

/// People, steps, file types and projects: what every project's records refer to.
#[derive(Default)]
pub(super) struct World {
    pub(super) users: Vec<User>,
    /// Group ids by department, and the supervisors' group.
    pub(super) groups: Vec<Option<i64>>,
    pub(super) supervisors_group: Option<i64>,
    pub(super) scripts: Vec<i64>,
    pub(super) steps: Vec<Option<i64>>,
    pub(super) file_types: HashMap<&'static str, i64>,
    pub(super) projects: Vec<ProjectInfo>,
}

/// A person, by department.
pub(super) struct User {
    pub(super) id: i64,
    pub(super) dept: usize,
    pub(super) supervisor: bool,
    pub(super) active: bool,
}

/// A project made, with its people.
pub(super) struct ProjectInfo {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) tank: String,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) episodic: bool,
    /// User indices on the project, by department.
    pub(super) team: Vec<Vec<usize>>,
    pub(super) supervisors: Vec<usize>,
}

/// What tasks and versions hang off.
pub(super) struct Target {
    pub(super) t: &'static str,
    pub(super) id: i64,
    pub(super) code: String,
    /// The entity's folder under the project's root.
    pub(super) dir: String,
    pub(super) frames: Option<(i64, i64)>,
}

/// A project being built: its people, and its versions so far.
pub(super) struct ProjectCtx<'w> {
    pub(super) world: &'w World,
    pub(super) project: &'w ProjectInfo,
    pub(super) team: &'w [Vec<usize>],
    pub(super) versions: RefCell<Vec<(i64, i64)>>,
}

impl<'w> ProjectCtx<'w> {
    pub(super) fn new(world: &'w World, project: &'w ProjectInfo) -> ProjectCtx<'w> {
        ProjectCtx {
            world,
            project,
            team: &project.team,
            versions: Default::default(),
        }
    }

    pub(super) fn user(&self, u: usize) -> Value {
        link("HumanUser", self.world.users[u].id)
    }

    /// Someone from production (active if possible).
    pub(super) fn coordinator(&self, rng: &mut StdRng) -> Value {
        let team = &self.team[PRODUCTION];
        let active: Vec<usize> = team
            .iter()
            .copied()
            .filter(|u| self.world.users[*u].active)
            .collect();
        match active.choose(rng).or_else(|| team.choose(rng)) {
            Some(u) => self.user(*u),
            None => self.script(0),
        }
    }

    pub(super) fn supervisor(&self, rng: &mut StdRng) -> Value {
        match self.project.supervisors.choose(rng) {
            Some(u) => self.user(*u),
            None => self.coordinator(rng),
        }
    }

    pub(super) fn script(&self, i: usize) -> Value {
        match self.world.scripts.get(i).or(self.world.scripts.first()) {
            Some(id) => link("ApiUser", *id),
            None => link(
                "HumanUser",
                self.world.users.first().map(|u| u.id).unwrap_or(1),
            ),
        }
    }
}
