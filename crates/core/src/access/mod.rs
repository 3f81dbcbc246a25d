//! Who may use which dataset, over which rows: decided here, once, before any statement is
//! rendered, for every route that reads the catalogue (exports, lookups, the compatibility
//! routes, `/datasets`, and so the console and the CLI).
//!
//! A caller's groups and attributes come from the access policy beside the catalogue
//! ([`AccessPolicy`], by the owner the identity rule derives) and, where a deployment says so,
//! from its identity's tags ([`AttributeSource`]). A catalogue entry may name the groups that
//! may use it (`-- allow:`); to anyone else it does not exist, on every route. A parameter may
//! be bound to an attribute (`bound=supplier`): its value is the caller's, never the
//! request's, and a request that names it is refused.

mod policy;

pub use policy::{AccessPolicy, Quotas, Standing, MAX_PRIORITY};

use crate::catalog::{value_from_items, Catalog, Export, ParamError};
use crate::domain::Owner;
use crate::error::ApiError;
use crate::ports::PortResult;
use crate::sql::Literal;
use async_trait::async_trait;
use export_api::ExportDescription;
use http::StatusCode;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a caller holds: the groups it belongs to and its attributes, each with its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub groups: BTreeSet<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl Grants {
    /// Adds `groups` and `attributes`' values to what is held (a value held already once).
    pub fn add(&mut self, groups: &[String], attributes: &BTreeMap<String, Vec<String>>) {
        self.groups.extend(groups.iter().cloned());
        for (name, values) in attributes {
            let held = self.attributes.entry(name.clone()).or_default();
            for value in values {
                if !held.contains(value) {
                    held.push(value.clone());
                }
            }
        }
    }
}

/// Grants from outside the policy: on AWS, the caller's IAM tags.
#[async_trait]
pub trait AttributeSource: Send + Sync {
    /// What `owner`'s identity carries; nothing for an identity it does not know.
    async fn grants(&self, owner: &Owner) -> PortResult<Grants>;
}

/// The parameters a statement runs with: as JSON values (what a job records) and as the
/// literals a statement is rendered from, each checked against its type.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundParams {
    pub values: Map<String, Value>,
    pub literals: BTreeMap<String, Vec<Literal>>,
}

/// What an empty text value is: a form's field left empty is a parameter not given; a query
/// string's `name=` is the empty text, which the parameter's type judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyText {
    Absent,
    Empty,
}

/// A caller as access sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub owner: Owner,
    pub grants: Grants,
    /// Its quotas, priority and whether it is an admin, by the policy.
    pub standing: Standing,
}

/// The catalogue as each caller may see it. The services that read the catalogue for a caller
/// (submissions, queries, lookups) hold this, not the catalogue.
pub struct Access {
    catalog: Arc<Catalog>,
    policy: AccessPolicy,
    source: Option<Arc<dyn AttributeSource>>,
}

impl Access {
    pub fn new(
        catalog: Arc<Catalog>,
        policy: AccessPolicy,
        source: Option<Arc<dyn AttributeSource>>,
    ) -> Access {
        Access {
            catalog,
            policy,
            source,
        }
    }

    /// The caller, with what the policy and the attribute source grant it.
    pub async fn principal(&self, owner: &Owner) -> Result<Principal, ApiError> {
        let mut grants = self.policy.grants(owner);
        if let Some(source) = &self.source {
            let more = source.grants(owner).await?;
            let groups: Vec<String> = more.groups.into_iter().collect();
            grants.add(&groups, &more.attributes);
        }
        Ok(Principal {
            owner: owner.clone(),
            standing: self.policy.standing(owner, &grants),
            grants,
        })
    }

    /// Whether `principal` may use `export`.
    pub fn allows(&self, principal: &Principal, export: &Export) -> bool {
        match &export.allow {
            None => true,
            Some(groups) => groups.iter().any(|g| principal.grants.groups.contains(g)),
        }
    }

    /// The exports `principal` may use, by name.
    pub fn datasets<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a Export> {
        self.catalog
            .exports()
            .filter(move |export| self.allows(principal, export))
    }

    /// The export named `name`, if `principal` may use it: one it may not is not there.
    pub fn dataset(&self, principal: &Principal, name: &str) -> Option<&Export> {
        self.catalog
            .get(name)
            .filter(|export| self.allows(principal, export))
    }

    /// The refusal for a dataset `principal` cannot use, whether it does not exist or is not
    /// the caller's: the same status, code and words, listing only what it may use.
    pub fn unknown_dataset(
        &self,
        principal: &Principal,
        name: &str,
        status: StatusCode,
    ) -> ApiError {
        let names: Vec<&str> = self.datasets(principal).map(|e| e.name.as_str()).collect();
        ApiError::new(
            status,
            "unknown_dataset",
            format!(
                "no dataset named '{name}' (available: {})",
                names.join(", ")
            ),
        )
        .with_field("dataset")
    }

    /// The parameters a statement of `export` runs with: those the request gave, none of which
    /// may be bound, and the caller's value of each bound one; all checked against their types.
    pub fn bind(
        &self,
        principal: &Principal,
        export: &Export,
        given: &Map<String, Value>,
    ) -> Result<BoundParams, ApiError> {
        Self::refuse_bound(export, given.keys())?;
        let mut params = given.clone();
        for param in &export.params {
            let Some(attribute) = &param.bound else {
                continue;
            };
            let values = principal
                .grants
                .attributes
                .get(attribute)
                .filter(|values| !values.is_empty())
                .ok_or_else(|| {
                    ApiError::forbidden(format!(
                        "dataset '{}' needs the caller's attribute '{attribute}', which this caller does not have",
                        export.name
                    ))
                })?;
            let value = value_from_items(&param.type_name(), values).ok_or_else(|| {
                ApiError::forbidden(format!(
                    "the caller's attribute '{attribute}' has {} values; parameter '{}' of dataset '{}' takes one",
                    values.len(),
                    param.name,
                    export.name
                ))
            })?;
            params.insert(param.name.clone(), value);
        }
        let literals = export.bind(&params).map_err(|e| self.refusal(export, e))?;
        Ok(BoundParams {
            values: params,
            literals,
        })
    }

    /// Refuses a request that names a bound parameter, in any letter case (a bound name must
    /// not reach the statement by another spelling): 400, naming the field as given.
    pub fn refuse_bound<'a>(
        export: &Export,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), ApiError> {
        for name in names {
            // `suppliers[0]`, ` suppliers`, `suppliers\0`, `Suppliers.x`: the name they spell.
            let spelled = name
                .split(['[', '.'])
                .next()
                .unwrap_or_default()
                .trim_matches(|c: char| c.is_whitespace() || c.is_control());
            if let Some(param) = export
                .params
                .iter()
                .find(|p| p.bound.is_some() && p.name.eq_ignore_ascii_case(spelled))
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bound_parameter",
                    format!(
                        "'{}' is bound to the caller: its value comes from the caller's access, never from the request; leave it out",
                        param.name
                    ),
                )
                .with_field(format!("params.{name}")));
            }
        }
        Ok(())
    }

    /// [`Access::bind`] for parameters written as text (a query string, a form's
    /// `params.<name>` fields), typed by the export's declaration.
    pub fn bind_text<'a>(
        &self,
        principal: &Principal,
        export: &Export,
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        empty: EmptyText,
    ) -> Result<BoundParams, ApiError> {
        let mut pairs: Vec<(Cow<str>, Cow<str>)> = pairs.into_iter().collect();
        let names: Vec<String> = pairs.iter().map(|(n, _)| n.to_string()).collect();
        // Before typing, and before an empty value is dropped: a bound name given empty or
        // twice is refused as bound, not as repeated or as absent.
        Self::refuse_bound(export, &names)?;
        if empty == EmptyText::Absent {
            pairs.retain(|(_, value)| !value.is_empty());
        }
        let given = export.params_from_text(pairs)?;
        self.bind(principal, export, &given)
    }

    /// A parameter error: the request's (400), or, for a bound value, the caller's access
    /// (403, since nothing the caller sends can mend it).
    fn refusal(&self, export: &Export, e: ParamError) -> ApiError {
        let bound = export.params.iter().find(|p| {
            p.bound.is_some()
                && e.field
                    .strip_prefix("params.")
                    .and_then(|rest| rest.strip_prefix(p.name.as_str()))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
        });
        match bound {
            Some(param) => {
                tracing::warn!(dataset = %export.name, param = %param.name, error = %e, "a caller's bound value does not fit its parameter");
                ApiError::forbidden(format!(
                    "the caller's attribute '{}' does not fit parameter '{}': {}",
                    param.bound.as_deref().unwrap_or_default(),
                    param.name,
                    e.message
                ))
            }
            None => ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.message)
                .with_field(e.field),
        }
    }

    /// How `GET /datasets` describes `export` to `principal`: a bound parameter with the
    /// caller's value, which no request may change.
    pub fn describe(&self, principal: &Principal, export: &Export) -> ExportDescription {
        let mut description = export.describe();
        for (param, described) in export.params.iter().zip(&mut description.params) {
            if let Some(attribute) = &param.bound {
                described.bound = Some(attribute.clone());
                described.value = principal
                    .grants
                    .attributes
                    .get(attribute)
                    .and_then(|values| value_from_items(&param.type_name(), values));
            }
        }
        description
    }
}

#[cfg(test)]
mod tests;
