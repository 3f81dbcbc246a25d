//! How `GET /datasets` shows the catalogue: each export's name, description and parameters
//! with their rules.

use super::params::{ParamType, Pattern, ScalarType};
use super::Export;
use serde::Serialize;
use serde_json::Value;

/// How the catalogue is described to callers (`GET /datasets`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportDescription<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub params: Vec<ParamDescription<'a>>,
    /// Present when it may also be looked up (`GET /lookups/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupDescription>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LookupDescription {
    pub max_rows: usize,
    pub cache_seconds: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ParamDescription<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub type_name: String,
    pub required: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    /// The type's limits: `max_length`, `pattern`, `min`, `max`, `values`, `max_items`.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub rules: serde_json::Map<String, Value>,
}

impl Export {
    pub fn describe(&self) -> ExportDescription<'_> {
        ExportDescription {
            name: &self.name,
            description: &self.description,
            params: self
                .params
                .iter()
                .map(|p| {
                    let mut rules = serde_json::Map::new();
                    let scalar = match &p.ty {
                        ParamType::Scalar(s) => s,
                        ParamType::List { item, max_items } => {
                            rules.insert("max_items".into(), (*max_items).into());
                            item
                        }
                    };
                    match scalar {
                        ScalarType::Text {
                            max_length,
                            pattern,
                        } => {
                            rules.insert("max_length".into(), (*max_length).into());
                            if let Some(Pattern(re)) = pattern {
                                rules.insert("pattern".into(), re.as_str().into());
                            }
                        }
                        ScalarType::Integer { min, max } => {
                            if let Some(min) = min {
                                rules.insert("min".into(), (*min).into());
                            }
                            if let Some(max) = max {
                                rules.insert("max".into(), (*max).into());
                            }
                        }
                        ScalarType::Enum(values) => {
                            rules.insert("values".into(), values.clone().into());
                        }
                        _ => {}
                    }
                    ParamDescription {
                        name: &p.name,
                        type_name: p.type_name(),
                        required: !p.optional,
                        description: &p.description,
                        rules,
                    }
                })
                .collect(),
            lookup: self.lookup.as_ref().map(|l| LookupDescription {
                max_rows: l.max_rows,
                cache_seconds: l.cache.as_secs(),
            }),
        }
    }
}
