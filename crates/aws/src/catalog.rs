//! The export catalogue and its access policy, compiled in from `sql/catalog/` and
//! `sql/access.toml` (see `build.rs`).

use export_core::access::AccessPolicy;
use export_core::catalog::{Catalog, CatalogError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/catalog.rs"));
}

/// The `(file name, text)` of every catalogue file the functions were built with.
pub fn sources() -> &'static [(&'static str, &'static str)] {
    embedded::EMBEDDED
}

pub fn load() -> Result<Catalog, CatalogError> {
    Catalog::from_sources(sources().iter().copied())
}

/// The access policy the functions were built with (the empty one if there was none).
pub fn access_policy() -> Result<AccessPolicy, String> {
    match embedded::ACCESS {
        Some(text) => AccessPolicy::parse(text).map_err(|e| format!("access.toml: {e}")),
        None => Ok(AccessPolicy::default()),
    }
}
