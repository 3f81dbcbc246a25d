//! The access policy beside the catalogue (`sql/access.toml`): which groups a caller belongs
//! to and which attributes it carries, by the owner the identity rule derives.
//!
//! ```toml
//! [[caller]]
//! owner = "arn:aws:iam::123456789012:role/partner-*"   # `*`: any run within one segment
//! groups = ["suppliers"]
//! attributes = { supplier = "7" }                      # or a list: ["7", "12"]
//! ```
//!
//! Every entry whose `owner` matches applies: the caller's groups are all theirs together, and
//! an attribute named by several entries has all their values.

use super::Grants;
use crate::catalog::valid_group;
use crate::domain::Owner;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The policy as written; [`AccessPolicy::grants`] reads it for one caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessPolicy {
    callers: Vec<CallerRule>,
}

#[derive(Clone, Debug, PartialEq)]
struct CallerRule {
    owner: OwnerPattern,
    groups: Vec<String>,
    attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    caller: Vec<CallerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    owner: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl AccessPolicy {
    /// Reads `access.toml`. Every name is checked, so a typo is an error at load, never a
    /// grant that silently matches nothing.
    pub fn parse(text: &str) -> Result<AccessPolicy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let callers = file
            .caller
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let at = |m: String| format!("caller {} ({}): {m}", i + 1, entry.owner);
                let owner = OwnerPattern::parse(&entry.owner).map_err(at)?;
                if let Some(bad) = entry.groups.iter().find(|g| !valid_group(g)) {
                    return Err(at(format!(
                        "group '{bad}' must be letters, digits, '_' and '-'"
                    )));
                }
                let mut attributes = BTreeMap::new();
                for (name, values) in &entry.attributes {
                    if !valid_group(name) {
                        return Err(at(format!(
                            "attribute '{name}' must be letters, digits, '_' and '-'"
                        )));
                    }
                    let values = match values {
                        OneOrMany::One(v) => vec![v.clone()],
                        OneOrMany::Many(vs) => vs.clone(),
                    };
                    if values.is_empty() {
                        return Err(at(format!("attribute '{name}' has no value")));
                    }
                    attributes.insert(name.clone(), values);
                }
                Ok(CallerRule {
                    owner,
                    groups: entry.groups.clone(),
                    attributes,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AccessPolicy { callers })
    }

    /// Reads the policy file at `path`; none there is the empty policy (no caller holds any
    /// group or attribute: only entries without `-- allow:` or bound parameters are usable).
    pub fn load_file(path: &std::path::Path) -> Result<AccessPolicy, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => AccessPolicy::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccessPolicy::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// What the policy grants `owner`: every matching entry's groups and attributes.
    pub fn grants(&self, owner: &Owner) -> Grants {
        let mut grants = Grants::default();
        for rule in self.callers.iter().filter(|r| r.owner.matches(&owner.0)) {
            grants.add(&rule.groups, &rule.attributes);
        }
        grants
    }
}

/// An owner with `*` wildcards, each standing for any run of characters within one segment
/// of the ARN (never a `:` or a `/`), so `role/partner-*` cannot reach `role/partner-a/x`.
#[derive(Clone, Debug, PartialEq)]
struct OwnerPattern(Vec<String>);

impl OwnerPattern {
    fn parse(pattern: &str) -> Result<OwnerPattern, String> {
        if pattern.is_empty() {
            return Err("an empty owner matches no caller".into());
        }
        if pattern.contains("**") {
            return Err("'**' is not a pattern; '*' matches within one segment".into());
        }
        Ok(OwnerPattern(
            pattern.split('*').map(str::to_owned).collect(),
        ))
    }

    fn matches(&self, owner: &str) -> bool {
        fn from(pieces: &[String], text: &str) -> bool {
            let Some((first, rest)) = pieces.split_first() else {
                return text.is_empty();
            };
            let Some(text) = text.strip_prefix(first.as_str()) else {
                return false;
            };
            if rest.is_empty() {
                return text.is_empty();
            }
            // A `*` here: try every run of the text within its segment.
            let segment_end = text.find([':', '/']).unwrap_or(text.len());
            (0..=segment_end).any(|n| from(rest, &text[n..]))
        }
        from(&self.0, owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> Owner {
        Owner(s.to_owned())
    }

    #[test]
    fn every_matching_entry_adds_its_groups_and_values() {
        let policy = AccessPolicy::parse(
            r#"
            [[caller]]
            owner = "arn:aws:iam::1:user/bob"
            groups = ["suppliers"]
            attributes = { supplier = "7", region = ["EU", "UK"] }

            [[caller]]
            owner = "arn:aws:iam::1:user/*"
            groups = ["everyone"]
            attributes = { supplier = "9" }
            "#,
        )
        .unwrap();
        let bob = policy.grants(&owner("arn:aws:iam::1:user/bob"));
        assert_eq!(
            bob.groups.iter().collect::<Vec<_>>(),
            ["everyone", "suppliers"]
        );
        assert_eq!(bob.attributes["supplier"], ["7", "9"]);
        assert_eq!(bob.attributes["region"], ["EU", "UK"]);
        let carol = policy.grants(&owner("arn:aws:iam::1:user/carol"));
        assert_eq!(carol.groups.iter().collect::<Vec<_>>(), ["everyone"]);
        assert!(policy
            .grants(&owner("arn:aws:iam::2:user/bob"))
            .groups
            .is_empty());
    }

    #[test]
    fn a_wildcard_stays_within_its_segment() {
        let pattern = OwnerPattern::parse("arn:aws:sts::1:assumed-role/partner-*/*").unwrap();
        assert!(pattern.matches("arn:aws:sts::1:assumed-role/partner-a/session"));
        assert!(pattern.matches("arn:aws:sts::1:assumed-role/partner-/s"));
        assert!(!pattern.matches("arn:aws:sts::1:assumed-role/partner-a/b/c"));
        assert!(!pattern.matches("arn:aws:sts::1:assumed-role/internal/s"));
        let exact = OwnerPattern::parse("arn:aws:iam::1:user/bob").unwrap();
        assert!(exact.matches("arn:aws:iam::1:user/bob"));
        assert!(!exact.matches("arn:aws:iam::1:user/bobby"));
        assert!(!exact.matches("arn:aws:iam::1:user/bo"));
        let account = OwnerPattern::parse("arn:aws:iam::*:user/bob").unwrap();
        assert!(account.matches("arn:aws:iam::42:user/bob"));
        assert!(!account.matches("arn:aws:iam::4:2:user/bob"));
    }

    #[test]
    fn mistakes_are_errors_at_load() {
        for (text, why) in [
            ("[[caller]]\nowner = \"\"", "empty owner"),
            ("[[caller]]\nowner = \"a**\"", "'**'"),
            (
                "[[caller]]\nowner = \"a\"\ngroups = [\"no spaces\"]",
                "group",
            ),
            (
                "[[caller]]\nowner = \"a\"\nattributes = { s = [] }",
                "no value",
            ),
            ("[[caller]]\nowner = \"a\"\nrole = \"x\"", "unknown field"),
            ("[[callers]]\nowner = \"a\"", "unknown field"),
        ] {
            let e = AccessPolicy::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
