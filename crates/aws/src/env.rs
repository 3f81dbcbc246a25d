//! Configuration from environment variables, read once at init. Every missing or malformed
//! variable is collected, so one error names them all instead of failing on the first.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A snapshot of the variables, and what was wrong with them.
#[derive(Debug)]
pub struct Env {
    vars: BTreeMap<String, String>,
    missing: Vec<String>,
    invalid: Vec<String>,
}

/// One error for every missing or malformed variable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub missing: Vec<String>,
    pub invalid: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing environment variables: {}",
                self.missing.join(", ")
            ));
        }
        if !self.invalid.is_empty() {
            parts.push(format!(
                "invalid environment variables: {}",
                self.invalid.join("; ")
            ));
        }
        write!(f, "{} (the README lists every variable)", parts.join("; "))
    }
}

impl std::error::Error for ConfigError {}

impl Env {
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            missing: Vec::new(),
            invalid: Vec::new(),
        }
    }

    /// The variable's value if set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The variable's value; noted as missing (and empty for now) if unset.
    pub fn required(&mut self, name: &str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.note_missing(name);
            String::new()
        })
    }

    pub fn note_missing(&mut self, name: &str) {
        if !self.missing.iter().any(|m| m == name) {
            self.missing.push(name.to_owned());
        }
    }

    pub fn note_invalid(&mut self, name: &str, reason: impl fmt::Display) {
        self.invalid.push(format!("{name}: {reason}"));
    }

    /// The variable parsed as `T`, or `default` if unset.
    pub fn parsed<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|e| {
                self.note_invalid(name, format!("{text:?}: {e}"));
                default
            }),
        }
    }

    /// A duration given in whole seconds, within `max`.
    pub fn seconds(&mut self, name: &str, default: u64, max: u64) -> Duration {
        let value = self.parsed(name, default);
        if value == 0 || value > max {
            self.note_invalid(name, format!("{value} is not between 1 and {max} seconds"));
        }
        Duration::from_secs(value)
    }

    /// A comma-separated list; empty if unset.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ok if nothing was missing or malformed.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() && self.invalid.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                missing: self.missing,
                invalid: self.invalid,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_names_every_problem() {
        let mut env = Env::from_pairs([("A", "x"), ("N", "ten"), ("B", "  ")]);
        assert_eq!(env.required("A"), "x");
        env.required("B");
        env.required("C");
        let n: u32 = env.parsed("N", 3);
        assert_eq!(n, 3);
        let error = env.finish().unwrap_err();
        assert_eq!(error.missing, ["B", "C"]);
        assert_eq!(error.invalid.len(), 1);
        let text = error.to_string();
        assert!(
            text.contains("missing environment variables: B, C"),
            "{text}"
        );
        assert!(text.contains("N: \"ten\""), "{text}");
    }

    #[test]
    fn lists_and_bounded_seconds() {
        let mut env = Env::from_pairs([("L", "a@x.org, @y.org,,"), ("T", "700000")]);
        assert_eq!(env.list("L"), ["a@x.org", "@y.org"]);
        assert!(env.list("NONE").is_empty());
        env.seconds("T", 60, 604_800);
        assert_eq!(env.finish().unwrap_err().invalid.len(), 1);
    }
}
