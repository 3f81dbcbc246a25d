//! Who owns a job: the rule that turns the identity API Gateway's IAM authorisation reports
//! into an [`Owner`].
//!
//! The raw `userArn` is not an owner. For an assumed role it is
//! `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` ("IAM identifiers", IAM User Guide), and
//! the session name is whatever the caller's tooling chose: the AWS CLI names a session
//! `botocore-session-<time>` afresh each time it assumes the role, so a caller would lose its
//! own jobs. Every user of a Cognito identity pool arrives through the pool's role as the same
//! `…/assumed-role/ROLE/CognitoIdentityCredentials`: only `cognitoIdentityId` tells them apart
//! ("Input format of a Lambda function for proxy integration", API Gateway Developer Guide).

use crate::domain::Owner;
use std::str::FromStr;

/// The session name Cognito identity pools give every role session they hand out.
const COGNITO_SESSION: &str = "CognitoIdentityCredentials";

/// What `requestContext.identity` says of the caller (the fields the rule reads).
#[derive(Clone, Debug, Default)]
pub struct CallerIdentity<'a> {
    pub user_arn: Option<&'a str>,
    pub cognito_identity_id: Option<&'a str>,
}

/// Who owns the jobs of a caller that assumed an IAM role: the deployment chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RoleOwner {
    /// Each role session is a caller of its own (`…:assumed-role/ROLE/SESSION`): right when
    /// session names name people or systems and stay put (IAM Identity Center, explicit
    /// `role_session_name`s).
    #[default]
    Session,
    /// Every session of a role is one caller (`…:assumed-role/ROLE`): right when a role is one
    /// partner or one application whose tooling rotates session names; its sessions share jobs,
    /// links and idempotency keys.
    Role,
}

impl FromStr for RoleOwner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "session" => Ok(RoleOwner::Session),
            "role" => Ok(RoleOwner::Role),
            other => Err(format!("`{other}` is not `session` or `role`")),
        }
    }
}

/// Why a request has no owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoOwner {
    /// No IAM identity at all: the route is not behind IAM authorisation.
    Anonymous,
    /// A Cognito role session without its identity id: owning by the ARN would put every user
    /// of the pool in one account.
    CognitoWithoutIdentity,
}

impl NoOwner {
    pub fn message(&self) -> &'static str {
        match self {
            NoOwner::Anonymous => "the request carries no IAM identity",
            NoOwner::CognitoWithoutIdentity => {
                "the request comes from a Cognito identity pool role but names no Cognito identity"
            }
        }
    }
}

impl RoleOwner {
    /// The owner of `identity`'s jobs:
    /// - a Cognito identity (`cognitoIdentityId` present): `cognito-identity:<identity id>`;
    /// - an assumed role: its session ARN, or the ARN without the session under [`RoleOwner::Role`];
    /// - anything else (an IAM user, a federated user, the account root): its ARN.
    pub fn owner_of(self, identity: &CallerIdentity<'_>) -> Result<Owner, NoOwner> {
        if let Some(id) = identity.cognito_identity_id.filter(|id| !id.is_empty()) {
            return Ok(Owner(format!("cognito-identity:{id}")));
        }
        let arn = identity
            .user_arn
            .filter(|arn| !arn.is_empty())
            .ok_or(NoOwner::Anonymous)?;
        let Some((role, session)) = assumed_role(arn) else {
            return Ok(Owner(arn.to_owned()));
        };
        if session == COGNITO_SESSION {
            return Err(NoOwner::CognitoWithoutIdentity);
        }
        Ok(Owner(match self {
            RoleOwner::Session => arn.to_owned(),
            RoleOwner::Role => role.to_owned(),
        }))
    }
}

/// Splits `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` into the ARN up to the role
/// and the session name.
fn assumed_role(arn: &str) -> Option<(&str, &str)> {
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sts"), Some(""), Some(_account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let rest = resource.strip_prefix("assumed-role/")?;
    let (role_name, session) = rest.split_once('/')?;
    if role_name.is_empty() || session.is_empty() {
        return None;
    }
    let role_end = arn.len() - session.len() - 1;
    Some((&arn[..role_end], session))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(user_arn: &str) -> CallerIdentity<'_> {
        CallerIdentity {
            user_arn: Some(user_arn),
            cognito_identity_id: None,
        }
    }

    #[test]
    fn users_own_by_arn_and_roles_by_session_or_role() {
        let user = "arn:aws:iam::123456789012:user/partner-alice";
        let session = "arn:aws:sts::123456789012:assumed-role/partner/botocore-session-1795400000";
        for rule in [RoleOwner::Session, RoleOwner::Role] {
            assert_eq!(rule.owner_of(&arn(user)).unwrap(), Owner(user.into()));
        }
        assert_eq!(
            RoleOwner::Session.owner_of(&arn(session)).unwrap(),
            Owner(session.into())
        );
        assert_eq!(
            RoleOwner::Role.owner_of(&arn(session)).unwrap(),
            Owner("arn:aws:sts::123456789012:assumed-role/partner".into())
        );
        let china = "arn:aws-cn:sts::123456789012:assumed-role/partner/s";
        assert_eq!(
            RoleOwner::Role.owner_of(&arn(china)).unwrap().0,
            "arn:aws-cn:sts::123456789012:assumed-role/partner"
        );
        // Not an assumed role: kept whole.
        for other in [
            "arn:aws:sts::123456789012:federated-user/carol",
            "arn:aws:iam::123456789012:root",
        ] {
            assert_eq!(RoleOwner::Role.owner_of(&arn(other)).unwrap().0, other);
        }
    }

    #[test]
    fn cognito_users_of_one_role_are_told_apart_by_identity() {
        let pool_role =
            "arn:aws:sts::123456789012:assumed-role/pool-authenticated/CognitoIdentityCredentials";
        let owner = |id| {
            RoleOwner::Role.owner_of(&CallerIdentity {
                user_arn: Some(pool_role),
                cognito_identity_id: Some(id),
            })
        };
        let first = owner("eu-west-1:11111111-2222-3333-4444-555555555555").unwrap();
        let second = owner("eu-west-1:66666666-7777-8888-9999-000000000000").unwrap();
        assert_ne!(first, second);
        assert_eq!(
            first.0,
            "cognito-identity:eu-west-1:11111111-2222-3333-4444-555555555555"
        );
        // Without the identity the pool's users would share one owner: refused.
        for rule in [RoleOwner::Session, RoleOwner::Role] {
            assert_eq!(
                rule.owner_of(&arn(pool_role)),
                Err(NoOwner::CognitoWithoutIdentity)
            );
        }
    }

    #[test]
    fn no_identity_is_no_owner() {
        for identity in [CallerIdentity::default(), arn("")] {
            assert_eq!(
                RoleOwner::Session.owner_of(&identity),
                Err(NoOwner::Anonymous)
            );
        }
        assert!("session".parse::<RoleOwner>().is_ok());
        assert!("roles".parse::<RoleOwner>().unwrap_err().contains("roles"));
    }
}
