//! Versions and what hangs off them: a version's published files (one per
//! file kind of its step, the first always) and the project's playlists of
//! recent versions for dailies and client reviews.

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::builder::{date, link, stamp, Builder};
use super::studio::{FILE_TYPES, STEPS, VERSION_NOTES};
use super::world::{ProjectCtx, Target};
use super::{DAY, HOUR};

/// A version made, as its published files need it.
struct VersionMade<'a> {
    id: i64,
    task: i64,
    step: usize,
    code: &'a str,
    number: i64,
    at: i64,
    /// Who made it.
    who: &'a Value,
    /// The step's folder for the entity.
    root: &'a str,
}

impl Builder<'_, '_> {
    /// One version and its published files; returns the version and its main file.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn version(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        task: i64,
        step: usize,
        number: i64,
        at: i64,
        artist: Option<i64>,
        status: &str,
        upstream_file: Option<i64>,
    ) -> (Option<i64>, Option<i64>) {
        let def = &STEPS[step];
        let root = format!(
            "/mnt/projects/{}/{}/{}",
            ctx.project.tank, target.dir, def.dir
        );
        let code = format!("{}_{}_v{number:03}", target.code, def.dir);
        let who = artist
            .map(|id| link("HumanUser", id))
            .unwrap_or_else(|| ctx.script(0));
        let (first, last) = target.frames.unwrap_or((1001, 1100));
        let mut r = self.rec("Version");
        r.set("code", code.as_str())
            .set("entity", link(target.t, target.id))
            .set("project", link("Project", ctx.project.id));
        r.set("sg_task", link("Task", task))
            .set("user", who.clone());
        r.pick(&mut self.rng, "sg_status_list", &[(status, 1)]);
        r.set(
            "description",
            *VERSION_NOTES.choose(&mut self.rng).unwrap_or(&"WIP"),
        );
        r.set("sg_path_to_movie", format!("{root}/review/{code}.mov"));
        r.set(
            "sg_path_to_frames",
            format!("{root}/render/v{number:03}/{code}.%04d.exr"),
        );
        r.set("sg_first_frame", first)
            .set("sg_last_frame", last)
            .set("frame_count", last - first + 1);
        r.set("frame_range", format!("{first}-{last}"));
        let updated = self.between(at, at + 3 * DAY);
        let updater = if self.rng.gen_bool(0.3) {
            ctx.script(1)
        } else {
            who.clone()
        };
        r.audit(at, &who, updated, &updater);
        let Some(version_id) = self.add(r) else {
            return (None, None);
        };
        let made = VersionMade {
            id: version_id,
            task,
            step,
            code: &code,
            number,
            at,
            who: &who,
            root: &root,
        };
        let main = self.published_files(ctx, target, &made, upstream_file);
        (Some(version_id), main)
    }

    /// A version's published files; returns the main one (of the step's
    /// first file kind), which links to `upstream_file`.
    fn published_files(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        version: &VersionMade,
        upstream_file: Option<i64>,
    ) -> Option<i64> {
        let VersionMade {
            id: version_id,
            task,
            step,
            code,
            number,
            at,
            who,
            root,
        } = *version;
        let def = &STEPS[step];
        let mut main = None;
        for (i, kind) in def.files.iter().enumerate() {
            if i > 0 && !self.rng.gen_bool(0.6) {
                continue;
            }
            let Some(&(_, short, ext, sequence)) = FILE_TYPES.iter().find(|f| f.0 == *kind) else {
                continue;
            };
            let file = if sequence {
                format!(
                    "{}_{}_{short}_v{number:03}.%04d.{ext}",
                    target.code, def.dir
                )
            } else {
                format!("{}_{}_{short}_v{number:03}.{ext}", target.code, def.dir)
            };
            let name = format!("{}_{}_{short}.{ext}", target.code, def.dir);
            let path = format!("{root}/publish/{short}/v{number:03}/{file}");
            let mut r = self.rec("PublishedFile");
            r.set("code", file.as_str())
                .set("name", name.as_str())
                .set("entity", link(target.t, target.id));
            r.set("project", link("Project", ctx.project.id))
                .set("task", link("Task", task));
            r.set("version", link("Version", version_id))
                .set("version_number", number);
            if let Some(ft) = ctx.world.file_types.get(kind) {
                r.set("published_file_type", link("PublishedFileType", *ft));
            }
            let url = format!("file://{path}");
            r.set(
                "path",
                json!({"content_type": null, "link_type": "local", "local_path": path,
                       "local_path_linux": path, "name": file, "url": url}),
            );
            r.set(
                "path_cache",
                format!(
                    "{}/{}/{}/publish/{short}/v{number:03}/{file}",
                    ctx.project.tank, target.dir, def.dir
                ),
            );
            r.pick(&mut self.rng, "sg_status_list", &[("cmpt", 1)]);
            r.set("description", format!("{kind} for {code}"));
            if let (0, Some(up)) = (i, upstream_file) {
                r.links("upstream_published_files", &[("PublishedFile", up)]);
            }
            let published = (at - self.rng.gen_range(60..1800)).max(at - HOUR);
            let by = if self.rng.gen_bool(0.5) {
                who.clone()
            } else {
                ctx.script(0)
            };
            r.audit(published, &by, published, &by);
            let id = self.add(r);
            if i == 0 {
                main = id;
            }
        }
        main
    }

    /// Dailies and client reviews, each with recent versions.
    pub(super) fn playlists(&mut self, ctx: &ProjectCtx) {
        let mut versions = ctx.versions.borrow().clone();
        if versions.is_empty() {
            return;
        }
        versions.sort_unstable();
        let count = (versions.len() / 25).max(2);
        let first = versions[0].0;
        let last = versions[versions.len() - 1].0;
        let mut days: Vec<i64> = (0..count)
            .map(|_| self.between(first + DAY, last + DAY))
            .collect();
        days.sort_unstable();
        for day in days {
            let day = day - day.rem_euclid(DAY);
            let client = self.rng.gen_bool(0.2);
            let at = day + if client { 16 } else { 10 } * HOUR;
            let end = versions.partition_point(|(t, _)| *t < at);
            let begin = versions[..end].partition_point(|(t, _)| *t < at - 7 * DAY);
            let pool = &versions[begin..end];
            let count = self.rng.gen_range(8..=24).min(pool.len());
            let mut chosen: Vec<i64> = pool
                .choose_multiple(&mut self.rng, count)
                .map(|v| v.1)
                .collect();
            chosen.sort_unstable();
            let items: Vec<(&str, i64)> = chosen.iter().map(|id| ("Version", *id)).collect();
            let by = ctx.coordinator(&mut self.rng);
            let name = if client { "Client Review" } else { "Dailies" };
            let created = (at - self.rng.gen_range(1..20) * HOUR).min(self.now - HOUR);
            let closed = at < self.now - 3 * DAY;
            let mut r = self.rec("Playlist");
            r.set(
                "code",
                format!("{name} {}", date(at).as_str().unwrap_or_default()),
            );
            r.set("description", format!("{name} for {}", ctx.project.name));
            r.set("project", link("Project", ctx.project.id))
                .links("versions", &items);
            r.set("sg_date_and_time", stamp(at.min(self.now - HOUR)));
            r.pick(
                &mut self.rng,
                "sg_status",
                if closed {
                    &[("clsd", 1)]
                } else {
                    &[("opn", 1)]
                },
            );
            r.set("locked", closed);
            let updated = self.between(created, at + DAY);
            r.audit(created, &by, updated, &by);
            self.add(r);
        }
    }
}
