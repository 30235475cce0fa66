//! The cache's configuration: a folder with `config.yaml` and one
//! `entity-configs/<Type>.json` per cached type, laid out as the original
//! shotgunCache laid it out, so its folders keep working.
//!
//! ```yaml
//! shotgun:
//!   base_url: https://studio.shotgrid.autodesk.com
//!   script_name: shotgun-cache
//!   api_key: "..."                # or api_key_file: /path, or $SHOTGUN_CACHE_API_KEY
//! database: cache.sqlite          # a file in this folder, or postgresql://...
//! monitor:
//!   fetch_interval: 2             # seconds between event-log polls
//!   max_event_batch_size: 500
//!   missing_event_timeout: 300    # seconds a missing event id is waited for
//! scan_interval: 300              # seconds between reconcile scans
//! listen: 127.0.0.1:8091
//! log_level: info
//! serving:                        # the proxy's HTTP server
//!   header_timeout: 10            # seconds a request's head may take
//!   body_timeout: 60              # seconds a request's body may take (more for large ones)
//!   idle_timeout: 75              # seconds a kept-alive connection may wait for its next request
//!   max_connections: 1024         # connections open at once
//!   max_body_bytes: 52428800
//! ```
//!
//! The API key in use is `$SHOTGUN_CACHE_API_KEY` when set, else the first
//! line of `shotgun.api_key_file` (relative to the folder), else `shotgun.api_key`.
//! `setup` writes `config.yaml` readable by its owner only.
//!
//! Keys of the original this version does not use (`rethink`, `zmq_*`, ...) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use sg_protocol::Schema;

/// A configuration problem, with the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// An API key, kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

/// The environment variable that gives the API key, over the file's.
pub const API_KEY_ENV: &str = "SHOTGUN_CACHE_API_KEY";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteSection {
    pub base_url: String,
    pub script_name: String,
    /// Left out when the key comes from `api_key_file` or [`API_KEY_ENV`].
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub api_key: Secret,
    /// A file whose first line is the key (relative to the configuration folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorSection {
    pub fetch_interval: f64,
    pub max_event_batch_size: u64,
    pub missing_event_timeout: f64,
}

impl Default for MonitorSection {
    fn default() -> Self {
        MonitorSection {
            fetch_interval: 2.0,
            max_event_batch_size: 500,
            missing_event_timeout: 300.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportSection {
    /// Records per `read` page.
    pub batch_size: u64,
    /// Site calls in flight at once while importing.
    pub processes: usize,
}

impl Default for ImportSection {
    fn default() -> Self {
        ImportSection {
            batch_size: 500,
            processes: 4,
        }
    }
}

/// Who the proxy serves from the cache: one of these for each kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serve {
    /// Every cached record.
    Cached,
    /// Only records of the projects the user is a member of (`Project.users`).
    Projects,
    /// Nothing from the cache: every read goes to the site.
    Site,
}

/// The `access:` section: who gets cached data, and how long a verdict on a
/// caller's credentials holds.
///
/// ```yaml
/// access:
///   scripts: cached               # API scripts (without sudo_as_login)
///   allow_scripts: []             # when not empty: only these scripts read the cache
///   rule_sets:                    # by the user's permission rule set (its display name)
///     Admin: cached
///     Manager: cached
///     Artist: projects
///   other_rule_sets: site         # rule sets not listed, and callers the cache can't identify
///   credential_ttl: 600           # seconds an accepted verdict holds while the site is up
///   refused_ttl: 30               # seconds a refusal is remembered
///   offline_grace: 86400          # seconds accepted callers keep cached reads while the site is down (0: off)
///   max_callers: 10000            # verdicts kept (least recently used ones go first)
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSection {
    pub scripts: Serve,
    pub allow_scripts: Vec<String>,
    pub rule_sets: BTreeMap<String, Serve>,
    pub other_rule_sets: Serve,
    pub credential_ttl: f64,
    pub refused_ttl: f64,
    pub offline_grace: f64,
    pub max_callers: usize,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            scripts: Serve::Cached,
            allow_scripts: Vec::new(),
            rule_sets: BTreeMap::from([
                ("Admin".to_string(), Serve::Cached),
                ("Manager".to_string(), Serve::Cached),
                ("Artist".to_string(), Serve::Projects),
            ]),
            other_rule_sets: Serve::Site,
            credential_ttl: 600.0,
            refused_ttl: 30.0,
            offline_grace: 86_400.0,
            max_callers: 10_000,
        }
    }
}

/// The proxy's HTTP server (`serving:`); see `sg_server::ServeOptions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServingSection {
    /// Seconds a request's head may take, from the connection's opening (or
    /// from the first byte of a later request on a kept-alive connection).
    pub header_timeout: f64,
    /// Seconds a request's body may take from its head (large bodies earn more).
    pub body_timeout: f64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout: f64,
    /// Connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// Larger request bodies get a fault.
    pub max_body_bytes: usize,
    /// Seconds one cached read or summary may run before the site answers it.
    pub read_budget: f64,
    /// Records on one page at most (the site's `api_max_entities_per_page`).
    pub max_entities_per_page: u64,
    /// Conditions one filter may have for the cache to answer it (an `in`
    /// list counts as one).
    pub max_conditions: usize,
    /// Grouping levels one summary may have for the cache to answer it.
    pub max_groupings: usize,
    /// Groups one summary may produce for the cache to answer it.
    pub max_groups: usize,
}

impl Default for ServingSection {
    fn default() -> Self {
        ServingSection {
            header_timeout: 10.0,
            body_timeout: 60.0,
            idle_timeout: 75.0,
            max_connections: 1024,
            max_body_bytes: 50 * 1024 * 1024,
            read_budget: 2.0,
            max_entities_per_page: sg_protocol::read::API_MAX_ENTITIES_PER_PAGE,
            max_conditions: sg_engine::QueryLimits::DEFAULT_MAX_CONDITIONS,
            max_groupings: sg_engine::QueryLimits::DEFAULT_MAX_GROUPINGS,
            max_groups: sg_engine::QueryLimits::DEFAULT_MAX_GROUPS,
        }
    }
}

impl AccessSection {
    /// Checks what serde can't: scripts belong to no project, and times are
    /// not negative.
    pub fn check(&self) -> Result<(), String> {
        if self.scripts == Serve::Projects {
            return Err(
                "access.scripts can't be 'projects': scripts are members of no project \
                 (use cached or site; a script with sudo_as_login is served as the user)"
                    .into(),
            );
        }
        for (key, value) in [
            ("credential_ttl", self.credential_ttl),
            ("refused_ttl", self.refused_ttl),
            ("offline_grace", self.offline_grace),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "access.{key} must be a number of seconds, 0 or more"
                ));
            }
        }
        if self.max_callers == 0 {
            return Err("access.max_callers must be at least 1".into());
        }
        Ok(())
    }
}

impl ServingSection {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_timeout)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout)
    }

    pub fn read_budget(&self) -> Duration {
        Duration::from_secs_f64(self.read_budget)
    }

    fn check(&self) -> Result<(), String> {
        let seconds = |v: f64| v.is_finite() && v > 0.0 && v < 1e9;
        if !seconds(self.header_timeout)
            || !seconds(self.body_timeout)
            || !seconds(self.idle_timeout)
        {
            return Err(
                "serving.header_timeout, body_timeout and idle_timeout must be positive seconds"
                    .into(),
            );
        }
        if self.max_connections == 0 || self.max_body_bytes == 0 {
            return Err("serving.max_connections and max_body_bytes must be positive".into());
        }
        if !seconds(self.read_budget) {
            return Err("serving.read_budget must be positive seconds".into());
        }
        if self.max_entities_per_page == 0
            || self.max_conditions == 0
            || self.max_groupings == 0
            || self.max_groups == 0
        {
            return Err(
                "serving.max_entities_per_page, max_conditions, max_groupings and max_groups \
                 must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

fn default_database() -> String {
    "cache.sqlite".to_string()
}
fn default_scan_interval() -> f64 {
    300.0
}
fn default_listen() -> String {
    "127.0.0.1:8091".to_string()
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_entity_folder() -> String {
    "entity-configs".to_string()
}

/// The contents of `config.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    pub shotgun: SiteSection,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default)]
    pub monitor: MonitorSection,
    #[serde(default)]
    pub import: ImportSection,
    #[serde(default = "default_scan_interval")]
    pub scan_interval: f64,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    #[serde(default = "default_entity_folder")]
    pub entity_config_foldername: String,
    #[serde(default)]
    pub serving: ServingSection,
    #[serde(default)]
    pub access: AccessSection,
}

/// One cached type: the fields to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityConfig {
    pub entity_type: String,
    pub fields: BTreeSet<String>,
}

impl EntityConfig {
    /// A digest of what the config asks for (not of the file's bytes), so a
    /// whitespace edit or a reordering does not count as a change.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for field in &self.fields {
            hasher.update(field.as_bytes());
            hasher.update(b"\n");
        }
        format!("{:x}", hasher.finalize())
    }
}

/// Where the cache keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A whole configuration folder, read and checked.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// `config.yaml`, with `shotgun.api_key` the key in use (see [`KeySource`]).
    pub file: ConfigFile,
    pub entities: BTreeMap<String, EntityConfig>,
    /// Where the key in use came from.
    pub key_source: KeySource,
    /// Whether `config.yaml` itself holds a key.
    pub key_in_file: bool,
    /// Types whose entity config can't be used (unreadable, not JSON, a
    /// field the site lacks), each with why, naming the file and line. Such
    /// a type keeps its last good config in `entities` while there is one.
    pub broken: BTreeMap<String, String>,
}

/// Where the API key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// [`API_KEY_ENV`].
    Environment,
    /// `shotgun.api_key_file`, this file.
    KeyFile(PathBuf),
    /// `shotgun.api_key` in `config.yaml`.
    ConfigFile,
}

/// The key in use: `from_env` (the value of [`API_KEY_ENV`]) when given, else
/// the first line of `site.api_key_file` (relative to `dir`), else `site.api_key`.
pub fn resolve_api_key(
    site: &SiteSection,
    dir: &Path,
    from_env: Option<String>,
) -> Result<(Secret, KeySource), ConfigError> {
    if let Some(key) = from_env
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
    {
        return Ok((Secret(key), KeySource::Environment));
    }
    if let Some(file) = &site.api_key_file {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| file_error(&path, format!("can't read the API key file: {e}")))?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        if key.is_empty() {
            return Err(file_error(&path, "the API key file's first line is empty"));
        }
        return Ok((Secret(key), KeySource::KeyFile(path)));
    }
    if site.api_key.is_empty() {
        return Err(file_error(
            &dir.join("config.yaml"),
            format!("no API key: set ${API_KEY_ENV}, shotgun.api_key_file or shotgun.api_key"),
        ));
    }
    Ok((site.api_key.clone(), KeySource::ConfigFile))
}

/// Whether others than the file's owner may read it.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

impl CacheConfig {
    /// The folder to use: `--config`, else `$SHOTGUN_CACHE_CONFIG`, else `~/shotguncache`.
    pub fn locate(flag: Option<&Path>) -> PathBuf {
        if let Some(dir) = flag {
            return dir.to_path_buf();
        }
        if let Some(dir) = std::env::var_os("SHOTGUN_CACHE_CONFIG").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join("shotguncache")
    }

    /// Reads `config.yaml` and every entity config of a folder.
    pub fn load(dir: &Path) -> Result<CacheConfig, ConfigError> {
        let path = dir.join("config.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            file_error(
                &path,
                format!("can't read it ({e}); run `shotgun-cache setup` to create it"),
            )
        })?;
        let mut file: ConfigFile = serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {}: ", l.line()))
                .unwrap_or_default();
            file_error(&path, format!("{at}{e}"))
        })?;
        if file.shotgun.base_url.trim().is_empty() {
            return Err(file_error(&path, "shotgun.base_url is empty"));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(file.monitor.fetch_interval) || !positive(file.scan_interval) {
            return Err(file_error(
                &path,
                "monitor.fetch_interval and scan_interval must be positive",
            ));
        }
        file.serving.check().map_err(|m| file_error(&path, m))?;
        let key_in_file = !file.shotgun.api_key.is_empty();
        let (key, key_source) =
            resolve_api_key(&file.shotgun, dir, std::env::var(API_KEY_ENV).ok())?;
        file.shotgun.api_key = key;
        file.access.check().map_err(|e| file_error(&path, e))?;
        let (entities, broken) = load_entity_configs(&dir.join(&file.entity_config_foldername))?;
        Ok(CacheConfig {
            dir: dir.to_path_buf(),
            file,
            entities,
            key_source,
            key_in_file,
            broken,
        })
    }

    /// The files holding a key that others than their owner may read:
    /// `config.yaml` when it holds one, and the key file in use.
    pub fn exposed_key_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let config = self.dir.join("config.yaml");
        if self.key_in_file && readable_by_others(&config) {
            files.push(config);
        }
        if let KeySource::KeyFile(path) = &self.key_source {
            if readable_by_others(path) {
                files.push(path.clone());
            }
        }
        files
    }

    /// Re-reads only the entity configs (they may change while running). A
    /// type whose file is broken now keeps the config it had. Returns
    /// whether the configs or the broken ones changed.
    pub fn reload_entities(&mut self) -> Result<bool, ConfigError> {
        let (mut entities, broken) =
            load_entity_configs(&self.dir.join(&self.file.entity_config_foldername))?;
        for t in broken.keys() {
            if let Some(kept) = self.entities.get(t) {
                entities.insert(t.clone(), kept.clone());
            }
        }
        let changed = entities != self.entities || broken != self.broken;
        self.entities = entities;
        self.broken = broken;
        Ok(changed)
    }

    /// Moves the types whose config the site's schema refuses to `broken`,
    /// each keeping its config of `previous` if it had one.
    pub fn hold_unusable(&mut self, schema: &Schema, previous: &BTreeMap<String, EntityConfig>) {
        let folder = self.dir.join(&self.file.entity_config_foldername);
        let refused: Vec<(String, ConfigError)> = self
            .entities
            .iter()
            .filter(|(t, _)| !self.broken.contains_key(*t))
            .filter_map(|(t, c)| {
                check_type(&folder, t, c, schema)
                    .err()
                    .map(|e| (t.clone(), e))
            })
            .collect();
        for (t, e) in refused {
            self.entities.remove(&t);
            if let Some(kept) = previous.get(&t) {
                self.entities.insert(t.clone(), kept.clone());
            }
            self.broken.insert(t, e.to_string());
        }
    }

    pub fn database(&self) -> Database {
        let db = self.file.database.trim();
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Database::Postgres(db.to_string())
        } else {
            let path = db.strip_prefix("sqlite://").unwrap_or(db);
            let path = Path::new(path);
            Database::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                self.dir.join(path)
            })
        }
    }

    pub fn fetch_interval(&self) -> Duration {
        Duration::from_secs_f64(self.file.monitor.fetch_interval)
    }

    pub fn scan_interval(&self) -> Duration {
        Duration::from_secs_f64(self.file.scan_interval)
    }

    pub fn missing_event_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.file.monitor.missing_event_timeout.max(0.0))
    }

    /// Checks the entity configs against the site's schema: every type and
    /// field must exist. Nothing starts half-configured.
    pub fn check_against(&self, schema: &Schema) -> Result<(), ConfigError> {
        if self.entities.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{}: no entity configs; add <Type>.json files (or run `shotgun-cache setup`)",
                self.dir.join(&self.file.entity_config_foldername).display()
            )));
        }
        let folder = self.dir.join(&self.file.entity_config_foldername);
        for (name, config) in &self.entities {
            check_type(&folder, name, config, schema)?;
        }
        Ok(())
    }

    /// The engine's selection: types and fields to keep (`id` always).
    pub fn selection(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.entities
            .iter()
            .map(|(t, c)| {
                let mut fields = c.fields.clone();
                fields.insert("id".into());
                (t.clone(), fields)
            })
            .collect()
    }
}

/// Checks one type's config against the site's schema.
fn check_type(
    folder: &Path,
    name: &str,
    config: &EntityConfig,
    schema: &Schema,
) -> Result<(), ConfigError> {
    let path = folder.join(format!("{name}.json"));
    if name == "EventLogEntry" {
        return Err(file_error(
            &path,
            "EventLogEntry can't be cached: the cache follows it",
        ));
    }
    let entity = schema
        .entity(name)
        .ok_or_else(|| file_error(&path, format!("the site has no entity type {name}")))?;
    for field in &config.fields {
        if entity.field(field).is_none() {
            return Err(file_error(
                &path,
                format!("{name} has no field '{field}' on the site; remove it from \"fields\""),
            ));
        }
    }
    Ok(())
}

/// The usable entity configs of a folder, and per broken file its type and why.
type EntityConfigs = (BTreeMap<String, EntityConfig>, BTreeMap<String, String>);

fn load_entity_configs(folder: &Path) -> Result<EntityConfigs, ConfigError> {
    let mut out = BTreeMap::new();
    let mut broken = BTreeMap::new();
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, broken)),
        Err(e) => return Err(file_error(folder, format!("can't list it: {e}"))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(entity_type) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        match entity_config(&path) {
            Ok(fields) => {
                out.insert(
                    entity_type.clone(),
                    EntityConfig {
                        entity_type,
                        fields,
                    },
                );
            }
            // One broken file stops its own type, not the others.
            Err(e) => {
                broken.insert(entity_type, e.to_string());
            }
        }
    }
    Ok((out, broken))
}

/// The fields one entity config file asks for.
fn entity_config(path: &Path) -> Result<BTreeSet<String>, ConfigError> {
    let path = path.to_path_buf();
    {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| file_error(&path, format!("can't read it: {e}")))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| file_error(&path, format!("line {}: {e}", e.line())))?;
        let fields: BTreeSet<String> = match value.get("fields") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        file_error(&path, format!("\"fields\" must hold field names, got {v}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            _ => {
                return Err(file_error(
                    &path,
                    "needs a \"fields\" list (or map) of the fields to cache, e.g. {\"fields\": [\"code\"]}",
                ))
            }
        };
        if fields.is_empty() {
            return Err(file_error(&path, "\"fields\" is empty"));
        }
        Ok(fields)
    }
}

/// The fields of a type worth caching, as `setup` chooses them: all but
/// what a site computes (summaries, pivot columns), images, and a few
/// per-user or UI-only fields.
pub fn cacheable_fields(schema: &Schema, entity_type: &str) -> BTreeSet<String> {
    const SKIP: &[&str] = &[
        "cached_display_name",
        "pinned",
        "billboard",
        "sg_uploaded_movie",
        "image",
        "filmstrip_image",
    ];
    schema
        .entity(entity_type)
        .map(|e| {
            e.fields
                .values()
                .filter(|f| {
                    !matches!(
                        f.data_type,
                        sg_protocol::DataType::Summary
                            | sg_protocol::DataType::PivotColumn
                            | sg_protocol::DataType::Image
                    )
                })
                .filter(|f| !SKIP.contains(&f.name.as_str()))
                .map(|f| f.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a configuration folder (used by `setup`); `config.yaml` is created
/// readable by its owner only (it may hold the key).
pub fn write_config(
    dir: &Path,
    file: &ConfigFile,
    entities: &BTreeMap<String, BTreeSet<String>>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(&file.entity_config_foldername))?;
    let yaml = serde_yaml::to_string(file).map_err(std::io::Error::other)?;
    write_private(&dir.join("config.yaml"), yaml.as_bytes())?;
    for (entity_type, fields) in entities {
        let body = serde_json::json!({ "fields": fields });
        let text = serde_json::to_string_pretty(&body).map_err(std::io::Error::other)?;
        std::fs::write(
            dir.join(&file.entity_config_foldername)
                .join(format!("{entity_type}.json")),
            text + "\n",
        )?;
    }
    Ok(())
}

/// Replaces `path` with `contents` through a file created readable by its
/// owner only and renamed into place: the contents are never readable by
/// others, not even for a moment, whatever the umask and the old file's mode.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_the_original_layout_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.yaml", "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key: k\nrethink:\n  host: localhost\n");
        write(
            dir.path(),
            "entity-configs/Shot.json",
            r#"{"fields": {"code": {}, "assets": {"mapping": {}}}}"#,
        );
        write(
            dir.path(),
            "entity-configs/Asset.json",
            r#"{"fields": ["code"]}"#,
        );
        let config = CacheConfig::load(dir.path()).unwrap();
        assert_eq!(config.fetch_interval(), Duration::from_secs(2));
        assert_eq!(
            config.database(),
            Database::Sqlite(dir.path().join("cache.sqlite"))
        );
        assert_eq!(
            config.entities["Shot"].fields,
            BTreeSet::from(["assets".to_string(), "code".to_string()])
        );
        assert_eq!(config.entities.len(), 2);
        assert!(
            !format!("{config:?}").contains("api_key: \"k\""),
            "the key is not in debug output"
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "config.yaml",
            "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key: [unclosed\n",
        );
        let err = CacheConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.yaml") && err.contains("line"), "{err}");

        write(
            dir.path(),
            "config.yaml",
            "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key: k\n",
        );
        write(
            dir.path(),
            "entity-configs/Shot.json",
            "{\"fields\": [\"code\",]}",
        );
        write(
            dir.path(),
            "entity-configs/Asset.json",
            r#"{"fields": ["code"]}"#,
        );
        // A broken entity config stops its type alone.
        let config = CacheConfig::load(dir.path()).unwrap();
        let err = &config.broken["Shot"];
        assert!(err.contains("Shot.json") && err.contains("line 1"), "{err}");
        assert!(config.entities.contains_key("Asset") && !config.entities.contains_key("Shot"));

        write(dir.path(), "entity-configs/Shot.json", "{\"columns\": []}");
        let err = &CacheConfig::load(dir.path()).unwrap().broken["Shot"];
        assert!(err.contains("\"fields\""), "{err}");
    }

    #[test]
    fn unknown_types_and_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "config.yaml",
            "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key: k\n",
        );
        write(
            dir.path(),
            "entity-configs/Shot.json",
            r#"{"fields": ["code", "nope"]}"#,
        );
        let config = CacheConfig::load(dir.path()).unwrap();
        let f = serde_json::json!({"data_type": {"value": "text", "editable": false}});
        let schema =
            Schema::from_json(&serde_json::json!({"Shot": {"id": f, "code": f}}), None).unwrap();
        let err = config.check_against(&schema).unwrap_err().to_string();
        assert!(err.contains("Shot.json") && err.contains("nope"), "{err}");
    }

    #[test]
    fn digests_ignore_formatting_but_not_content() {
        let a = EntityConfig {
            entity_type: "Shot".into(),
            fields: BTreeSet::from(["code".into(), "id".into()]),
        };
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.fields.insert("sg_status_list".into());
        assert_ne!(a.digest(), b.digest());
    }

    fn site(api_key: &str, api_key_file: Option<&str>) -> SiteSection {
        SiteSection {
            base_url: "https://x".into(),
            script_name: "s".into(),
            api_key: Secret(api_key.into()),
            api_key_file: api_key_file.map(PathBuf::from),
        }
    }

    #[test]
    fn the_key_comes_from_the_environment_then_the_key_file_then_the_config() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "secrets/key", "from-file\nignored\n");
        let with_file = site("from-config", Some("secrets/key"));
        let (key, source) =
            resolve_api_key(&with_file, dir.path(), Some("from-env".into())).unwrap();
        assert_eq!((key.expose(), source), ("from-env", KeySource::Environment));
        let (key, source) = resolve_api_key(&with_file, dir.path(), None).unwrap();
        assert_eq!(
            (key.expose(), source),
            (
                "from-file",
                KeySource::KeyFile(dir.path().join("secrets/key"))
            )
        );
        // An empty variable is no key.
        let plain = site("from-config", None);
        let (key, source) = resolve_api_key(&plain, dir.path(), Some(" ".into())).unwrap();
        assert_eq!(
            (key.expose(), source),
            ("from-config", KeySource::ConfigFile)
        );

        let err = resolve_api_key(&site("", None), dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(API_KEY_ENV) && err.contains("api_key_file"),
            "{err}"
        );
        let err = resolve_api_key(&site("", Some("nowhere")), dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nowhere"), "{err}");
    }

    #[test]
    fn a_config_without_a_key_loads_with_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "key", "k-from-file\n");
        write(
            dir.path(),
            "config.yaml",
            "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key_file: key\n",
        );
        let config = CacheConfig::load(dir.path()).unwrap();
        assert!(!config.key_in_file);
        if std::env::var_os(API_KEY_ENV).is_none() {
            assert_eq!(config.file.shotgun.api_key.expose(), "k-from-file");
        }
        assert!(!format!("{config:?}").contains("k-from-file"));
    }

    #[test]
    fn serving_keys_default_each_on_their_own_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let base = "shotgun:\n  base_url: https://x\n  script_name: s\n  api_key: k\n";
        write(dir.path(), "config.yaml", base);
        let serving = CacheConfig::load(dir.path()).unwrap().file.serving;
        assert_eq!(serving.header_timeout(), Duration::from_secs(10));
        assert_eq!(serving.body_timeout(), Duration::from_secs(60));
        assert_eq!(serving.idle_timeout(), Duration::from_secs(75));
        assert_eq!(serving.max_connections, 1024);
        assert_eq!(serving.max_body_bytes, 50 * 1024 * 1024);

        write(
            dir.path(),
            "config.yaml",
            &format!("{base}serving:\n  header_timeout: 2.5\n  max_connections: 64\n"),
        );
        let serving = CacheConfig::load(dir.path()).unwrap().file.serving;
        assert_eq!(serving.header_timeout(), Duration::from_millis(2500));
        assert_eq!(serving.max_connections, 64);
        assert_eq!(serving.idle_timeout(), Duration::from_secs(75));

        write(
            dir.path(),
            "config.yaml",
            &format!("{base}serving:\n  idle_timeout: 0\n"),
        );
        let err = CacheConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("idle_timeout"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn config_yaml_is_written_private_and_an_exposed_one_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        // An older, readable file is replaced, not kept with its mode.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = ConfigFile {
            shotgun: site("k", None),
            database: default_database(),
            monitor: MonitorSection::default(),
            import: ImportSection::default(),
            scan_interval: 300.0,
            listen: default_listen(),
            log_level: default_log_level(),
            entity_config_foldername: default_entity_folder(),
            serving: ServingSection::default(),
            access: AccessSection::default(),
        };
        write_config(dir.path(), &file, &BTreeMap::new()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());

        let config = CacheConfig::load(dir.path()).unwrap();
        assert!(config.exposed_key_files().is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(config.exposed_key_files(), vec![path.clone()]);
    }
}
