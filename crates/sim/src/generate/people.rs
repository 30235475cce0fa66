//! People and accounts (the admin, the pipeline's scripts, the crew and
//! their groups) and the pipeline every project shares: steps, tags and
//! published file types.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;

use super::builder::{link, Builder};
use super::studio::{
    DEPTS, DEPT_WEIGHTS, FILE_TYPES, FIRST_NAMES, LAST_NAMES, PRODUCTION, STEPS, TAG_NAMES,
};
use super::world::{User, World};
use super::{Scale, DAY};

/// The pipeline's scripts: name, what it does, whose it is, its version.
const SCRIPTS: [(&str, &str, &str, &str); 3] = [
    (
        "Toolkit",
        "Pipeline publishes and version creation",
        "pipeline@studio.example",
        "1.4",
    ),
    (
        "shotgun_events",
        "Event daemon: status roll-ups and notifications",
        "pipeline@studio.example",
        "2.0",
    ),
    (
        "sync_service",
        "Mirrors the site into the local cache",
        "infra@studio.example",
        "0.9",
    ),
];

impl Builder<'_, '_> {
    /// The admin, the scripts, `scale.users` people in all, and their groups.
    pub(super) fn people(&mut self, world: &mut World, scale: &Scale) {
        let first_stamp = self.now - 365 * DAY + DAY;
        let by = self.admin(world, first_stamp);
        self.scripts(world, &by, first_stamp);
        self.crew(world, scale, &by);
        self.groups(world, &by, first_stamp);
    }

    /// The first person, who made everyone else; returns a link to them.
    fn admin(&mut self, world: &mut World, at: i64) -> Value {
        let mut admin = self.rec("HumanUser");
        admin
            .set("name", "Production Admin")
            .set("login", "admin")
            .set("firstname", "Production");
        admin
            .set("lastname", "Admin")
            .set("email", "admin@studio.example")
            .pick(&mut self.rng, "sg_status_list", &[("act", 1)]);
        let admin_id = self.add(admin);
        let by = admin_id
            .map(|id| link("HumanUser", id))
            .unwrap_or(Value::Null);
        // The admin made itself.
        let mut stamps = self.rec("HumanUser");
        stamps.audit(at, &by, at, &by);
        if let Some(rec) = admin_id.and_then(|id| self.batch.get_mut("HumanUser", id)) {
            rec.append(&mut stamps.m);
        }
        if let Some(id) = admin_id {
            world.users.push(User {
                id,
                dept: PRODUCTION,
                supervisor: true,
                active: true,
            });
        }
        by
    }

    fn scripts(&mut self, world: &mut World, by: &Value, at: i64) {
        for (name, description, email, version) in SCRIPTS {
            let mut r = self.rec("ApiUser");
            r.set("firstname", name)
                .set("lastname", version)
                .set("description", description)
                .set("email", email);
            r.set("generate_event_log_entries", true)
                .audit(at, by, at, by);
            if let Some(id) = self.add(r) {
                world.scripts.push(id);
            }
        }
    }

    /// Everyone but the admin, each in a department, some supervisors, a few
    /// no longer active.
    fn crew(&mut self, world: &mut World, scale: &Scale, by: &Value) {
        let year_ago = self.now - 365 * DAY;
        let mut logins = BTreeSet::from(["admin".to_string()]);
        for i in 1..scale.users {
            let first = *FIRST_NAMES.choose(&mut self.rng).unwrap_or(&"Alex");
            let last = *LAST_NAMES.choose(&mut self.rng).unwrap_or(&"Smith");
            let base = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
            let mut login = base.clone();
            let mut n = 2;
            while !logins.insert(login.clone()) {
                login = format!("{base}{n}");
                n += 1;
            }
            let dept = *self.weighted(&(0..DEPTS.len()).collect::<Vec<_>>(), |d| DEPT_WEIGHTS[*d]);
            let supervisor = self.rng.gen_bool(0.08) || i <= DEPTS.len() && dept == PRODUCTION;
            let active = !self.rng.gen_bool(0.08);
            let created = self.between(year_ago + 2 * DAY, self.now - 30 * DAY);
            let updated = self.between(created, self.now);
            let mut r = self.rec("HumanUser");
            r.set("name", format!("{first} {last}"))
                .set("login", login.as_str())
                .set("firstname", first);
            r.set("lastname", last)
                .set("email", format!("{login}@studio.example"));
            r.pick(
                &mut self.rng,
                "sg_status_list",
                if active { &[("act", 1)] } else { &[("dis", 1)] },
            );
            r.audit(created, by, updated, by);
            if let Some(id) = self.add(r) {
                world.users.push(User {
                    id,
                    dept,
                    supervisor,
                    active,
                });
            }
        }
    }

    /// Departments and supervisors as groups.
    fn groups(&mut self, world: &mut World, by: &Value, at: i64) {
        for (d, dept) in DEPTS.iter().enumerate() {
            let members = Self::members(world, |u| u.dept == d);
            let mut r = self.rec("Group");
            r.set("code", *dept)
                .links("users", &members)
                .audit(at, by, at, by);
            world.groups.push(self.add(r));
        }
        let members = Self::members(world, |u| u.supervisor);
        let mut r = self.rec("Group");
        r.set("code", "Supervisors")
            .links("users", &members)
            .audit(at, by, at, by);
        world.supervisors_group = self.add(r);
    }

    fn members(world: &World, member: impl Fn(&User) -> bool) -> Vec<(&'static str, i64)> {
        world
            .users
            .iter()
            .filter(|u| member(u))
            .map(|u| ("HumanUser", u.id))
            .collect()
    }

    /// The pipeline steps, the tags and the published file types.
    pub(super) fn pipeline(&mut self, world: &mut World) {
        let at = self.now - 364 * DAY;
        let by = world
            .users
            .first()
            .map(|u| link("HumanUser", u.id))
            .unwrap_or(Value::Null);
        for (order, step) in STEPS.iter().enumerate() {
            let mut r = self.rec("Step");
            r.set("code", step.code)
                .set("short_name", step.short)
                .set("entity_type", step.entity_type);
            r.set("color", step.color)
                .set("list_order", order as i64 + 1);
            r.set(
                "description",
                format!("{} work on {}s", step.code, step.entity_type),
            );
            r.audit(at, &by, at, &by);
            world.steps.push(self.add(r));
        }
        for name in TAG_NAMES {
            let mut r = self.rec("Tag");
            r.set("name", *name);
            r.audit(at, &by, at, &by);
            self.add(r);
        }
        for (code, short, ext, _) in FILE_TYPES {
            let mut r = self.rec("PublishedFileType");
            r.set("code", *code)
                .set("short_name", *short)
                .set("description", format!("{code} (.{ext})"));
            r.audit(at, &by, at, &by);
            if let Some(id) = self.add(r) {
                world.file_types.insert(code, id);
            }
        }
    }
}
