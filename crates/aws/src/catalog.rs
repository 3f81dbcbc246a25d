//! The export catalogue, compiled in from `sql/catalog/` (see `build.rs`).

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
