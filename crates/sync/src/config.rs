//! The cache's configuration: a folder with `config.yaml` and one
//! `entity-configs/<Type>.json` per cached type, laid out as the original
//! shotgunCache laid it out, so its folders keep working.
//!
//! ```yaml
//! shotgun:
//!   base_url: https://studio.shotgrid.autodesk.com
//!   script_name: shotgun-cache
//!   api_key: "..."
//! database: cache.sqlite          # a file in this folder, or postgresql://...
//! monitor:
//!   fetch_interval: 2             # seconds between event-log polls
//!   max_event_batch_size: 500
//!   missing_event_timeout: 300    # seconds a missing event id is waited for
//! scan_interval: 300              # seconds between reconcile scans
//! listen: 127.0.0.1:8091
//! log_level: info
//! ```
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteSection {
    pub base_url: String,
    pub script_name: String,
    pub api_key: Secret,
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
    pub file: ConfigFile,
    pub entities: BTreeMap<String, EntityConfig>,
    /// Types whose entity config can't be used (unreadable, not JSON, a
    /// field the site lacks), each with why, naming the file and line. Such
    /// a type keeps its last good config in `entities` while there is one.
    pub broken: BTreeMap<String, String>,
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
        let file: ConfigFile = serde_yaml::from_str(&text).map_err(|e| {
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
        let (entities, broken) = load_entity_configs(&dir.join(&file.entity_config_foldername))?;
        Ok(CacheConfig {
            dir: dir.to_path_buf(),
            file,
            entities,
            broken,
        })
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

/// Writes a configuration folder (used by `setup`).
pub fn write_config(
    dir: &Path,
    file: &ConfigFile,
    entities: &BTreeMap<String, BTreeSet<String>>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(&file.entity_config_foldername))?;
    let yaml = serde_yaml::to_string(file).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("config.yaml"), yaml)?;
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
}
