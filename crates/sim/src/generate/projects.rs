//! The projects: who works on each, their dates, kind and status.

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;

use super::builder::{date, link, Builder};
use super::studio::{DEPTS, PRODUCTION, PROJECT_NAMES};
use super::world::{ProjectInfo, World};
use super::{Scale, DAY};

impl Builder<'_, '_> {
    /// `scale.projects` projects, each with a team from every department.
    pub(super) fn projects(&mut self, world: &mut World, scale: &Scale) {
        let by = world
            .users
            .first()
            .map(|u| link("HumanUser", u.id))
            .unwrap_or(Value::Null);
        let count = scale.projects;
        for (p, mut team) in self.teams(world, count).into_iter().enumerate() {
            self.staff_every_department(world, &mut team);
            if let Some(project) = self.project(world, p, count, team, &by) {
                world.projects.push(project);
            }
        }
    }

    /// User indices on each project, by department: each person works on
    /// one project, some on two.
    fn teams(&mut self, world: &World, count: usize) -> Vec<Vec<Vec<usize>>> {
        let mut teams: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); DEPTS.len()]; count];
        for (u, user) in world.users.iter().enumerate() {
            let first = self.rng.gen_range(0..count);
            teams[first][user.dept].push(u);
            if self.rng.gen_bool(0.25) && count > 1 {
                let second = (first + self.rng.gen_range(1..count)) % count;
                teams[second][user.dept].push(u);
            }
        }
        teams
    }

    /// Gives a department nobody on the project works in someone from it.
    fn staff_every_department(&mut self, world: &World, team: &mut [Vec<usize>]) {
        for (dept, members) in team.iter_mut().enumerate() {
            if members.is_empty() {
                let pool: Vec<usize> = (0..world.users.len())
                    .filter(|u| world.users[*u].dept == dept)
                    .collect();
                members.extend(
                    pool.choose(&mut self.rng)
                        .copied()
                        .or_else(|| (!world.users.is_empty()).then_some(0)),
                );
            }
            members.sort_unstable();
            members.dedup();
        }
    }

    /// The `p`th project of `count`, made by `by`.
    fn project(
        &mut self,
        world: &World,
        p: usize,
        count: usize,
        team: Vec<Vec<usize>>,
        by: &Value,
    ) -> Option<ProjectInfo> {
        let supervisors: Vec<usize> = team
            .iter()
            .flatten()
            .copied()
            .filter(|u| world.users[*u].supervisor)
            .collect();
        let supervisors = if supervisors.is_empty() {
            team[PRODUCTION].clone()
        } else {
            supervisors
        };
        let archived = count >= 4 && p % 6 == 5;
        let name = match PROJECT_NAMES.get(p) {
            Some(n) => n.to_string(),
            None => format!(
                "{} {}",
                PROJECT_NAMES[p % PROJECT_NAMES.len()],
                p / PROJECT_NAMES.len() + 1
            ),
        };
        let tank: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let (start, end) = if archived {
            let start = self.now - self.rng.gen_range(320..345) * DAY;
            (start, self.now - self.rng.gen_range(15..60) * DAY)
        } else {
            let start = self.now - self.rng.gen_range(120..330) * DAY;
            (
                start,
                (start + self.rng.gen_range(300..520) * DAY).min(self.now + 90 * DAY),
            )
        };
        let episodic = p % 3 == 1;
        let mut users: Vec<usize> = team.iter().flatten().copied().collect();
        users.sort_unstable();
        users.dedup();
        let user_links: Vec<(&str, i64)> = users
            .iter()
            .map(|u| ("HumanUser", world.users[*u].id))
            .collect();
        let mut r = self.rec("Project");
        r.set("name", name.as_str()).set("tank_name", tank.as_str());
        let kind = if episodic {
            "Episodic"
        } else {
            ["Feature Film", "Short Film", "Commercial", "Game Cinematic"][p % 4]
        };
        r.pick(&mut self.rng, "sg_type", &[(kind, 1)]);
        let status = if archived {
            "Delivered"
        } else if p % 7 == 6 {
            "Bidding"
        } else {
            "Active"
        };
        r.pick(&mut self.rng, "sg_status", &[(status, 1)]);
        r.set("archived", archived)
            .set("start_date", date(start))
            .set("end_date", date(end));
        let what = if episodic { "series" } else { "production" };
        r.set(
            "sg_description",
            format!("{name}: {} {what}.", kind.to_lowercase()),
        );
        r.links("users", &user_links);
        let created = start - self.rng.gen_range(5..15) * DAY;
        let updated = self.between(start, self.now);
        r.audit(created, by, updated, by);
        let id = self.add(r)?;
        Some(ProjectInfo {
            id,
            name,
            tank,
            start,
            end,
            episodic,
            team,
            supervisors,
        })
    }
}
