//! A project's episodes (when it is episodic), sequences and shots: their
//! records, cast and cut, their work, and statuses rolled up from shots to
//! sequences and episodes.

use rand::seq::SliceRandom;
use rand::Rng;

use super::builder::{link, Builder};
use super::production::AssetPools;
use super::studio::{ACTIONS, FRAMINGS, PREVIS, SHOT_STEPS, SUBJECTS};
use super::world::{ProjectCtx, Target};
use super::DAY;

/// A sequence made, as its shots need it.
struct Sequence {
    id: i64,
    number: usize,
    /// Its folder under the project's root.
    dir: String,
}

/// Shots to write per sequence, on average.
const SHOTS_PER_SEQUENCE: f64 = 12.0;

impl Builder<'_, '_> {
    /// `shot_count` shots in sequences of about a dozen, the sequences in
    /// episodes on an episodic project.
    pub(super) fn sequences(&mut self, ctx: &ProjectCtx, shot_count: usize, pools: &AssetPools) {
        let seq_count = ((shot_count as f64) / SHOTS_PER_SEQUENCE).ceil().max(1.0) as usize;
        let episodes = self.episodes(ctx, seq_count);
        let mut shots_left = shot_count;
        let mut cut_order = 0;
        let mut episode_sequences: Vec<Vec<(&str, i64)>> = vec![Vec::new(); episodes.len()];
        let mut episode_status: Vec<Vec<String>> = vec![Vec::new(); episodes.len()];
        for s in 0..seq_count {
            let episode = (!episodes.is_empty()).then(|| s * episodes.len() / seq_count);
            let Some(seq) = self.sequence(ctx, s, episode.and_then(|e| episodes[e])) else {
                continue;
            };
            if let Some(e) = episode {
                episode_sequences[e].push(("Sequence", seq.id));
            }
            // The sequence's sets and cast.
            let sets: Vec<i64> = pools
                .environments
                .choose_multiple(&mut self.rng, 2)
                .copied()
                .collect();
            let remaining = seq_count - s;
            let want = (shots_left / remaining + self.rng.gen_range(0..=6))
                .saturating_sub(3)
                .max(1);
            let shots_here = if remaining == 1 {
                shots_left
            } else {
                want.min(shots_left)
            };
            shots_left = shots_left.saturating_sub(shots_here);
            let mut statuses = Vec::new();
            for k in 0..shots_here {
                cut_order += 1;
                statuses.extend(self.shot(ctx, &seq, k, cut_order, &sets, pools));
            }
            let status = self.roll_up_names(&statuses);
            self.set_status("Sequence", seq.id, &status);
            if let Some(e) = episode {
                episode_status[e].push(status);
            }
        }
        for (e, episode) in episodes.iter().enumerate() {
            let Some(id) = *episode else { continue };
            let status = self.roll_up_names(&episode_status[e]);
            self.set_status("Episode", id, &status);
            self.set_links("Episode", id, "sequences", &episode_sequences[e]);
        }
    }

    /// An episodic project's episodes, four sequences each (none on other
    /// projects, or where the schema has no Episode).
    fn episodes(&mut self, ctx: &ProjectCtx, seq_count: usize) -> Vec<Option<i64>> {
        let p = ctx.project;
        if !p.episodic || !self.shape.has("Episode") {
            return Vec::new();
        }
        let count = seq_count.div_ceil(4).clamp(1, 26);
        (0..count)
            .map(|e| {
                let created = self.between(p.start, p.start + 20 * DAY);
                let by = ctx.coordinator(&mut self.rng);
                let mut r = self.rec("Episode");
                r.set("code", format!("EP{}", 101 + e))
                    .set("project", link("Project", p.id));
                r.set(
                    "description",
                    format!("Episode {}: {}", e + 1, SUBJECTS[e % SUBJECTS.len()]),
                );
                r.audit(created, &by, created, &by);
                self.add(r)
            })
            .collect()
    }

    /// The `s`th sequence, in `episode`, with its previs half the time.
    fn sequence(&mut self, ctx: &ProjectCtx, s: usize, episode: Option<i64>) -> Option<Sequence> {
        let p = ctx.project;
        let number = (s + 1) * 10;
        let code = format!("SEQ_{number:03}");
        let created = self.between(p.start, p.start + 25 * DAY);
        let by = ctx.coordinator(&mut self.rng);
        let mut r = self.rec("Sequence");
        r.set("code", code.as_str())
            .set("project", link("Project", p.id));
        r.set(
            "description",
            format!(
                "{} {}",
                FRAMINGS[s % FRAMINGS.len()],
                ACTIONS[s % ACTIONS.len()]
            ),
        );
        r.link("episode", "Episode", episode);
        r.audit(created, &by, created, &by);
        let id = self.add(r)?;
        let dir = format!("sequences/{code}");
        if self.rng.gen_bool(0.5) {
            let schedule = self.between(p.start + 5 * DAY, p.start + 60 * DAY);
            let target = Target {
                t: "Sequence",
                id,
                code,
                dir: dir.clone(),
                frames: Some((1001, 2400)),
            };
            self.entity_work(ctx, &target, &[PREVIS], schedule, created);
        }
        Some(Sequence { id, number, dir })
    }

    /// The `k`th shot of a sequence, cast from its `sets` and the project's
    /// assets, with its work; returns its status.
    fn shot(
        &mut self,
        ctx: &ProjectCtx,
        seq: &Sequence,
        k: usize,
        cut_order: i64,
        sets: &[i64],
        pools: &AssetPools,
    ) -> Option<String> {
        let p = ctx.project;
        let shot_code = format!("SH{:03}_{:04}", seq.number, (k + 1) * 10);
        let duration: i64 = self.rng.gen_range(24..=200);
        let cut_in = 1001;
        let cut_out = cut_in + duration - 1;
        let created = self.between(p.start + DAY, p.start + 40 * DAY);
        let by = ctx.coordinator(&mut self.rng);
        let cast = self.cast(sets, pools);
        let mut r = self.rec("Shot");
        r.set("code", shot_code.as_str())
            .set("project", link("Project", p.id))
            .set("sg_sequence", link("Sequence", seq.id));
        let tags = self.some_tags();
        r.set("tag_list", tags);
        let framing = FRAMINGS.choose(&mut self.rng).unwrap_or(&"Wide shot");
        let subject = SUBJECTS.choose(&mut self.rng).unwrap_or(&"the hero");
        let action = ACTIONS.choose(&mut self.rng).unwrap_or(&"turns");
        r.set(
            "description",
            format!("{framing} of {subject} as it {action}."),
        );
        r.pick(
            &mut self.rng,
            "sg_shot_type",
            &[
                ("Bread & Butter", 60),
                ("Complex", 25),
                ("Hero", 10),
                ("Insert", 5),
            ],
        );
        r.set("sg_cut_in", cut_in)
            .set("sg_cut_out", cut_out)
            .set("sg_cut_duration", duration);
        r.set("sg_cut_order", cut_order)
            .set("sg_head_in", cut_in - 8)
            .set("sg_tail_out", cut_out + 8);
        r.links("assets", &cast);
        r.audit(created, &by, created, &by);
        let shot_id = self.add(r)?;
        let schedule = self.between(p.start + (p.end - p.start) / 5, p.end - 40 * DAY);
        let steps: Vec<usize> = SHOT_STEPS
            .iter()
            .filter(|(_, odds)| self.rng.gen_bool(*odds))
            .map(|(s, _)| *s)
            .collect();
        let target = Target {
            t: "Shot",
            id: shot_id,
            code: shot_code.clone(),
            dir: format!("{}/{shot_code}", seq.dir),
            frames: Some((cut_in, cut_out)),
        };
        let task_statuses = self.entity_work(ctx, &target, &steps, schedule, created);
        Some(self.roll_up("Shot", shot_id, &task_statuses))
    }

    /// A shot's assets: a few characters (mostly the leads), usually a set,
    /// some props, now and then a vehicle, an effect or a matte painting.
    fn cast(&mut self, sets: &[i64], pools: &AssetPools) -> Vec<(&'static str, i64)> {
        let characters = &pools.characters;
        let mut cast: Vec<(&str, i64)> = Vec::new();
        let lead = characters.len().min(3);
        for _ in 0..self.rng.gen_range(0..=3) {
            if let Some(c) = if self.rng.gen_bool(0.6) {
                characters[..lead].choose(&mut self.rng)
            } else {
                characters.choose(&mut self.rng)
            } {
                cast.push(("Asset", *c));
            }
        }
        for (pool, odds, most) in [
            (sets, 0.9, 1),
            (&pools.props[..], 0.6, 3),
            (&pools.vehicles[..], 0.2, 1),
            (&pools.fx[..], 0.15, 1),
            (&pools.mattes[..], 0.1, 1),
        ] {
            if self.rng.gen_bool(odds) {
                let count = self.rng.gen_range(1..=most);
                cast.extend(
                    pool.choose_multiple(&mut self.rng, count)
                        .map(|id| ("Asset", *id)),
                );
            }
        }
        cast.sort_unstable_by_key(|(_, id)| *id);
        cast.dedup();
        cast
    }
}
