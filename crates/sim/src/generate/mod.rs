//! Fills an empty site with a realistic, seeded production: people and
//! groups, pipeline steps, tags, projects with episodes, sequences, shots and
//! assets, their tasks, versions, published files, notes, replies, playlists
//! and time logs.
//!
//! The same size, seed and clock give the same records. Both sides of every
//! link the site keeps in step (see [`crate::inverse`]) are stored, and every
//! value passes the site's own validation: statuses and list values come
//! from the field's valid values, links point at records that exist and that
//! the field accepts. A field the engine's schema lacks is skipped, and so
//! is a type, so the generator also fills the real site schema.
//!
//! Records are written through [`Engine::upsert_records`], one transaction
//! per chunk of 5,000, one project at a time: one thread builds a project's
//! records while the caller's thread writes the previous project's, so only
//! a few projects are ever in memory.
//!
//! By stage: `studio` holds the studio's names and words, `shape` checks
//! values against the schema, `builder` makes records and `world` is what
//! a project's records refer to; `people` makes people, accounts, groups and
//! the pipeline, `projects` the projects, `production` a project's assets
//! and project tasks, `shots` its episodes, sequences and shots, `tasks`
//! the tasks and time logs, `versions` versions, published files and
//! playlists, and `notes` notes and replies; `mirror` stores the other
//! side of links, `batch` holds records and their ids, and `writer`
//! writes them.

mod batch;
mod builder;
mod mirror;
mod notes;
mod people;
mod production;
mod projects;
mod shape;
mod shots;
mod studio;
mod tasks;
mod versions;
mod world;
mod writer;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use sg_engine::{Engine, EngineError, SqliteStore};

use batch::{Batch, Ids};
use builder::Builder;
use mirror::Mirrors;
use shape::Shape;
use world::World;
use writer::Writer;

/// How big a production to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// About 5,000 records.
    Small,
    /// About 100,000 records.
    Medium,
    /// About 1,000,000 records.
    Large,
}

impl Size {
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Large];

    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }

    fn scale(self) -> Scale {
        match self {
            Size::Small => Scale {
                projects: 2,
                users: 40,
                shots: 72,
                assets: 26,
            },
            Size::Medium => Scale {
                projects: 6,
                users: 300,
                shots: 1_400,
                assets: 500,
            },
            Size::Large => Scale {
                projects: 24,
                users: 2_000,
                shots: 14_000,
                assets: 5_000,
            },
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            other => Err(format!(
                "unknown size '{other}': expected small, medium or large"
            )),
        }
    }
}

/// The counts a size starts from; the rest follows from the production.
struct Scale {
    projects: usize,
    users: usize,
    shots: usize,
    assets: usize,
}

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// Fills the site with a production of `size`, seeded by `seed`, dated
/// within the year before today (UTC). Returns how many records it wrote;
/// calls `progress(type, written so far)` after each chunk.
pub fn generate(
    engine: &Engine<SqliteStore>,
    size: Size,
    seed: u64,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<usize, EngineError> {
    let now = chrono::Utc::now().timestamp();
    generate_at(engine, size, seed, now - now.rem_euclid(DAY), progress)
}

/// [`generate`] with an explicit clock (seconds since the epoch): every
/// date-time is before `now`, within the year before it.
pub fn generate_at(
    engine: &Engine<SqliteStore>,
    size: Size,
    seed: u64,
    now: i64,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<usize, EngineError> {
    let shape = Shape::new(engine.catalog());
    let mirrors = Mirrors::new(&shape.cat);
    let mut ids = Ids::start(engine, &shape)?;
    let mut writer = Writer::new(engine, progress);
    let mut rng = StdRng::seed_from_u64(seed);
    let scale = size.scale();

    let mut world = World::default();
    let mut globals = Builder::new(&shape, &mut ids, StdRng::seed_from_u64(rng.gen()), now);
    globals.people(&mut world, &scale);
    globals.pipeline(&mut world);
    globals.projects(&mut world, &scale);
    let mut globals = globals.batch;
    mirrors.apply(&mut globals, None, &mut BTreeSet::new());
    writer.write(&globals, GLOBAL_ORDER)?;

    // One thread builds each project's records while this one writes the
    // previous project's; a third frees them. Links from a project's records
    // back to global ones (Project.tasks) are written once every project is done.
    let seeds: Vec<u64> = world.projects.iter().map(|_| rng.gen()).collect();
    let (built_tx, built_rx) = std::sync::mpsc::sync_channel::<Batch>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let shape = &shape;
        let mirrors = &mirrors;
        let world = &world;
        let builder = scope.spawn(move || {
            let mut late = BTreeSet::new();
            for (index, seed) in seeds.into_iter().enumerate() {
                let mut b = Builder::new(shape, &mut ids, StdRng::seed_from_u64(seed), now);
                b.production(world, index, &scale);
                let mut batch = b.batch;
                mirrors.apply(&mut batch, Some(&mut globals), &mut late);
                if built_tx.send(batch).is_err() {
                    break;
                }
            }
            (globals, late)
        });
        scope.spawn(move || done_rx.into_iter().for_each(drop));
        let mut result = Ok(());
        for batch in built_rx {
            result = writer.write(&batch, PROJECT_ORDER);
            let _ = done_tx.send(batch);
            if result.is_err() {
                break;
            }
        }
        drop(done_tx);
        let (globals, late) = builder
            .join()
            .map_err(|_| EngineError::Store("the generator panicked".into()))?;
        result?;
        writer.patch(&globals, &late)
    })?;
    Ok(writer.total())
}

/// The types made once for the whole site, in the order they are written.
const GLOBAL_ORDER: &[&str] = &[
    "ApiUser",
    "HumanUser",
    "Group",
    "Step",
    "PublishedFileType",
    "Tag",
    "Project",
];
/// The types made for each project, in the order they are written.
const PROJECT_ORDER: &[&str] = &[
    "Episode",
    "Sequence",
    "Shot",
    "Asset",
    "Task",
    "Version",
    "PublishedFile",
    "Note",
    "Reply",
    "Playlist",
    "TimeLog",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        for size in Size::ALL {
            assert_eq!(size.name().parse::<Size>(), Ok(size));
            assert_eq!(size.to_string(), size.name());
        }
        assert_eq!(" Large ".parse::<Size>(), Ok(Size::Large));
        assert!("huge".parse::<Size>().is_err());
    }
}
