//! Typed reads from the layered values. Every read that fails records a problem that names
//! the setting, what is wrong with the value and what is expected, and reading goes on so
//! that one run reports every problem at once.

use secrecy::SecretString;

use super::ConfigProblem;
use super::source::{Layered, RawValue};

/// The shortest secret token accepted (API, metrics and webhook tokens and secrets).
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// Reads typed values, collecting problems.
pub struct Reader<'a> {
    layered: &'a Layered,
    pub problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    pub fn new(layered: &'a Layered, problems: Vec<ConfigProblem>) -> Self {
        Reader { layered, problems }
    }

    /// Records a problem about `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems
            .push(ConfigProblem::new(&Layered::describe(key), message.into()));
    }

    /// Whether a problem was already recorded for `key` (a bad value is not also "missing").
    pub fn has_problem(&self, key: &str) -> bool {
        let setting = Layered::describe(key);
        self.problems.iter().any(|p| p.setting == setting)
    }

    /// The raw value of `key`, if set.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.layered.get(key)
    }

    /// A string value, trimmed, if set.
    pub fn string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|v| v.raw.trim().to_owned())
    }

    /// A secret value, if set. Its value is never echoed in a problem.
    pub fn secret(&self, key: &str) -> Option<SecretString> {
        self.raw(key)
            .map(|v| SecretString::from(v.raw.trim().to_owned()))
    }

    /// A value parsed by `parse`, which explains a failure as "expected …".
    pub fn parse<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let value = self.raw(key)?;
        match parse(value.raw.trim()) {
            Ok(v) => Some(v),
            Err(expected) => {
                let message = format!("{:?} {}; {expected}", value.raw, value.origin);
                self.problem(key, message);
                None
            }
        }
    }

    /// An integer in `min..=max`; malformed and out-of-range values are told apart.
    pub fn number<T: TryFrom<i128>>(&mut self, key: &str, min: i128, max: i128) -> Option<T> {
        let value = self.raw(key)?;
        let raw = value.raw.trim();
        let Ok(n) = raw.parse::<i128>() else {
            let message = format!(
                "{raw:?} {} is not a whole number; expected an integer from {min} to {max}",
                value.origin
            );
            self.problem(key, message);
            return None;
        };
        match T::try_from(n) {
            Ok(v) if (min..=max).contains(&n) => Some(v),
            _ => {
                let message = format!(
                    "{n} {} is out of range; expected an integer from {min} to {max}",
                    value.origin
                );
                self.problem(key, message);
                None
            }
        }
    }

    /// A boolean: true/false, 1/0, yes/no, on/off.
    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        self.parse(key, |raw| match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// One of `choices` (case-insensitive), mapped by `map`.
    pub fn choice<T>(&mut self, key: &str, choices: &[(&str, T)]) -> Option<T>
    where
        T: Copy,
    {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.parse(key, |raw| {
            choices
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(raw))
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("expected one of: {}", names.join(", ")))
        })
    }

    /// An absolute http(s) URL.
    pub fn http_url(&mut self, key: &str) -> Option<url::Url> {
        self.parse(key, |raw| match url::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
            Ok(_) => Err("expected an http:// or https:// URL with a host".to_owned()),
            Err(e) => Err(format!(
                "is not a URL ({e}); expected an http:// or https:// URL"
            )),
        })
    }

    /// A secret of at least `min_len` characters; its value is never echoed.
    pub fn token(&mut self, key: &str, min_len: usize) -> Option<SecretString> {
        let value = self.raw(key)?;
        let len = value.raw.trim().chars().count();
        if len < min_len {
            let message = format!(
                "is too short ({len} characters {}); expected at least {min_len} characters",
                value.origin
            );
            self.problem(key, message);
            return None;
        }
        self.secret(key)
    }

    /// The keys and values of a table (e.g. `schedules`).
    pub fn table(&self, prefix: &str) -> Vec<(String, &'a RawValue)> {
        self.layered
            .under(prefix)
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }
}

/// `value`, or a "not set" problem when the key has no value at all.
pub(super) fn need<T: Default>(r: &mut Reader<'_>, key: &str, value: Option<T>) -> T {
    if value.is_none() && r.raw(key).is_none() {
        r.problem(key, "is not set");
    }
    value.unwrap_or_default()
}
