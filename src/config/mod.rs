//! Typed, layered, validated settings.
//!
//! Layers, later ones winning: `config/default.toml`, `config/{APP_ENV}.toml`, environment
//! variables (see [`spec::SETTINGS`] for every name). Loading reports every problem at once,
//! one line each, naming the setting; secrets are [`SecretString`] and are never printed.

mod alerts;
mod dashboard;
mod load;
mod reader;
mod security;
mod settings;
mod source;
pub mod spec;
mod workflows;

use std::collections::HashMap;
use std::fmt;

pub use settings::*;

/// The deployment environment, chosen by `APP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// A developer's machine (the default).
    Development,
    /// The test suite.
    Test,
    /// Heroku.
    Production,
}

impl AppEnv {
    /// The name used in `APP_ENV` and in `config/{name}.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppEnv::Development => "development",
            AppEnv::Test => "test",
            AppEnv::Production => "production",
        }
    }

    fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigProblem> {
        let raw = env.get("APP_ENV").map(|s| s.trim()).unwrap_or("");
        match raw.to_ascii_lowercase().as_str() {
            "" | "development" | "dev" => Ok(AppEnv::Development),
            "test" => Ok(AppEnv::Test),
            "production" | "prod" => Ok(AppEnv::Production),
            _ => Err(ConfigProblem::new(
                "APP_ENV",
                format!("{raw:?} is not an environment; expected development, test or production"),
            )),
        }
    }
}

/// Which process is starting: each needs different secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `migrate`: Postgres only.
    Migrate,
    /// `web`: webhooks, API, metrics.
    Web,
    /// `worker`: jobs and schedules, which call the upstreams.
    Worker,
    /// `doctor` and other operator commands: nothing is required, missing secrets are reported.
    Tool,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting, as `ENV_NAME (dotted.key)` where it has both.
    pub setting: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigProblem {
    pub(crate) fn new(setting: &str, message: impl Into<String>) -> Self {
        ConfigProblem {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Every problem found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order they were found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problems):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Whether any problem names `setting` (an env name or dotted key).
    pub fn mentions(&self, setting: &str) -> bool {
        self.problems.iter().any(|p| p.setting.contains(setting))
    }
}

/// Loads the settings for `process` from the files and the process environment.
pub fn load(process: Process, jobs: &[Schedulable]) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_from(&env, process, jobs)
}

/// Loads the settings for `process` from the files and the given environment.
/// `jobs` are the jobs that have a schedule (the jobs layer's `schedulable()`): each gets its
/// default unless `schedules.<name>` or `SCHEDULE_<NAME>` sets it, and any other name under
/// `schedules` is a problem.
pub fn load_from(
    env: &HashMap<String, String>,
    process: Process,
    jobs: &[Schedulable],
) -> Result<Settings, ConfigError> {
    let app_env = AppEnv::from_env(env).map_err(|p| ConfigError { problems: vec![p] })?;
    let mut problems = Vec::new();
    let layered = source::Layered::build(app_env, env, &mut problems);
    let mut reader = reader::Reader::new(&layered, problems);
    let settings = load::read(&mut reader, app_env, jobs);
    load::require(&mut reader, &settings, process);
    if reader.problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError {
            problems: reader.problems,
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
