//! Tasks: an entity's tasks in pipeline order, each task's status and
//! assignees, the versions and notes made on it, and the time logged.

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;

use super::builder::{date, link, Builder};
use super::studio::{PRODUCTION_STEP, STEPS};
use super::world::{ProjectCtx, Target};
use super::{DAY, HOUR};

/// A task made, as the work on it needs it.
struct TaskWork<'a> {
    id: i64,
    step: usize,
    content: &'a str,
    status: &'a str,
    start: i64,
    /// Until when work was done on it: its due date, or now.
    window_end: i64,
    assignees: &'a [i64],
}

impl Builder<'_, '_> {
    /// The tasks of one entity, in pipeline order, each depending on the one
    /// before, with their versions, files, notes and time logs. Returns the
    /// tasks' statuses.
    pub(super) fn entity_work(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        steps: &[usize],
        schedule: i64,
        created: i64,
    ) -> Vec<String> {
        let mut cursor = schedule;
        let mut upstream: Option<(i64, Option<i64>)> = None;
        let mut statuses = Vec::new();
        for &step in steps {
            let def = &STEPS[step];
            let days = self.rng.gen_range(def.days.0..=def.days.1);
            let start = cursor;
            let due = start + days * DAY * 7 / 5;
            cursor = start + days * DAY * 4 / 5;
            let (task, status, file) =
                self.task(ctx, target, step, def.code, start, due, upstream, created);
            if let Some(task) = task {
                upstream = Some((task, file));
            }
            statuses.push(status);
        }
        statuses
    }

    /// One task and everything made on it; returns its id, status and latest published file.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn task(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        step: usize,
        content: &str,
        start: i64,
        due: i64,
        upstream: Option<(i64, Option<i64>)>,
        created: i64,
    ) -> (Option<i64>, String, Option<i64>) {
        let def = &STEPS[step];
        let now = self.now;
        let status = self.task_status(start, due);
        let (assignees, assignee_links) = self.assignees(ctx, def.dept);
        let task_created = self.between(created, created + 2 * DAY);
        let by = ctx.coordinator(&mut self.rng);
        let working_days = ((due - start) / DAY * 5 / 7).max(1);
        let mut r = self.rec("Task");
        r.set("content", content)
            .set("entity", link(target.t, target.id))
            .set("project", link("Project", ctx.project.id));
        r.link("step", "Step", ctx.world.steps[step])
            .links("task_assignees", &assignee_links);
        r.set("sg_status_list", status.as_str())
            .set("start_date", date(start))
            .set("due_date", date(due));
        r.set("duration", working_days * 8 * 60);
        r.set(
            "est_in_mins",
            (working_days as f64 * 8.0 * 60.0 * self.rng.gen_range(0.7..1.3)).round() as i64 / 30
                * 30,
        );
        r.set(
            "milestone",
            step == PRODUCTION_STEP && content == "Final delivery",
        );
        if let Some((up, _)) = upstream {
            r.links("upstream_tasks", &[("Task", up)]);
        }
        let updated = self.between(task_created, due.min(now));
        r.audit(task_created, &by, updated, &by);
        let Some(task_id) = self.add(r) else {
            return (None, status, None);
        };
        let work = TaskWork {
            id: task_id,
            step,
            content,
            status: &status,
            start,
            window_end: due.min(now - HOUR),
            assignees: &assignees,
        };
        let latest_file = self.versions_of(ctx, target, &work, upstream.and_then(|u| u.1));
        if self.rng.gen_bool(0.04) {
            let at = self.between(task_created, now);
            self.note(ctx, target, None, at, assignees.first().copied());
        }
        let logged = self.time_logs(ctx, target, &work);
        if let Some(rec) = self.batch.get_mut("Task", task_id) {
            if self.shape.field("Task", "time_logs_sum").is_some() {
                rec.insert("time_logs_sum".into(), json!(logged));
            }
        }
        (Some(task_id), status, latest_file)
    }

    /// A task's status from where its dates fall against now, a few on hold
    /// or omitted.
    fn task_status(&mut self, start: i64, due: i64) -> String {
        let now = self.now;
        let status = if self.rng.gen_bool(0.02) {
            "omt"
        } else if self.rng.gen_bool(0.03) {
            "hld"
        } else if due < now {
            if self.rng.gen_bool(0.9) {
                "fin"
            } else {
                "rev"
            }
        } else if start < now {
            if self.rng.gen_bool(0.7) {
                "ip"
            } else {
                "rev"
            }
        } else if start < now + 14 * DAY {
            "rdy"
        } else {
            "wtg"
        };
        self.shape
            .pick(&mut self.rng, "Task", "sg_status_list", &[(status, 1)])
            .unwrap_or_else(|| status.to_string())
    }

    /// Who a task is assigned to: one or two of the department's people on
    /// the project, or now and then the department's group. Returns the
    /// people's ids and the links of all the assignees.
    fn assignees(&mut self, ctx: &ProjectCtx, dept: usize) -> (Vec<i64>, Vec<(&'static str, i64)>) {
        let team = &ctx.team[dept];
        let mut assignees: Vec<i64> = Vec::new();
        let mut assignee_links: Vec<(&str, i64)> = Vec::new();
        let roll = self.rng.gen_range(0..100);
        if roll < 5 {
            if let Some(group) = ctx.world.groups[dept] {
                assignee_links.push(("Group", group));
            }
        } else {
            let count = if roll < 15 { 2 } else { 1 };
            for u in team.choose_multiple(&mut self.rng, count) {
                assignees.push(ctx.world.users[*u].id);
                assignee_links.push(("HumanUser", ctx.world.users[*u].id));
            }
        }
        (assignees, assignee_links)
    }

    /// The versions made while a task was worked on, more the further it
    /// got, some with a note; returns the latest main published file.
    fn versions_of(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        task: &TaskWork,
        upstream_file: Option<i64>,
    ) -> Option<i64> {
        let now = self.now;
        let def = &STEPS[task.step];
        let versions = match task.status {
            "ip" => self.rng.gen_range(1..=3),
            "rev" => self.rng.gen_range(1..=4),
            "fin" => self.rng.gen_range(2..=5),
            "hld" => self.rng.gen_range(0..=1),
            _ => 0,
        };
        let versions = if def.files.is_empty() || task.start >= now {
            0
        } else {
            versions
        };
        let team = &ctx.team[def.dept];
        let mut latest_file = None;
        for v in 1..=versions {
            let at = task.start
                + (task.window_end - task.start).max(HOUR) * v / (versions + 1)
                + self.rng.gen_range(0..6 * HOUR);
            let at = at.min(now - HOUR);
            let artist = task
                .assignees
                .choose(&mut self.rng)
                .copied()
                .or_else(|| team.choose(&mut self.rng).map(|u| ctx.world.users[*u].id));
            let last = v == versions;
            let version_status = match (task.status, last) {
                ("fin", true) => "apr",
                ("rev" | "ip", true) => {
                    if self.rng.gen_bool(0.7) {
                        "rev"
                    } else {
                        "na"
                    }
                }
                ("hld" | "omt", _) => "na",
                _ => {
                    if self.rng.gen_bool(0.1) {
                        "rej"
                    } else {
                        "vwd"
                    }
                }
            };
            let (version_id, file) = self.version(
                ctx,
                target,
                task.id,
                task.step,
                v,
                at,
                artist,
                version_status,
                upstream_file,
            );
            latest_file = file.or(latest_file);
            if let Some(version_id) = version_id {
                ctx.versions.borrow_mut().push((at, version_id));
                if self.rng.gen_bool(0.35) {
                    self.note(ctx, target, Some((version_id, v)), at, artist);
                }
            }
        }
        latest_file
    }

    /// Time logged by the assignees of a task being or done being worked
    /// on; returns the minutes logged.
    fn time_logs(&mut self, ctx: &ProjectCtx, target: &Target, task: &TaskWork) -> i32 {
        let now = self.now;
        let assignees = task.assignees;
        let mut logged = 0;
        if !matches!(task.status, "ip" | "rev" | "fin") || assignees.is_empty() {
            return logged;
        }
        for _ in 0..self.rng.gen_range(1..=3) {
            let user = *assignees.choose(&mut self.rng).unwrap_or(&assignees[0]);
            let day = self.between(task.start, task.window_end);
            // Drawn as an i32: another integer type draws other numbers from the same seed.
            let minutes: i32 = self.rng.gen_range(2..=16) * 30;
            logged += minutes;
            let mut r = self.rec("TimeLog");
            r.set("entity", link("Task", task.id))
                .set("project", link("Project", ctx.project.id));
            r.set("user", link("HumanUser", user))
                .set("duration", minutes)
                .set("date", date(day));
            r.set(
                "description",
                format!("{} on {}", task.content, target.code),
            );
            let at = (day + 17 * HOUR).min(now - HOUR);
            let who = link("HumanUser", user);
            r.audit(at, &who, at, &who);
            self.add(r);
        }
        logged
    }
}
