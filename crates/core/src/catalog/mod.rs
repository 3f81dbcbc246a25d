//! The export catalogue: one `.sql` file per export, with a header declaring typed parameters
//! and a SELECT body that uses `:name` placeholders.
//!
//! ```sql
//! -- export: product_detail
//! -- description: One product by its SKU.
//! -- param: sku text max_length=20 -- the product's stock-keeping unit
//! -- param: ids list<integer> max_items=100 optional
//! SELECT * FROM rsdataapi.product_detail WHERE sku = :sku
//! ```
//!
//! Loading is here; reading a file's header is [`header`], the parameter types and the
//! checking of values against them [`params`], putting the values into the SELECT
//! [`template`], and how `GET /datasets` shows an export [`describe`].

mod describe;
mod header;
mod lookup;
mod params;
mod sample;
mod template;
mod text;

pub use export_api::{ExportDescription, LookupDescription, ParamDescription};
pub use header::valid_group;
pub use lookup::{
    BoundSelect, LookupPolicy, SqlParameter, DEFAULT_CACHE, DEFAULT_LOOKUP_ROWS, MAX_LOOKUP_ROWS,
};
pub use params::{
    Param, ParamError, ParamType, Pattern, ScalarType, DEFAULT_MAX_ITEMS, MAX_TEXT_LENGTH,
};
pub use sample::MAX_STATEMENT_BYTES;
pub use text::{value_from_items, value_from_text};

use std::collections::BTreeMap;
use std::path::Path;

/// One export: a name, what it is, its parameters and its SELECT template.
#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub description: String,
    pub params: Vec<Param>,
    pub template: String,
    /// Whether the UNLOAD may write in parallel, one or more files per slice, each in the
    /// SELECT's order only within itself; when false it runs `PARALLEL OFF`, serially and
    /// "sorted absolutely according to the ORDER BY clause" (UNLOAD, Amazon Redshift Database
    /// Developer Guide). From the header `-- parallel: on|off`; by default off exactly when
    /// the SELECT ends in an ORDER BY.
    pub parallel: bool,
    /// Whether, and how, it may also be looked up at once (`-- lookup:`); None: exports only.
    pub lookup: Option<LookupPolicy>,
    /// The groups of callers who may use it (`-- allow: internal, suppliers`); None (no such
    /// line, or `*`): every caller allowed to call the API. See [`crate::access`].
    pub allow: Option<Vec<String>>,
    /// The template cut at its placeholders once, at load time: a lookup substitutes its
    /// values without tokenizing the template again.
    segments: Vec<template::Segment>,
    /// Whether the SELECT has a LIMIT or FETCH of its own (known from the load-time parse;
    /// values never change the structure), so a lookup's limit wraps it rather than follows.
    own_limit: bool,
    /// The line of its file (1-based) the SELECT begins on, for messages about it.
    pub body_line: usize,
    /// The file it was read from (empty for one parsed alone).
    pub file: String,
}

/// All exports, by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    exports: BTreeMap<String, Export>,
}

/// Why a catalogue file was refused at load time.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogError {
    pub file: String,
    pub message: String,
}

impl Catalog {
    /// Loads every `*.sql` file in `dir`, refusing the whole catalogue if any file is invalid,
    /// so a broken export is found at start-up rather than by a caller.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let err = |message: String| CatalogError {
            file: dir.display().to_string(),
            message,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("cannot read the catalogue directory: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| CatalogError {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((path.display().to_string(), text));
        }
        Catalog::from_sources(sources.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// Builds a catalogue from `(file name, text)` pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut exports = BTreeMap::new();
        for (file, text) in sources {
            let mut export = Export::parse(text).map_err(|message| CatalogError {
                file: file.to_owned(),
                message,
            })?;
            export.file = file.to_owned();
            if exports.contains_key(&export.name) {
                return Err(CatalogError {
                    file: file.to_owned(),
                    message: format!("export '{}' is declared twice", export.name),
                });
            }
            exports.insert(export.name.clone(), export);
        }
        Ok(Catalog { exports })
    }

    pub fn get(&self, name: &str) -> Option<&Export> {
        self.exports.get(name)
    }

    pub fn exports(&self) -> impl Iterator<Item = &Export> {
        self.exports.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.exports.keys().map(String::as_str).collect()
    }
}

/// An export every module's tests read: a text and an optional date parameter, and a string
/// literal in the template that looks like a placeholder but is not one.
#[cfg(test)]
pub(crate) const PRODUCT: &str = "-- export: product_detail
-- description: One product by SKU.
-- param: sku text max_length=20 -- the SKU
-- param: since date optional
SELECT sku, product_name FROM rsdataapi.product_detail
WHERE sku = :sku AND (:since IS NULL OR created_on >= :since) AND note <> ':sku'::varchar;
";

/// Request parameters from a JSON object.
#[cfg(test)]
pub(crate) fn params(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().expect("an object").clone()
}
