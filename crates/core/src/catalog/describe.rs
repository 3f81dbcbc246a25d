//! How `GET /datasets` shows the catalogue: each export's name, description and parameters
//! with their rules.

use super::params::{ParamType, Pattern, ScalarType};
use super::Export;
use export_api::{ExportDescription, LookupDescription, ParamDescription};

impl Export {
    pub fn describe(&self) -> ExportDescription {
        ExportDescription {
            name: self.name.clone(),
            description: self.description.clone(),
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
                        name: p.name.clone(),
                        type_name: p.type_name(),
                        required: !p.optional,
                        description: p.description.clone(),
                        rules,
                        bound: p.bound.clone(),
                        value: None,
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
