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
//!
//! A group may carry what its callers are allowed and how they are treated:
//!
//! ```toml
//! [[group]]
//! name = "suppliers"
//! priority = 1            # turns for warehouse slots: 2 gets twice the turns of 1
//! share_turns = false     # true: the group's callers take their turns as one
//! admin = false           # an admin may list every caller's jobs
//! deliver_to = ["s3://supplier-feeds/inbound/"]   # buckets (and prefixes) exports may be copied to
//! quotas = { unfinished_exports = 10, exports_per_day = 100, bytes_per_day = 10_000_000_000,
//!            lookups_per_second = 5, lookup_burst = 10 }
//! ```
//!
//! Each quota holds for each caller of the group on its own. Of several groups that set a
//! quota, the most generous applies; a caller entry's own `quotas` replace its groups' for the
//! quotas it names. A quota nobody sets is no limit. A caller may deliver into every place its
//! groups and its own entries name in `deliver_to`, and nowhere else.

use super::Grants;
use crate::catalog::valid_group;
use crate::domain::Owner;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The policy as written; [`AccessPolicy::grants`] reads it for one caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessPolicy {
    callers: Vec<CallerRule>,
    groups: BTreeMap<String, GroupRule>,
}

#[derive(Clone, Debug, PartialEq)]
struct CallerRule {
    owner: OwnerPattern,
    groups: Vec<String>,
    attributes: BTreeMap<String, Vec<String>>,
    quotas: Quotas,
    deliver_to: Vec<DeliveryPlace>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct GroupRule {
    priority: u32,
    share_turns: bool,
    admin: bool,
    quotas: Quotas,
    deliver_to: Vec<DeliveryPlace>,
}

/// What a caller may use: each `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Exports not yet ended (QUEUED, RUNNING or PACKAGING) at once.
    pub unfinished_exports: Option<u64>,
    /// Exports submitted per day (UTC).
    pub exports_per_day: Option<u64>,
    /// Bytes of finished exports per day (UTC); an export is refused once the day's are spent.
    pub bytes_per_day: Option<u64>,
    /// Lookups per second, on average (a token bucket refilled at this rate)...
    pub lookups_per_second: Option<u32>,
    /// ...and how many may come at once (the bucket's size; `lookups_per_second` if unset).
    pub lookup_burst: Option<u32>,
}

impl Quotas {
    /// Per quota, `other`'s where it is set, else this one's.
    fn overridden_by(self, other: Quotas) -> Quotas {
        Quotas {
            unfinished_exports: other.unfinished_exports.or(self.unfinished_exports),
            exports_per_day: other.exports_per_day.or(self.exports_per_day),
            bytes_per_day: other.bytes_per_day.or(self.bytes_per_day),
            lookups_per_second: other.lookups_per_second.or(self.lookups_per_second),
            lookup_burst: other.lookup_burst.or(self.lookup_burst),
        }
    }

    /// Per quota, the more generous of the two where both are set, else whichever is.
    fn most_generous(self, other: Quotas) -> Quotas {
        fn max<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        Quotas {
            unfinished_exports: max(self.unfinished_exports, other.unfinished_exports),
            exports_per_day: max(self.exports_per_day, other.exports_per_day),
            bytes_per_day: max(self.bytes_per_day, other.bytes_per_day),
            lookups_per_second: max(self.lookups_per_second, other.lookups_per_second),
            lookup_burst: max(self.lookup_burst, other.lookup_burst),
        }
    }
}

/// How the policy treats one caller, from its groups and its own entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub quotas: Quotas,
    /// Its share of turns for warehouse slots (1 unless a group says more).
    pub priority: u32,
    /// The group whose turns it takes as one with the group's other callers, if one of its
    /// groups shares turns (of several, the first by name); else it takes turns of its own.
    pub turns_of: Option<String>,
    /// May list every caller's jobs.
    pub admin: bool,
    /// The places (`s3://bucket/prefix/`) its exports may be copied to.
    pub deliver_to: Vec<DeliveryPlace>,
}

/// A `deliver_to` place as the policy was read: a bucket, and a prefix that is empty or ends
/// in `/`, so `feeds/` cannot be read as also granting `feeds-of-another-partner/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryPlace {
    pub bucket: String,
    pub prefix: String,
}

impl DeliveryPlace {
    /// Reads `s3://bucket/` or `s3://bucket/prefix/`.
    fn parse(place: &str) -> Result<DeliveryPlace, String> {
        let parsed = export_api::S3Place::parse(place)?;
        let prefix = place
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .map(|(_, p)| p);
        match prefix {
            Some(p) if (p.is_empty() || p.ends_with('/')) && !p.contains('{') => {
                Ok(DeliveryPlace {
                    bucket: parsed.bucket,
                    prefix: p.to_owned(),
                })
            }
            _ => Err(format!(
                "deliver_to '{place}' must be s3://{}/ or a prefix ending in '/'",
                parsed.bucket
            )),
        }
    }
}

impl Default for Standing {
    fn default() -> Self {
        Standing {
            quotas: Quotas::default(),
            priority: 1,
            turns_of: None,
            admin: false,
            deliver_to: Vec::new(),
        }
    }
}

impl Standing {
    /// Whether an S3 delivery to `bucket` under the key template `template` stays inside one
    /// of the places the policy lets the caller deliver to: the same bucket, and the
    /// template's fixed start (before any placeholder, whose values are the job's own) under
    /// the place's prefix.
    pub fn may_deliver_to(&self, bucket: &str, template: &str) -> bool {
        let fixed = template.split('{').next().unwrap_or_default();
        self.deliver_to
            .iter()
            .any(|place| place.bucket == bucket && fixed.starts_with(&place.prefix))
    }
}

/// The highest priority a group may have.
pub const MAX_PRIORITY: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    caller: Vec<CallerEntry>,
    #[serde(default)]
    group: Vec<GroupEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    owner: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    quotas: Quotas,
    #[serde(default)]
    deliver_to: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: String,
    #[serde(default = "one")]
    priority: u32,
    #[serde(default)]
    share_turns: bool,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    quotas: Quotas,
    #[serde(default)]
    deliver_to: Vec<String>,
}

fn one() -> u32 {
    1
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
                let deliver_to = entry
                    .deliver_to
                    .iter()
                    .map(|place| DeliveryPlace::parse(place))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(at)?;
                Ok(CallerRule {
                    owner,
                    groups: entry.groups.clone(),
                    attributes,
                    quotas: entry.quotas,
                    deliver_to,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut groups = BTreeMap::new();
        for (i, entry) in file.group.into_iter().enumerate() {
            let at = |m: String| format!("group {} ({}): {m}", i + 1, entry.name);
            if !valid_group(&entry.name) {
                return Err(at(
                    "a group's name must be letters, digits, '_' and '-'".into()
                ));
            }
            if !(1..=MAX_PRIORITY).contains(&entry.priority) {
                return Err(at(format!("priority must be 1 to {MAX_PRIORITY}")));
            }
            if entry.quotas.lookups_per_second == Some(0) && entry.quotas.lookup_burst.is_some() {
                return Err(at(
                    "a lookup_burst with no lookups per second is no use".into()
                ));
            }
            let deliver_to = entry
                .deliver_to
                .iter()
                .map(|place| DeliveryPlace::parse(place))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            let rule = GroupRule {
                priority: entry.priority,
                share_turns: entry.share_turns,
                admin: entry.admin,
                quotas: entry.quotas,
                deliver_to,
            };
            if groups.insert(entry.name.clone(), rule).is_some() {
                return Err(at("named twice".into()));
            }
        }
        Ok(AccessPolicy { callers, groups })
    }

    /// How the policy treats the caller `owner` holding `grants` (from the policy, and from
    /// its identity's tags where the deployment reads them).
    pub fn standing(&self, owner: &Owner, grants: &Grants) -> Standing {
        let mut standing = Standing::default();
        let mut from_groups: Option<Quotas> = None;
        for (name, group) in grants
            .groups
            .iter()
            .filter_map(|g| Some((g, self.groups.get(g)?)))
        {
            standing.priority = standing.priority.max(group.priority);
            // The groups come in name order, so the first that shares is the first by name.
            if group.share_turns && standing.turns_of.is_none() {
                standing.turns_of = Some(name.clone());
            }
            standing.admin |= group.admin;
            standing.deliver_to.extend(group.deliver_to.iter().cloned());
            from_groups = Some(match from_groups {
                None => group.quotas,
                Some(q) => q.most_generous(group.quotas),
            });
        }
        let mut own: Option<Quotas> = None;
        for rule in self.callers.iter().filter(|r| r.owner.matches(&owner.0)) {
            standing.deliver_to.extend(rule.deliver_to.iter().cloned());
            if rule.quotas != Quotas::default() {
                own = Some(match own {
                    None => rule.quotas,
                    Some(q) => q.most_generous(rule.quotas),
                });
            }
        }
        // Callers taking turns as one group move its turn on by the group's own priority, so
        // a member favoured elsewhere cannot speed the whole group's turns.
        if let Some(group) = standing.turns_of.as_ref().and_then(|g| self.groups.get(g)) {
            standing.priority = group.priority;
        }
        let groups = from_groups.unwrap_or_default();
        standing.quotas = match own {
            Some(own) => groups.overridden_by(own),
            None => groups,
        };
        standing
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
    fn a_caller_may_deliver_only_under_the_places_its_groups_and_entries_name() {
        let policy = AccessPolicy::parse(
            r#"
            [[group]]
            name = "suppliers"
            deliver_to = ["s3://feeds/shared/"]

            [[caller]]
            owner = "arn:aws:iam::1:user/acme"
            groups = ["suppliers"]
            deliver_to = ["s3://acme-feed/"]
            "#,
        )
        .unwrap();
        let owner = Owner("arn:aws:iam::1:user/acme".into());
        let standing = policy.standing(&owner, &policy.grants(&owner));
        for (bucket, template, allowed) in [
            ("feeds", "shared/{dataset}/{request_id}.zip", true),
            ("feeds", "shared-other/{request_id}.zip", false),
            ("feeds", "{request_id}.zip", false),
            ("acme-feed", "anything/{request_id}.zip", true),
            ("acme-feed-2", "{request_id}.zip", false),
        ] {
            assert_eq!(
                standing.may_deliver_to(bucket, template),
                allowed,
                "{bucket} {template}"
            );
        }
        let other = Owner("arn:aws:iam::1:user/bob".into());
        assert!(policy
            .standing(&other, &policy.grants(&other))
            .deliver_to
            .is_empty());
        // A prefix that does not end in '/' would grant its neighbours too: refused at load.
        for bad in [
            "s3://feeds/shared",
            "s3://Feeds/",
            "https://feeds/",
            "s3://feeds/{date}/",
        ] {
            let text = format!("[[group]]\nname = \"g\"\ndeliver_to = [\"{bad}\"]");
            let e = AccessPolicy::parse(&text).unwrap_err();
            assert!(e.contains("group 1 (g)"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_group_that_shares_turns_gives_its_callers_one_turn_key() {
        let policy = AccessPolicy::parse(
            r#"
            [[group]]
            name = "suppliers"
            share_turns = true

            [[group]]
            name = "analysts"
            share_turns = true

            [[group]]
            name = "solo"

            [[group]]
            name = "fast"
            priority = 3

            [[caller]]
            owner = "arn:aws:iam::1:user/supplier-fast"
            groups = ["fast"]

            [[caller]]
            owner = "arn:aws:iam::1:user/supplier-*"
            groups = ["suppliers"]

            [[caller]]
            owner = "arn:aws:iam::1:user/supplier-both"
            groups = ["analysts"]

            [[caller]]
            owner = "arn:aws:iam::1:user/own"
            groups = ["solo"]
            "#,
        )
        .unwrap();
        let turns_of = |name: &str| {
            let o = owner(&format!("arn:aws:iam::1:user/{name}"));
            policy.standing(&o, &policy.grants(&o)).turns_of
        };
        assert_eq!(turns_of("supplier-a"), Some("suppliers".into()));
        assert_eq!(turns_of("supplier-b"), Some("suppliers".into()));
        assert_eq!(
            turns_of("supplier-both"),
            Some("analysts".into()),
            "first by name"
        );
        assert_eq!(turns_of("own"), None);
        // Taking the group's turns, it moves them on by the group's priority, not its own.
        let fast = owner("arn:aws:iam::1:user/supplier-fast");
        let standing = policy.standing(&fast, &policy.grants(&fast));
        assert_eq!(
            (standing.turns_of.as_deref(), standing.priority),
            (Some("suppliers"), 1)
        );
        assert!(AccessPolicy::parse("[[group]]\nname = \"g\"\nshare_turns = \"yes\"").is_err());
    }

    #[test]
    fn quotas_come_from_the_most_generous_group_and_a_caller_s_own_entry() {
        let policy = AccessPolicy::parse(
            r#"
            [[group]]
            name = "suppliers"
            quotas = { unfinished_exports = 2, exports_per_day = 10, lookups_per_second = 1 }

            [[group]]
            name = "big"
            priority = 3
            quotas = { exports_per_day = 50 }

            [[group]]
            name = "ops"
            admin = true

            [[caller]]
            owner = "arn:aws:iam::1:user/*"
            groups = ["suppliers"]

            [[caller]]
            owner = "arn:aws:iam::1:user/big"
            groups = ["big"]

            [[caller]]
            owner = "arn:aws:iam::1:user/tight"
            quotas = { unfinished_exports = 1 }

            [[caller]]
            owner = "arn:aws:iam::1:user/ops"
            groups = ["ops"]
            "#,
        )
        .unwrap();
        let standing = |name: &str| {
            let o = owner(&format!("arn:aws:iam::1:user/{name}"));
            policy.standing(&o, &policy.grants(&o))
        };
        let plain = standing("plain");
        assert_eq!(plain.quotas.unfinished_exports, Some(2));
        assert_eq!(plain.quotas.exports_per_day, Some(10));
        assert_eq!(plain.quotas.bytes_per_day, None, "nobody sets it");
        assert_eq!((plain.priority, plain.admin), (1, false));
        assert_eq!(
            plain.turns_of, None,
            "a caller takes turns of its own by default"
        );
        let big = standing("big");
        assert_eq!(big.quotas.exports_per_day, Some(50), "the more generous");
        assert_eq!(big.quotas.unfinished_exports, Some(2));
        assert_eq!(big.priority, 3);
        let tight = standing("tight");
        assert_eq!(tight.quotas.unfinished_exports, Some(1), "its own entry");
        assert_eq!(
            tight.quotas.exports_per_day,
            Some(10),
            "the rest its group's"
        );
        assert!(standing("ops").admin);
        // Outside every group: no limits.
        let stranger = owner("arn:aws:iam::2:user/x");
        assert_eq!(
            policy.standing(&stranger, &policy.grants(&stranger)),
            Standing::default()
        );
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
            ("[[group]]\nname = \"g\"\npriority = 0", "priority"),
            ("[[group]]\nname = \"g\"\n[[group]]\nname = \"g\"", "twice"),
            (
                "[[group]]\nname = \"g\"\nquotas = { exports_per_week = 1 }",
                "unknown field",
            ),
        ] {
            let e = AccessPolicy::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
