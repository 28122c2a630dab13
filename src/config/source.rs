//! Layered raw configuration: `config/default.toml`, then `config/{APP_ENV}.toml`, then
//! environment variables. Values are kept as strings with their origin so that every problem
//! found while typing them can name the setting and where its value came from.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use super::spec::{self, SettingSpec};
use super::{AppEnv, ConfigProblem};

/// The configuration files compiled into the binary, so it runs from any directory.
/// `CONFIG_DIR` points at a directory whose files are read instead.
const EMBEDDED: [(&str, &str); 4] = [
    ("default", include_str!("../../config/default.toml")),
    ("development", include_str!("../../config/development.toml")),
    ("test", include_str!("../../config/test.toml")),
    ("production", include_str!("../../config/production.toml")),
];

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(name) => write!(f, "from {name}"),
            Origin::Env(name) => write!(f, "from environment variable {name}"),
        }
    }
}

/// One raw value and its origin.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub raw: String,
    pub origin: Origin,
}

/// All raw values by dotted key (`server.port`), later layers overriding earlier ones.
#[derive(Debug, Default)]
pub struct Layered {
    values: BTreeMap<String, RawValue>,
}

impl Layered {
    /// Builds the layers for `app_env` from the files and the given environment.
    pub fn build(
        app_env: AppEnv,
        env: &HashMap<String, String>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Self {
        let mut layered = Layered::default();
        for name in ["default", app_env.as_str()] {
            match read_file(name, env) {
                Ok((label, text)) => layered.merge_toml(&label, &text, problems),
                Err(problem) => problems.push(problem),
            }
        }
        layered.merge_env(env);
        layered
    }

    /// The raw value of `key`, if any layer set it to something non-empty.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.values.get(key).filter(|v| !v.raw.trim().is_empty())
    }

    /// Every key under `prefix.` with its value (used for the schedules table).
    pub fn under(&self, prefix: &str) -> impl Iterator<Item = (&str, &RawValue)> {
        let start = format!("{prefix}.");
        self.values
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(&start).map(|rest| (rest, v)))
    }

    fn merge_toml(&mut self, label: &str, text: &str, problems: &mut Vec<ConfigProblem>) {
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(err) => {
                problems.push(ConfigProblem::new(
                    label,
                    format!("is not valid TOML: {}", err.message()),
                ));
                return;
            }
        };
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            let known = spec::find(&key).is_some() || key.starts_with("schedules.");
            match value {
                Some(raw) if known => {
                    let origin = Origin::File(label.to_owned());
                    self.values.insert(key, RawValue { raw, origin });
                }
                Some(_) => problems.push(ConfigProblem::new(
                    &key,
                    format!("is not a known setting ({label}); see the settings table in README.md"),
                )),
                None => problems.push(ConfigProblem::new(
                    &key,
                    format!("has an unsupported value type ({label}); expected a string, number or boolean"),
                )),
            }
        }
    }

    fn merge_env(&mut self, env: &HashMap<String, String>) {
        for setting in spec::SETTINGS {
            if let Some(raw) = env.get(setting.env) {
                let origin = Origin::Env(setting.env.to_owned());
                let value = RawValue {
                    raw: raw.clone(),
                    origin,
                };
                self.values.insert(setting.key.to_owned(), value);
            }
        }
        for (name, raw) in env {
            if let Some(job) = name.strip_prefix(spec::SCHEDULE_ENV_PREFIX) {
                let key = format!("schedules.{}", job.to_ascii_lowercase());
                let origin = Origin::Env(name.clone());
                let value = RawValue {
                    raw: raw.clone(),
                    origin,
                };
                self.values.insert(key, value);
            }
        }
    }

    /// The spec of `key`, for naming it in messages.
    pub fn describe(key: &str) -> String {
        match spec::find(key) {
            Some(SettingSpec { env, .. }) => format!("{env} ({key})"),
            None => match key.strip_prefix("schedules.") {
                Some(job) => format!(
                    "{}{} ({key})",
                    spec::SCHEDULE_ENV_PREFIX,
                    job.to_ascii_uppercase()
                ),
                None => key.to_owned(),
            },
        }
    }
}

fn read_file(name: &str, env: &HashMap<String, String>) -> Result<(String, String), ConfigProblem> {
    let Some(dir) = env.get("CONFIG_DIR").filter(|d| !d.is_empty()) else {
        let text = EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| (*text).to_owned())
            .unwrap_or_default();
        return Ok((format!("config/{name}.toml"), text));
    };
    let path = Path::new(dir).join(format!("{name}.toml"));
    let label = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((label, text)),
        // Only default.toml is mandatory; an environment may have no file of its own.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && name != "default" => {
            Ok((label, String::new()))
        }
        Err(err) => Err(ConfigProblem::new(
            "CONFIG_DIR",
            format!("cannot read {label}: {err}"),
        )),
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, Option<String>)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_owned(), Some(s.clone()))),
        toml::Value::Integer(i) => out.push((prefix.to_owned(), Some(i.to_string()))),
        toml::Value::Float(f) => out.push((prefix.to_owned(), Some(f.to_string()))),
        toml::Value::Boolean(b) => out.push((prefix.to_owned(), Some(b.to_string()))),
        _ => out.push((prefix.to_owned(), None)),
    }
}
