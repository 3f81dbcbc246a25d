//! Grants from the caller's IAM tags, for deployments that manage partners the way AWS
//! recommends scaling permissions: by tags on the principals ("Define permissions based on
//! attributes with ABAC authorization", IAM User Guide). A caller that is an IAM user of the
//! deployment's account is read with `iam:ListUserTags`; one that assumed a role of that
//! account (its session, or the role itself) with `iam:ListRoleTags`. Anything else (another
//! account's principal, a Cognito identity) has no tags here.
//!
//! `export:groups` holds the caller's groups, space-separated; `export:<attribute>` an
//! attribute's values, space-separated (tag values may hold letters, digits, spaces and
//! `_ . : / = + - @`, "Tagging IAM resources"). Answers are kept per function instance for
//! [`TAG_TTL`], so a tag change takes effect within a minute and a busy instance asks IAM
//! (whose `List*Tags` calls are throttled per account) about once a minute per caller.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use export_core::access::{AttributeSource, Grants};
use export_core::catalog::valid_group;
use export_core::domain::Owner;
use export_core::ports::PortResult;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an instance keeps a caller's tags.
pub const TAG_TTL: Duration = Duration::from_secs(60);
/// The tag keys read, and the key of the groups under it.
pub const TAG_PREFIX: &str = "export:";
const GROUPS_TAG: &str = "export:groups";
/// Callers kept at most; the oldest answer goes first.
const MAX_KEPT: usize = 10_000;

/// An IAM principal of the deployment's account whose tags can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tagged {
    User(String),
    Role(String),
}

impl Tagged {
    /// The user or role `owner` names, if it is one of `account`'s. A user's ARN may carry a
    /// path (`user/division/name`); a role session's names the role without its path.
    fn of(owner: &str, account: &str) -> Option<Tagged> {
        let mut fields = owner.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some(service), Some(""), Some(acct), Some(resource)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return None;
        };
        if acct != account {
            return None;
        }
        let name = |path: &str| {
            path.rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        };
        match (service, resource.split_once('/')) {
            ("iam", Some(("user", path))) => name(path).map(Tagged::User),
            ("iam", Some(("role", path))) => name(path).map(Tagged::Role),
            ("sts", Some(("assumed-role", rest))) => rest
                .split('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(|n| Tagged::Role(n.to_owned())),
            _ => None,
        }
    }
}

/// Grants read from IAM tags, kept a while per caller.
pub struct IamTagGrants {
    client: aws_sdk_iam::Client,
    account: String,
    kept: Mutex<HashMap<String, (Instant, Grants)>>,
}

impl IamTagGrants {
    /// Reads the tags of `account`'s users and roles.
    pub fn new(client: aws_sdk_iam::Client, account: &str) -> IamTagGrants {
        IamTagGrants {
            client,
            account: account.to_owned(),
            kept: Mutex::new(HashMap::new()),
        }
    }

    async fn tags(&self, tagged: &Tagged) -> PortResult<Vec<(String, String)>> {
        let mut tags = Vec::new();
        let mut marker: Option<String> = None;
        // IAM holds at most 50 tags a principal ("IAM and AWS STS quotas"); a page is 100.
        for _ in 0..10 {
            let page = match tagged {
                Tagged::User(name) => settle(
                    "ListUserTags",
                    self.client
                        .list_user_tags()
                        .user_name(name)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map(|out| Page::of(out.tags(), out.is_truncated(), out.marker())),
                )?,
                Tagged::Role(name) => settle(
                    "ListRoleTags",
                    self.client
                        .list_role_tags()
                        .role_name(name)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map(|out| Page::of(out.tags(), out.is_truncated(), out.marker())),
                )?,
            };
            // No such user or role (deleted since it signed): no tags.
            let Some(page) = page else {
                return Ok(Vec::new());
            };
            tags.extend(page.tags);
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }
}

/// One page of a principal's tags, and where the next starts.
struct Page {
    tags: Vec<(String, String)>,
    next: Option<String>,
}

impl Page {
    fn of(tags: &[Tag], truncated: bool, marker: Option<&str>) -> Page {
        Page {
            tags: tags
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            next: marker.filter(|_| truncated).map(str::to_owned),
        }
    }
}

/// A page, none for a principal IAM does not have, or the port's error.
fn settle<E>(operation: &str, result: Result<Page, SdkError<E>>) -> PortResult<Option<Page>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(page) => Ok(Some(page)),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(port_error(operation, e)),
    }
}

/// The grants tags say: `export:groups` and `export:<attribute>`; any other tag, and any name
/// that is not a group or attribute name, says nothing.
pub fn grants_of(tags: &[(String, String)]) -> Grants {
    let mut groups = Vec::new();
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in tags {
        let words = value.split_whitespace().map(str::to_owned);
        if key == GROUPS_TAG {
            groups.extend(words.filter(|g| valid_group(g)));
        } else if let Some(name) = key.strip_prefix(TAG_PREFIX).filter(|n| valid_group(n)) {
            attributes.entry(name.to_owned()).or_default().extend(words);
        }
    }
    let mut grants = Grants::default();
    grants.add(&groups, &attributes);
    grants
}

#[async_trait]
impl AttributeSource for IamTagGrants {
    async fn grants(&self, owner: &Owner) -> PortResult<Grants> {
        let Some(tagged) = Tagged::of(&owner.0, &self.account) else {
            return Ok(Grants::default());
        };
        if let Some((at, grants)) = self.kept.lock().expect("tag cache lock").get(&owner.0) {
            if at.elapsed() < TAG_TTL {
                return Ok(grants.clone());
            }
        }
        let grants = grants_of(&self.tags(&tagged).await?);
        let mut kept = self.kept.lock().expect("tag cache lock");
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < TAG_TTL);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(owner.0.clone(), (Instant::now(), grants.clone()));
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_accounts_users_and_roles_have_tags_here() {
        for (owner, tagged) in [
            (
                "arn:aws:iam::111:user/bob",
                Some(Tagged::User("bob".into())),
            ),
            (
                "arn:aws:iam::111:user/partners/bob",
                Some(Tagged::User("bob".into())),
            ),
            (
                "arn:aws:iam::111:role/partner",
                Some(Tagged::Role("partner".into())),
            ),
            (
                "arn:aws:iam::111:role/path/partner",
                Some(Tagged::Role("partner".into())),
            ),
            (
                "arn:aws:sts::111:assumed-role/partner/session-1",
                Some(Tagged::Role("partner".into())),
            ),
            (
                "arn:aws-cn:iam::111:user/bob",
                Some(Tagged::User("bob".into())),
            ),
            // Another account's bob is not ours.
            ("arn:aws:iam::222:user/bob", None),
            ("arn:aws:sts::222:assumed-role/partner/s", None),
            ("cognito:us-east-1:abc", None),
            ("arn:aws:iam::111:group/x", None),
            ("arn:aws:iam::111:user/", None),
        ] {
            assert_eq!(Tagged::of(owner, "111"), tagged, "{owner}");
        }
    }

    #[test]
    fn tags_say_groups_and_attributes() {
        let tags = [
            ("export:groups", "suppliers  partners"),
            ("export:supplier", "7 12"),
            ("export:region", "EU"),
            ("export:bad name", "x"),
            ("team", "data"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let grants = grants_of(&tags);
        assert_eq!(
            grants.groups.iter().collect::<Vec<_>>(),
            ["partners", "suppliers"]
        );
        assert_eq!(grants.attributes["supplier"], ["7", "12"]);
        assert_eq!(grants.attributes["region"], ["EU"]);
        assert_eq!(grants.attributes.len(), 2);
    }
}
