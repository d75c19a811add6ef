//! Headwater settings, resolved in layers: defaults, then the active profile
//! (`profiles.toml` in the Headwater home), then `HEADWATER_*` environment
//! variables, then command-line flags. Every setting is validated once, and
//! errors name the setting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting '{0}'; known settings: {known}", known = KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))]
    UnknownSetting(String),
    #[error("invalid value for {setting}: {reason}")]
    InvalidValue { setting: String, reason: String },
    #[error("profile '{0}' does not exist (see `headwater profile ls`)")]
    UnknownProfile(String),
    #[error("profile '{0}' already exists")]
    ProfileExists(String),
    #[error("cannot delete the active profile '{0}'; switch with `headwater profile use` first")]
    ActiveProfile(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid profiles file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot find a home folder: set HEADWATER_HOME")]
    NoHome,
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A setting Headwater knows, with what it is for.
pub struct SettingInfo {
    pub name: &'static str,
    pub help: &'static str,
    /// Settings that can live in a profile (HEADWATER_HOME cannot: the
    /// profiles file lives inside it).
    pub in_profile: bool,
}

pub const KNOWN: &[SettingInfo] = &[
    SettingInfo {
        name: "HEADWATER_HOME",
        help: "folder for the embedded database, results and profiles (default ~/.headwater)",
        in_profile: false,
    },
    SettingInfo {
        name: "HEADWATER_API_URL",
        help: "URL of a Headwater server; unset means embedded mode",
        in_profile: true,
    },
    SettingInfo { name: "HEADWATER_API_KEY", help: "API key sent to the server", in_profile: true },
    SettingInfo {
        name: "HEADWATER_DATABASE_URL",
        help: "database for the embedded store (default sqlite in the home)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RESULT_STORAGE",
        help: "folder where persisted task results are kept (default HOME/storage)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_LOGGING_LEVEL",
        help: "lowest level recorded as run logs and printed: DEBUG, INFO, WARNING, ERROR",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_LOGGING_CONSOLE",
        help: "print run logs to the console: true or false",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_HEARTBEAT_SECONDS",
        help: "how often a flow process reports its live runs (default 10)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_LATE_AFTER_SECONDS",
        help: "a scheduled run not started this long after it was due is Late (default 15)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_SECRET_KEY",
        help: "64 hex digits sealing blocks' secrets (default: a key file created in the home, mode 0600)",
        in_profile: false,
    },
    SettingInfo {
        name: "HEADWATER_HEARTBEAT_TIMEOUT_SECONDS",
        help: "a live run silent this long is marked CRASHED (default 60)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RETAIN_RUNS",
        help: "the server deletes finished flow runs (with their task runs, states, logs) older than this, e.g. 30d (default: kept)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RETAIN_LOGS",
        help: "the server deletes log lines older than this, e.g. 7d (default: kept)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RETAIN_ARTIFACTS",
        help: "the server deletes artifacts older than this, but each key's latest (default: kept)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RETAIN_DELIVERIES",
        help: "the server deletes finished notification deliveries older than this (default: kept)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_RETAIN_AUDIT",
        help: "the server deletes audit log entries older than this, e.g. 365d (default: kept)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_PREFECT_HEARTBEAT_SECONDS",
        help: "how often Prefect clients beat for their flow runs: PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default 180)",
        in_profile: true,
    },
    SettingInfo {
        name: "HEADWATER_UI_URL",
        help: "the web UI's address as people reach it, for links in notifications (default: the server's)",
        in_profile: true,
    },
];

fn info(name: &str) -> Result<&'static SettingInfo> {
    KNOWN.iter().find(|k| k.name == name).ok_or_else(|| ConfigError::UnknownSetting(name.to_string()))
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    Profile,
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::Profile => "profile",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// The profiles file: named sets of settings and which one is active.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profiles {
    pub active: String,
    #[serde(default)]
    pub profiles: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Profiles {
    fn default() -> Self {
        let mut profiles = BTreeMap::new();
        profiles.insert("default".to_string(), BTreeMap::new());
        Profiles { active: "default".into(), profiles }
    }
}

impl Profiles {
    pub fn path(home: &Path) -> PathBuf {
        home.join("profiles.toml")
    }

    pub fn load(home: &Path) -> Result<Profiles> {
        let path = Profiles::path(home);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profiles::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Writes atomically (temporary file and rename), so a crash never
    /// leaves a truncated profiles file.
    pub fn save(&self, home: &Path) -> Result<()> {
        let path = Profiles::path(home);
        let write = |p: &Path, bytes: &[u8]| std::fs::create_dir_all(home).and_then(|_| std::fs::write(p, bytes));
        let text = toml::to_string_pretty(self).expect("profiles serialize");
        let tmp = path.with_extension("toml.tmp");
        write(&tmp, text.as_bytes()).map_err(|source| ConfigError::Write { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| ConfigError::Write { path, source })
    }

    pub fn active_settings(&self) -> Result<&BTreeMap<String, String>> {
        self.profiles.get(&self.active).ok_or_else(|| ConfigError::UnknownProfile(self.active.clone()))
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let info = info(key)?;
        if !info.in_profile {
            return Err(ConfigError::InvalidValue {
                setting: key.into(),
                reason: "it cannot be stored in a profile; set it in the environment".into(),
            });
        }
        validate(key, value)?;
        let active = self.active.clone();
        self.profiles
            .get_mut(&active)
            .ok_or(ConfigError::UnknownProfile(active))?
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    pub fn unset(&mut self, key: &str) -> Result<bool> {
        info(key)?;
        let active = self.active.clone();
        Ok(self.profiles.get_mut(&active).ok_or(ConfigError::UnknownProfile(active))?.remove(key).is_some())
    }

    pub fn create(&mut self, name: &str) -> Result<()> {
        if self.profiles.contains_key(name) {
            return Err(ConfigError::ProfileExists(name.into()));
        }
        self.profiles.insert(name.into(), BTreeMap::new());
        Ok(())
    }

    pub fn use_profile(&mut self, name: &str) -> Result<()> {
        if !self.profiles.contains_key(name) {
            return Err(ConfigError::UnknownProfile(name.into()));
        }
        self.active = name.into();
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Result<()> {
        if self.active == name {
            return Err(ConfigError::ActiveProfile(name.into()));
        }
        self.profiles.remove(name).map(|_| ()).ok_or_else(|| ConfigError::UnknownProfile(name.into()))
    }
}

fn validate(key: &str, value: &str) -> Result<()> {
    let bad = |reason: &str| ConfigError::InvalidValue { setting: key.into(), reason: reason.into() };
    match key {
        "HEADWATER_API_URL" | "HEADWATER_UI_URL"
            if !(value.starts_with("http://") || value.starts_with("https://")) =>
        {
            Err(bad(&format!("'{value}' is not an http:// or https:// URL")))
        }
        "HEADWATER_LOGGING_LEVEL"
            if !["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"]
                .contains(&value.to_ascii_uppercase().as_str()) =>
        {
            Err(bad(&format!("'{value}' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")))
        }
        "HEADWATER_SECRET_KEY" if value.len() != 64 || !value.chars().all(|c| c.is_ascii_hexdigit()) => {
            Err(bad("a secret key is 64 hexadecimal digits (make one with `openssl rand -hex 32`)"))
        }
        "HEADWATER_LOGGING_CONSOLE" if value.parse::<bool>().is_err() => {
            Err(bad(&format!("'{value}' is not true or false")))
        }
        "HEADWATER_HEARTBEAT_SECONDS"
        | "HEADWATER_HEARTBEAT_TIMEOUT_SECONDS"
        | "HEADWATER_LATE_AFTER_SECONDS"
        | "HEADWATER_PREFECT_HEARTBEAT_SECONDS"
            if !value.parse::<f64>().is_ok_and(|v| v.is_finite() && v > 0.0) =>
        {
            Err(bad(&format!("'{value}' is not a positive number of seconds")))
        }
        _ => Ok(()),
    }
}

/// Values given on the command line, the highest layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub home: Option<PathBuf>,
    pub values: BTreeMap<String, String>,
    pub profile: Option<String>,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub home: PathBuf,
    pub profile: String,
    values: BTreeMap<String, (String, Source)>,
}

impl Settings {
    /// Resolves settings from the process environment.
    pub fn load(overrides: &Overrides) -> Result<Settings> {
        Settings::resolve(overrides, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Resolves settings with an explicit environment (for tests).
    pub fn resolve(overrides: &Overrides, env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let home = match (&overrides.home, env("HEADWATER_HOME")) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => PathBuf::from(h),
            (None, None) => env("HOME").map(|h| PathBuf::from(h).join(".headwater")).ok_or(ConfigError::NoHome)?,
        };
        let mut profiles = Profiles::load(&home)?;
        if let Some(p) = &overrides.profile {
            profiles.use_profile(p)?;
        } else if let Some(p) = env("HEADWATER_PROFILE") {
            profiles.use_profile(&p)?;
        }
        let mut values = BTreeMap::new();
        let defaults = [
            ("HEADWATER_HOME", home.display().to_string()),
            ("HEADWATER_RESULT_STORAGE", home.join("storage").display().to_string()),
            ("HEADWATER_LOGGING_LEVEL", "INFO".to_string()),
            ("HEADWATER_LOGGING_CONSOLE", "true".to_string()),
        ];
        for (k, v) in defaults {
            values.insert(k.to_string(), (v, Source::Default));
        }
        for (k, v) in profiles.active_settings()? {
            info(k)?;
            validate(k, v)?;
            values.insert(k.clone(), (v.clone(), Source::Profile));
        }
        for s in KNOWN {
            if let Some(v) = env(s.name) {
                validate(s.name, &v)?;
                values.insert(s.name.to_string(), (v, Source::Env));
            }
        }
        if overrides.home.is_some() {
            values.insert("HEADWATER_HOME".into(), (home.display().to_string(), Source::Flag));
        }
        for (k, v) in &overrides.values {
            info(k)?;
            validate(k, v)?;
            values.insert(k.clone(), (v.clone(), Source::Flag));
        }
        Ok(Settings { home, profile: profiles.active, values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    pub fn source(&self, key: &str) -> Option<Source> {
        self.values.get(key).map(|(_, s)| *s)
    }

    /// Every resolved setting with its source, secrets masked.
    pub fn view(&self) -> Vec<(String, String, Source)> {
        self.values
            .iter()
            .map(|(k, (v, s))| {
                let secret = k == "HEADWATER_API_KEY" || k == "HEADWATER_SECRET_KEY";
                let shown = if secret { "********".to_string() } else { v.clone() };
                (k.clone(), shown, *s)
            })
            .collect()
    }

    /// The key that seals blocks' secrets, as 64 hex digits:
    /// HEADWATER_SECRET_KEY, or the key file in the home — created on first
    /// use, readable by its owner only, and never inside the database.
    pub fn secret_key_hex(&self) -> Result<String> {
        if let Some(k) = self.get("HEADWATER_SECRET_KEY") {
            return Ok(k.to_string());
        }
        let path = self.home.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(text.trim().to_string()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ConfigError::Read { path, source: e }),
            Err(_) => {}
        }
        let write_err = |source| ConfigError::Write { path: path.clone(), source };
        std::fs::create_dir_all(&self.home).map_err(write_err)?;
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(write_err)?, &mut bytes)
            .map_err(write_err)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Written aside and linked into place: two processes creating the key
        // at once agree on one, and nobody reads a half-written file.
        let tmp = self.home.join(format!(".secret.key.{}", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(write_err)?;
            f.write_all(hex.as_bytes()).and_then(|()| f.sync_all()).map_err(write_err)?;
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(hex),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(|source| ConfigError::Read { path, source }),
            Err(e) => Err(write_err(e)),
        }
    }

    /// Where people reach the web UI, for links (None: derive it from the
    /// server's address).
    pub fn ui_url(&self) -> Option<&str> {
        self.get("HEADWATER_UI_URL")
    }

    pub fn api_url(&self) -> Option<&str> {
        self.get("HEADWATER_API_URL")
    }

    pub fn result_storage(&self) -> PathBuf {
        PathBuf::from(self.get("HEADWATER_RESULT_STORAGE").expect("has a default"))
    }

    /// The embedded SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        match self.get("HEADWATER_DATABASE_URL") {
            Some(url) => PathBuf::from(url.trim_start_matches("sqlite://").trim_start_matches("sqlite:")),
            None => self.home.join("headwater.db"),
        }
    }

    pub fn logging_level(&self) -> &str {
        self.get("HEADWATER_LOGGING_LEVEL").unwrap_or("INFO")
    }

    /// How often flow processes send heartbeats for their live runs.
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        self.seconds("HEADWATER_HEARTBEAT_SECONDS", 10.0)
    }

    /// How long a live run may stay silent before it is marked CRASHED.
    pub fn heartbeat_timeout(&self) -> std::time::Duration {
        self.seconds("HEADWATER_HEARTBEAT_TIMEOUT_SECONDS", 60.0)
    }

    /// How often a Prefect client sends its flow runs' heartbeats (its
    /// `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`): each one holds its run alive
    /// that long beyond the heartbeat timeout.
    pub fn prefect_heartbeat(&self) -> std::time::Duration {
        self.seconds("HEADWATER_PREFECT_HEARTBEAT_SECONDS", 180.0)
    }

    /// How long after its due time a scheduled run not yet started is Late.
    pub fn late_after(&self) -> std::time::Duration {
        self.seconds("HEADWATER_LATE_AFTER_SECONDS", 15.0)
    }

    fn seconds(&self, key: &str, default: f64) -> std::time::Duration {
        let v = self.get(key).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default);
        std::time::Duration::from_secs_f64(v)
    }

    pub fn logging_console(&self) -> bool {
        self.get("HEADWATER_LOGGING_CONSOLE").is_none_or(|v| v.parse().unwrap_or(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn precedence_is_flag_env_profile_default() {
        let home = tempfile::tempdir().unwrap();
        let mut p = Profiles::default();
        p.set("HEADWATER_LOGGING_LEVEL", "DEBUG").unwrap();
        p.set("HEADWATER_API_URL", "http://profile:4200/api").unwrap();
        p.set("HEADWATER_API_KEY", "from-profile").unwrap();
        p.save(home.path()).unwrap();

        let ov = Overrides { home: Some(home.path().into()), ..Default::default() };
        let s = Settings::resolve(&ov, env_of(&[("HEADWATER_API_URL", "http://env:4200/api")])).unwrap();
        assert_eq!(s.logging_level(), "DEBUG");
        assert_eq!(s.source("HEADWATER_LOGGING_LEVEL"), Some(Source::Profile));
        assert_eq!(s.api_url(), Some("http://env:4200/api"));
        assert_eq!(s.source("HEADWATER_API_URL"), Some(Source::Env));
        assert_eq!(s.source("HEADWATER_RESULT_STORAGE"), Some(Source::Default));
        assert!(s.view().iter().any(|(k, v, _)| k == "HEADWATER_API_KEY" && v == "********"));

        let mut ov = ov;
        ov.values.insert("HEADWATER_API_URL".into(), "http://flag:1/api".into());
        let s = Settings::resolve(&ov, env_of(&[("HEADWATER_API_URL", "http://env:4200/api")])).unwrap();
        assert_eq!(s.api_url(), Some("http://flag:1/api"));
        assert_eq!(s.source("HEADWATER_API_URL"), Some(Source::Flag));
    }

    #[test]
    fn home_from_env_then_default() {
        let s = Settings::resolve(&Overrides::default(), env_of(&[("HOME", "/home/ann")])).unwrap();
        assert_eq!(s.home, PathBuf::from("/home/ann/.headwater"));
        assert_eq!(s.database_path(), PathBuf::from("/home/ann/.headwater/headwater.db"));
        assert_eq!(s.result_storage(), PathBuf::from("/home/ann/.headwater/storage"));
        let s = Settings::resolve(&Overrides::default(), env_of(&[("HEADWATER_HOME", "/srv/hw")])).unwrap();
        assert_eq!(s.home, PathBuf::from("/srv/hw"));
    }

    #[test]
    fn heartbeat_settings() {
        let s =
            Settings::resolve(&Overrides::default(), env_of(&[("HOME", "/h"), ("HEADWATER_HEARTBEAT_SECONDS", "0.5")]))
                .unwrap();
        assert_eq!(s.heartbeat_interval(), std::time::Duration::from_millis(500));
        assert_eq!(s.heartbeat_timeout(), std::time::Duration::from_secs(60));
        let e =
            Settings::resolve(&Overrides::default(), env_of(&[("HOME", "/h"), ("HEADWATER_HEARTBEAT_SECONDS", "0")]))
                .unwrap_err();
        assert!(e.to_string().contains("not a positive number of seconds"), "{e}");
    }

    #[test]
    fn errors_name_the_setting() {
        let mut p = Profiles::default();
        let e = p.set("HEADWATER_API_URL", "localhost:4200").unwrap_err().to_string();
        assert_eq!(e, "invalid value for HEADWATER_API_URL: 'localhost:4200' is not an http:// or https:// URL");
        let e = p.set("HEADWATER_APIURL", "x").unwrap_err().to_string();
        assert!(e.starts_with("unknown setting 'HEADWATER_APIURL'"), "{e}");
        let e = p.set("HEADWATER_HOME", "/x").unwrap_err().to_string();
        assert!(e.contains("cannot be stored in a profile"), "{e}");
        let e =
            Settings::resolve(&Overrides::default(), env_of(&[("HOME", "/h"), ("HEADWATER_LOGGING_LEVEL", "loud")]))
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("invalid value for HEADWATER_LOGGING_LEVEL"), "{e}");
    }

    #[test]
    fn profiles_create_use_delete() {
        let home = tempfile::tempdir().unwrap();
        let mut p = Profiles::load(home.path()).unwrap();
        p.create("prod").unwrap();
        assert!(matches!(p.create("prod"), Err(ConfigError::ProfileExists(_))));
        p.use_profile("prod").unwrap();
        p.set("HEADWATER_API_URL", "https://hw.example/api").unwrap();
        assert!(matches!(p.delete("prod"), Err(ConfigError::ActiveProfile(_))));
        p.save(home.path()).unwrap();
        let loaded = Profiles::load(home.path()).unwrap();
        assert_eq!(loaded, p);
        let s = Settings::resolve(&Overrides { home: Some(home.path().into()), ..Default::default() }, env_of(&[]))
            .unwrap();
        assert_eq!(s.profile, "prod");
        assert_eq!(s.api_url(), Some("https://hw.example/api"));
        let s = Settings::resolve(
            &Overrides { home: Some(home.path().into()), profile: Some("default".into()), ..Default::default() },
            env_of(&[]),
        )
        .unwrap();
        assert_eq!(s.api_url(), None);
        assert!(matches!(
            Settings::resolve(
                &Overrides { home: Some(home.path().into()), profile: Some("nope".into()), ..Default::default() },
                env_of(&[])
            ),
            Err(ConfigError::UnknownProfile(_))
        ));
    }

    #[test]
    fn the_secret_key_file_is_created_once_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let s = Settings::resolve(&Overrides { home: Some(home.path().into()), ..Default::default() }, env_of(&[]))
            .unwrap();
        let key = s.secret_key_hex().unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(s.secret_key_hex().unwrap(), key, "the same key next time");
        let mode = std::fs::metadata(home.path().join("secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let given = "ab".repeat(32);
        let s = Settings::resolve(
            &Overrides { home: Some(home.path().into()), ..Default::default() },
            env_of(&[("HEADWATER_SECRET_KEY", &given)]),
        )
        .unwrap();
        assert_eq!(s.secret_key_hex().unwrap(), given);
        assert!(s.view().iter().any(|(k, v, _)| k == "HEADWATER_SECRET_KEY" && v == "********"));
        let bad = Settings::resolve(
            &Overrides { home: Some(home.path().into()), ..Default::default() },
            env_of(&[("HEADWATER_SECRET_KEY", "short")]),
        );
        assert!(bad.unwrap_err().to_string().contains("64 hexadecimal digits"));
    }
}
