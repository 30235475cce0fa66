//! Notes from supervisors, on a version and its entity or on the entity
//! alone, addressed to the artist, and the replies to them.

use rand::seq::SliceRandom;
use rand::Rng;

use super::builder::{link, Builder};
use super::studio::{NOTE_BODIES, REPLY_BODIES};
use super::world::{ProjectCtx, Target};
use super::{DAY, HOUR};

impl Builder<'_, '_> {
    /// A note from a supervisor, on a version (and its entity) or on the entity, with replies.
    pub(super) fn note(
        &mut self,
        ctx: &ProjectCtx,
        target: &Target,
        version: Option<(i64, i64)>,
        at: i64,
        artist: Option<i64>,
    ) {
        let now = self.now;
        let author = ctx.supervisor(&mut self.rng);
        let written = self.between(at + HOUR, at + 2 * DAY);
        let mut links: Vec<(&str, i64)> = Vec::new();
        if let Some((v, _)) = version {
            links.push(("Version", v));
        }
        links.push((target.t, target.id));
        let subject = match version {
            Some((_, n)) => format!("{} v{n:03} - dailies", target.code),
            None => format!("{} - notes", target.code),
        };
        let mut body = String::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(NOTE_BODIES.choose(&mut self.rng).unwrap_or(&"Looks good."));
        }
        let mut r = self.rec("Note");
        r.set("subject", subject)
            .set("content", body.as_str())
            .set("project", link("Project", ctx.project.id));
        r.links("note_links", &links).set("user", author.clone());
        if let Some(artist) = artist {
            r.links("addressings_to", &[("HumanUser", artist)]);
        }
        if self.rng.gen_bool(0.3) {
            if let Some(group) = ctx.world.supervisors_group {
                r.links("addressings_cc", &[("Group", group)]);
            }
        }
        r.pick(
            &mut self.rng,
            "sg_note_type",
            &[("Internal", 80), ("Client", 20)],
        );
        let open = written > now - 10 * DAY;
        r.pick(
            &mut self.rng,
            "sg_status_list",
            if open { &[("opn", 1)] } else { &[("clsd", 1)] },
        );
        let replies = *self.weighted(&[(0, 45), (1, 30), (2, 15), (3, 10)], |x| x.1);
        let updated = self.between(written, written + 3 * DAY);
        r.audit(written, &author, updated, &author);
        let Some(note) = self.add(r) else { return };
        let mut when = written;
        for i in 0..replies.0 {
            when = self.between(when + HOUR, when + DAY);
            let user = match (i % 2, artist) {
                (0, Some(a)) => link("HumanUser", a),
                _ => author.clone(),
            };
            let mut r = self.rec("Reply");
            r.set(
                "content",
                *REPLY_BODIES.choose(&mut self.rng).unwrap_or(&"Thanks!"),
            );
            r.set("entity", link("Note", note))
                .set("user", user.clone());
            r.audit(when, &user, when, &user);
            self.add(r);
        }
    }
}
