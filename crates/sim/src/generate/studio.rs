//! The studio's data: departments, pipeline steps, file and asset kinds,
//! and the names and words that fill records. Pure tables, no logic.

/// Departments; everyone works in one.
pub(super) const DEPTS: [&str; 10] = [
    "Layout",
    "Animation",
    "FX",
    "Lighting",
    "Compositing",
    "Art",
    "Modeling",
    "Rigging",
    "Surfacing",
    "Production",
];
/// How many people each department has, relatively.
pub(super) const DEPT_WEIGHTS: [u32; 10] = [7, 18, 8, 12, 16, 5, 9, 5, 7, 8];
/// The production department (coordinators), an index into [`DEPTS`].
pub(super) const PRODUCTION: usize = 9;

/// A pipeline step: one kind of work, its department and what it publishes.
pub(super) struct StepDef {
    pub(super) code: &'static str,
    pub(super) short: &'static str,
    pub(super) dir: &'static str,
    pub(super) entity_type: &'static str,
    pub(super) color: &'static str,
    pub(super) dept: usize,
    pub(super) files: &'static [&'static str],
    /// Working days: low, high.
    pub(super) days: (i64, i64),
}

/// A row of [`STEPS`].
#[allow(clippy::too_many_arguments)]
const fn step(
    code: &'static str,
    short: &'static str,
    dir: &'static str,
    entity_type: &'static str,
    color: &'static str,
    dept: usize,
    files: &'static [&'static str],
    days: (i64, i64),
) -> StepDef {
    StepDef {
        code,
        short,
        dir,
        entity_type,
        color,
        dept,
        files,
        days,
    }
}

/// The pipeline in order, a step a row: code, short name, folder, the type
/// it works on, colour, department, the file kinds it publishes, and its
/// working days (low, high).
#[rustfmt::skip]
pub(super) const STEPS: &[StepDef] = &[
    step("Previs",     "PVS",  "previs",     "Sequence", "128,128,255", 0,          &["Maya Scene", "Movie"],           (5, 15)),
    step("Layout",     "LAY",  "layout",     "Shot",     "0,128,255",   0,          &["Maya Scene", "Camera"],          (2, 6)),
    step("Animation",  "ANM",  "anim",       "Shot",     "255,128,0",   1,          &["Maya Scene", "Alembic Cache"],   (4, 15)),
    step("FX",         "FX",   "fx",         "Shot",     "255,64,64",   2,          &["Houdini Scene", "VDB Cache"],    (4, 12)),
    step("Lighting",   "LGT",  "light",      "Shot",     "255,220,0",   3,          &["USD Layer", "Rendered Image"],   (3, 10)),
    step("Roto",       "ROTO", "roto",       "Shot",     "128,0,128",   4,          &["Nuke Script"],                   (1, 5)),
    step("Comp",       "CMP",  "comp",       "Shot",     "0,200,0",     4,          &["Nuke Script", "Rendered Image"], (3, 10)),
    step("Art",        "ART",  "art",        "Asset",    "200,100,200", 5,          &["Photoshop Image"],               (3, 10)),
    step("Model",      "MOD",  "model",      "Asset",    "100,180,255", 6,          &["Maya Scene", "Alembic Cache"],   (4, 15)),
    step("Rig",        "RIG",  "rig",        "Asset",    "255,150,150", 7,          &["Maya Scene"],                    (4, 12)),
    step("Surface",    "SRF",  "surface",    "Asset",    "150,255,150", 8,          &["Texture", "USD Layer"],          (3, 12)),
    step("Production", "PRD",  "production", "Project",  "160,160,160", PRODUCTION, &[],                                (10, 60)),
];
/// The previs step, an index into [`STEPS`].
pub(super) const PREVIS: usize = 0;
/// The production step (project-level tasks), an index into [`STEPS`].
pub(super) const PRODUCTION_STEP: usize = 11;
/// Shot steps in pipeline order, with how often a shot has each.
pub(super) const SHOT_STEPS: &[(usize, f64)] = &[
    (1, 0.95),
    (2, 0.8),
    (3, 0.3),
    (4, 0.95),
    (5, 0.25),
    (6, 1.0),
];

/// The names that tag_list fields hold (each a Tag record where the
/// schema has the type).
pub(super) const TAG_NAMES: &[&str] = &[
    "hero",
    "crowd",
    "fx heavy",
    "client favourite",
    "reshoot",
    "stereo",
    "night",
    "rain",
];

/// File types: code, short name, extension, whether it is an image sequence.
pub(super) const FILE_TYPES: &[(&str, &str, &str, bool)] = &[
    ("Maya Scene", "maya", "ma", false),
    ("Houdini Scene", "hip", "hip", false),
    ("Nuke Script", "nuke", "nk", false),
    ("Alembic Cache", "abc", "abc", false),
    ("Camera", "cam", "abc", false),
    ("VDB Cache", "vdb", "vdb", true),
    ("USD Layer", "usd", "usd", false),
    ("Rendered Image", "render", "exr", true),
    ("Texture", "tex", "tx", false),
    ("Photoshop Image", "psd", "psd", false),
    ("Movie", "mov", "mov", false),
];

/// Asset types: the list value, the code prefix, how common, names, steps with their odds.
pub(super) struct AssetKind {
    pub(super) kind: &'static str,
    pub(super) prefix: &'static str,
    pub(super) weight: u32,
    pub(super) names: &'static [&'static str],
    pub(super) steps: &'static [(usize, f64)],
}

pub(super) const ASSET_KINDS: &[AssetKind] = &[
    AssetKind {
        kind: "Character",
        prefix: "chr",
        weight: 25,
        names: &[
            "hero", "villain", "mentor", "sidekick", "guard", "king", "queen", "knight", "goblin",
            "dragon", "wolf", "fox", "owl", "crow", "merchant", "child", "soldier", "pirate",
            "robot", "ghost", "witch", "wizard", "troll", "giant", "farmer", "captain", "sailor",
            "thief", "monk", "hunter",
        ],
        steps: &[(7, 0.7), (8, 1.0), (9, 1.0), (10, 1.0)],
    },
    AssetKind {
        kind: "Prop",
        prefix: "prp",
        weight: 40,
        names: &[
            "sword", "shield", "lantern", "book", "chair", "table", "barrel", "crate", "cart",
            "rope", "key", "map", "compass", "lamp", "bottle", "cup", "bow", "arrow", "spear",
            "helmet", "torch", "satchel", "coin", "ring", "bell", "clock", "door", "window",
            "fence", "sign",
        ],
        steps: &[(7, 0.2), (8, 1.0), (9, 0.15), (10, 0.9)],
    },
    AssetKind {
        kind: "Environment",
        prefix: "env",
        weight: 15,
        names: &[
            "castle",
            "forest",
            "village",
            "harbor",
            "cave",
            "desert",
            "city",
            "street",
            "tavern",
            "throneRoom",
            "beach",
            "mountain",
            "bridge",
            "market",
            "lighthouse",
            "canyon",
            "swamp",
            "palace",
            "temple",
            "shipDeck",
        ],
        steps: &[(7, 0.8), (8, 1.0), (10, 1.0)],
    },
    AssetKind {
        kind: "Vehicle",
        prefix: "veh",
        weight: 10,
        names: &[
            "wagon", "ship", "boat", "car", "truck", "airship", "train", "bike", "carriage", "sled",
        ],
        steps: &[(7, 0.4), (8, 1.0), (9, 0.8), (10, 1.0)],
    },
    AssetKind {
        kind: "FX",
        prefix: "fx",
        weight: 5,
        names: &[
            "smoke",
            "fire",
            "dust",
            "water",
            "rain",
            "snow",
            "magic",
            "explosion",
            "sparks",
            "fog",
        ],
        steps: &[(3, 1.0)],
    },
    AssetKind {
        kind: "Matte Painting",
        prefix: "mp",
        weight: 5,
        names: &["skyline", "sky", "mountains", "horizon", "clouds", "valley"],
        steps: &[(7, 1.0)],
    },
];

/// Project names, in order of making.
pub(super) const PROJECT_NAMES: &[&str] = &[
    "Nightfall",
    "Paper Moon",
    "Iron Harbor",
    "Glass Garden",
    "Silent Reef",
    "Ember Road",
    "Northern Lights",
    "The Lantern Keeper",
    "Copper Sky",
    "Blue Meridian",
    "Hollow Crown",
    "Salt and Stone",
    "Wild Orchard",
    "Last Light",
    "Tin Soldiers",
    "Velvet Storm",
    "Red Canyon",
    "Starling",
    "Deep Current",
    "The Clockmaker",
    "Ashfall",
    "Quiet Giants",
    "Moth and Flame",
    "Winter Tide",
];
/// People's names.
pub(super) const FIRST_NAMES: &[&str] = &[
    "Ada", "Alex", "Amara", "Ana", "Ben", "Bruno", "Carla", "Chen", "Chloe", "Dan", "Daria",
    "David", "Elena", "Emil", "Eva", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
    "Jade", "James", "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Luca", "Maya",
    "Marco", "Mei", "Mila", "Nadia", "Nick", "Noor", "Olga", "Omar", "Paul", "Priya", "Quinn",
    "Rafael", "Rosa", "Ryan", "Sara", "Sean", "Sofia", "Tariq", "Tess", "Theo", "Uma", "Victor",
    "Wei", "Yara", "Yusuf", "Zoe", "Zain",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Abbott", "Alvarez", "Bauer", "Becker", "Brennan", "Castillo", "Chen", "Costa", "Dubois",
    "Duarte", "Evans", "Fischer", "Garcia", "Gupta", "Haddad", "Hansen", "Ito", "Jensen", "Kaur",
    "Kim", "Klein", "Kowalski", "Larsen", "Lopez", "Martin", "Meyer", "Moreau", "Murphy",
    "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn", "Rossi", "Santos",
    "Schmidt", "Silva", "Singh", "Sato", "Tanaka", "Thompson", "Ueda", "Vargas", "Weber", "Wong",
    "Young", "Zhang", "Ziegler",
];
/// Words for shot and sequence descriptions.
pub(super) const FRAMINGS: &[&str] = &[
    "Wide shot",
    "Close-up",
    "Medium shot",
    "Over-the-shoulder",
    "Tracking shot",
    "Aerial",
    "Insert",
    "Low angle",
    "Two-shot",
    "Extreme close-up",
];
pub(super) const SUBJECTS: &[&str] = &[
    "the hero",
    "the crowd",
    "the ship",
    "the villain",
    "the gate",
    "the twins",
    "the captain",
    "the creature",
    "the convoy",
    "the old man",
];
pub(super) const ACTIONS: &[&str] = &[
    "enters frame left",
    "turns to camera",
    "runs toward the gate",
    "looks up at the sky",
    "draws a sword",
    "falls back",
    "crosses the bridge",
    "lands hard",
    "disappears into fog",
    "reacts to the blast",
];
/// What a version's description says.
pub(super) const VERSION_NOTES: &[&str] = &[
    "WIP",
    "First pass",
    "Addressed notes from dailies",
    "Updated timing per notes",
    "Tech check fixes",
    "Final for review",
    "Blocking pass",
    "Polish pass",
    "New camera from layout",
    "Client notes addressed",
];
/// What supervisors' notes say.
pub(super) const NOTE_BODIES: &[&str] = &[
    "Timing feels a little slow in the middle; tighten by about 6 frames.",
    "Lighting on the face is too flat, add a rim from screen left.",
    "Great progress, approved for the next step.",
    "Edges are chattering around the hair, please check the roto.",
    "Can we push the contrast in the background?",
    "The contact shadow is missing where the feet land.",
    "Motion blur looks too strong on the fast move.",
    "Please match the grade of the previous shot.",
    "Camera shake is distracting, reduce by half.",
    "Texture reads too clean, add some wear on the edges.",
    "The silhouette is unclear in the first pose.",
    "Smoke needs more detail in the leading edge.",
    "Looks good to me, send it to the client.",
    "Scale feels off against the set, check with layout.",
];
/// What replies to notes say.
pub(super) const REPLY_BODIES: &[&str] = &[
    "Will do, a new version is coming today.",
    "Addressed in the next version.",
    "Thanks!",
    "Can you clarify which frames?",
    "Fixed, please have another look.",
    "Agreed, I will talk to layout.",
    "On it.",
];
