//! One project's production: its share of the shots and assets, the
//! project-level tasks, the assets with their work and set dressing, and
//! statuses rolled up from tasks to the entities above them.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::builder::{link, Builder};
use super::studio::{ASSET_KINDS, PRODUCTION_STEP};
use super::world::{ProjectCtx, Target, World};
use super::{Scale, DAY};

/// A project's assets by kind, as shots cast them.
pub(super) struct AssetPools {
    pub(super) characters: Vec<i64>,
    pub(super) props: Vec<i64>,
    pub(super) environments: Vec<i64>,
    pub(super) vehicles: Vec<i64>,
    pub(super) fx: Vec<i64>,
    pub(super) mattes: Vec<i64>,
}

impl Builder<'_, '_> {
    /// Every record of the `index`th project: its share of the shots and
    /// assets (give or take a fifth), with all their work, and its playlists.
    pub(super) fn production(&mut self, world: &World, index: usize, scale: &Scale) {
        let p = &world.projects[index];
        let n = world.projects.len().max(1);
        let jitter = |rng: &mut StdRng, total: usize| {
            let base = total / n + usize::from(index < total % n);
            (base as f64 * rng.gen_range(0.8..1.2)).round().max(1.0) as usize
        };
        let shot_count = jitter(&mut self.rng, scale.shots);
        let asset_count = jitter(&mut self.rng, scale.assets);
        let ctx = ProjectCtx::new(world, p);
        self.project_tasks(&ctx);
        let pools = self.assets(&ctx, asset_count);
        self.dress_sets(&pools);
        self.sequences(&ctx, shot_count, &pools);
        self.playlists(&ctx);
    }

    /// Bidding, editorial and delivery, on the project itself.
    fn project_tasks(&mut self, ctx: &ProjectCtx) {
        let p = ctx.project;
        for (content, from, to) in [
            ("Bidding", 0.0, 0.1),
            ("Editorial", 0.1, 0.9),
            ("Final delivery", 0.9, 1.0),
        ] {
            let span = (p.end - p.start) as f64;
            let start = p.start + (span * from) as i64;
            let due = p.start + (span * to) as i64;
            let target = Target {
                t: "Project",
                id: p.id,
                code: p.tank.clone(),
                dir: "editorial".into(),
                frames: None,
            };
            self.task(
                ctx,
                &target,
                PRODUCTION_STEP,
                content,
                start,
                due,
                None,
                p.start,
            );
        }
    }

    /// `count` assets of weighted kinds, each with its work.
    fn assets(&mut self, ctx: &ProjectCtx, count: usize) -> AssetPools {
        let p = ctx.project;
        let mut assets: Vec<(usize, i64)> = Vec::new();
        let mut used: HashMap<String, usize> = HashMap::new();
        for _ in 0..count {
            let kind_index = *self.weighted(&(0..ASSET_KINDS.len()).collect::<Vec<_>>(), |k| {
                ASSET_KINDS[*k].weight
            });
            let kind = &ASSET_KINDS[kind_index];
            let name = *kind.names.choose(&mut self.rng).unwrap_or(&"thing");
            let mut code = format!("{}_{}", kind.prefix, name);
            let seen = used.entry(code.clone()).or_default();
            *seen += 1;
            if *seen > 1 {
                code = format!("{code}_{:02}", seen);
            }
            let created = self.between(p.start, p.start + 30 * DAY);
            let schedule = self.between(p.start + 5 * DAY, p.start + (p.end - p.start) * 2 / 5);
            let mut r = self.rec("Asset");
            r.set("code", code.as_str())
                .set("project", link("Project", p.id));
            let tags = self.some_tags();
            r.set("tag_list", tags);
            r.pick(&mut self.rng, "sg_asset_type", &[(kind.kind, 1)]);
            r.set("description", format!("{} {}", kind.kind, name));
            let by = ctx.coordinator(&mut self.rng);
            r.audit(created, &by, created, &by);
            let Some(id) = self.add(r) else { continue };
            let target = Target {
                t: "Asset",
                id,
                code: code.clone(),
                dir: format!("assets/{}/{code}", kind.kind.replace(' ', "")),
                frames: Some((1001, 1100)),
            };
            let steps: Vec<usize> = kind
                .steps
                .iter()
                .filter(|(_, odds)| self.rng.gen_bool(*odds))
                .map(|(s, _)| *s)
                .collect();
            let statuses = self.entity_work(ctx, &target, &steps, schedule, created);
            self.roll_up("Asset", id, &statuses);
            assets.push((kind_index, id));
        }
        let of_kind = |k: &str| -> Vec<i64> {
            assets
                .iter()
                .filter(|(i, _)| ASSET_KINDS[*i].kind == k)
                .map(|(_, id)| *id)
                .collect()
        };
        AssetPools {
            characters: of_kind("Character"),
            props: of_kind("Prop"),
            environments: of_kind("Environment"),
            vehicles: of_kind("Vehicle"),
            fx: of_kind("FX"),
            mattes: of_kind("Matte Painting"),
        }
    }

    /// Sets dress with props: the environment lists them as sub-assets.
    fn dress_sets(&mut self, pools: &AssetPools) {
        for env in &pools.environments {
            let count = self.rng.gen_range(0..=4).min(pools.props.len());
            let dressing: Vec<(&str, i64)> = pools
                .props
                .choose_multiple(&mut self.rng, count)
                .map(|id| ("Asset", *id))
                .collect();
            self.set_links("Asset", *env, "assets", &dressing);
        }
    }

    /// Sets a link list on a record already made, if the field takes it.
    pub(super) fn set_links(&mut self, t: &str, id: i64, field: &str, targets: &[(&str, i64)]) {
        let value = Value::Array(targets.iter().map(|(t, id)| link(t, *id)).collect());
        self.set_checked(t, id, field, value);
    }

    /// Sets a record's status to `status` if the field takes it.
    pub(super) fn set_status(&mut self, t: &'static str, id: i64, status: &str) {
        self.set_checked(t, id, "sg_status_list", json!(status));
    }

    fn set_checked(&mut self, t: &str, id: i64, field: &str, value: Value) {
        if let Some(v) = self.shape.check(t, field, value) {
            if let Some(rec) = self.batch.get_mut(t, id) {
                rec.insert(field.into(), v);
            }
        }
    }

    /// An entity's status from its tasks' statuses; returns it.
    pub(super) fn roll_up(&mut self, t: &'static str, id: i64, tasks: &[String]) -> String {
        let status = if self.rng.gen_bool(0.02) {
            "omt".to_string()
        } else if self.rng.gen_bool(0.02) {
            "hld".to_string()
        } else {
            self.roll_up_names(tasks)
        };
        self.set_status(t, id, &status);
        status
    }

    /// The status of what holds entities of these statuses.
    pub(super) fn roll_up_names(&self, statuses: &[String]) -> String {
        let live: Vec<&str> = statuses
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "omt")
            .collect();
        if live.is_empty() {
            "wtg"
        } else if live.iter().all(|s| *s == "fin") {
            "fin"
        } else if live.iter().any(|s| matches!(*s, "ip" | "rev" | "fin")) {
            "ip"
        } else if live.contains(&"rdy") {
            "rdy"
        } else {
            "wtg"
        }
        .to_string()
    }
}
