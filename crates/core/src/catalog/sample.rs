//! An export's SELECT with sample values, for checking an entry before anyone calls it: once
//! with one ordinary value of each parameter's type (does it plan?), once with every
//! parameter at its largest (does its UNLOAD stay within Redshift's statement size?).

use super::params::{ParamType, ScalarType};
use super::Export;
use crate::sql::Literal;
use std::collections::BTreeMap;

/// Redshift's largest SQL statement: 16 MB ("Amazon Redshift SQL", Amazon Redshift Database
/// Developer Guide).
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024 * 1024;

fn sample(ty: &ScalarType, largest: bool) -> Literal {
    match ty {
        ScalarType::Text { max_length, .. } => Literal::Text(if largest {
            // Quotes double at each literal level: the costliest character there is.
            "'".repeat(*max_length)
        } else {
            "sample".into()
        }),
        ScalarType::Integer { min, max } => {
            let v = if largest { max.unwrap_or(i64::MIN) } else { 1 };
            Literal::Integer(v.clamp(min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX)))
        }
        ScalarType::Decimal { precision, scale } => Literal::Decimal(if largest {
            let whole = "9".repeat((*precision - *scale).max(1) as usize);
            if *scale == 0 {
                whole
            } else {
                format!("{whole}.{}", "9".repeat(*scale as usize))
            }
        } else {
            "1".into()
        }),
        ScalarType::Date => Literal::Date("2024-01-31".into()),
        ScalarType::Timestamp => Literal::Timestamp("2024-01-31 12:00:00.000000".into()),
        ScalarType::Boolean => Literal::Boolean(true),
        ScalarType::Enum(values) => Literal::Text(if largest {
            values
                .iter()
                .max_by_key(|v| v.len())
                .cloned()
                .unwrap_or_default()
        } else {
            values.first().cloned().unwrap_or_default()
        }),
    }
}

impl Export {
    fn sample_values(&self, largest: bool) -> BTreeMap<String, Vec<Literal>> {
        self.params
            .iter()
            .map(|p| {
                let values = match &p.ty {
                    ParamType::Scalar(ty) => vec![sample(ty, largest)],
                    ParamType::List { item, max_items } => {
                        vec![sample(item, largest); if largest { *max_items } else { 2 }]
                    }
                };
                (p.name.clone(), values)
            })
            .collect()
    }

    /// The SELECT as an export runs it, each parameter given an ordinary value of its type.
    pub fn sample_select(&self) -> String {
        self.wrapped(
            self.substitute(&self.sample_values(false))
                .expect("every placeholder is declared"),
        )
    }

    /// The SELECT with every parameter at its largest: text at its longest, of quotes, lists
    /// at their most items.
    pub fn largest_select(&self) -> String {
        self.wrapped(
            self.substitute(&self.sample_values(true))
                .expect("every placeholder is declared"),
        )
    }

    /// The lookup's SELECT with an ordinary value of each parameter's type.
    pub fn sample_lookup(&self) -> super::BoundSelect {
        self.lookup_select(&self.sample_values(false), 1)
            .expect("every placeholder is declared")
    }

    /// The line of the entry's file most likely meant by a message naming `word` (a function,
    /// a column), else the line its SELECT begins on.
    pub fn line_of(&self, word: Option<&str>) -> usize {
        let found = word.and_then(|word| {
            let word = word.to_ascii_lowercase();
            self.template
                .lines()
                .position(|line| line.to_ascii_lowercase().contains(&word))
        });
        self.body_line + found.unwrap_or(0)
    }
}
