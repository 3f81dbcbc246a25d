//! Where the local stack's catalogue, schema and access policy come from: the demo's, built
//! into the binary so the CLI runs from any directory, or a team's own directory.

use crate::warehouse::redshift_session;
use anyhow::Context;
use datafusion::execution::context::SessionContext;
use export_core::access::AccessPolicy;
use export_core::catalog::{Catalog, CatalogError};
use std::path::{Path, PathBuf};

/// The demo's catalogue, one `(file name, text)` per entry, as `sql/catalog/` holds it.
const DEMO_CATALOGUE: &[(&str, &str)] = &[
    (
        "sql/catalog/customers.sql",
        include_str!("../../../sql/catalog/customers.sql"),
    ),
    (
        "sql/catalog/product_detail.sql",
        include_str!("../../../sql/catalog/product_detail.sql"),
    ),
    (
        "sql/catalog/shipped_lineitems.sql",
        include_str!("../../../sql/catalog/shipped_lineitems.sql"),
    ),
    (
        "sql/catalog/supplier_shipments.sql",
        include_str!("../../../sql/catalog/supplier_shipments.sql"),
    ),
];
const DEMO_SCHEMA: &str = include_str!("../../../sql/schema.sql");
const DEMO_ACCESS: &str = include_str!("../../../sql/access.toml");

/// The catalogue (`catalog/*.sql`), the schema (`schema.sql`, optional in a directory) and the
/// access policy (`access.toml`, optional) the stack serves.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlSource {
    /// The demo's, built in.
    Demo,
    /// A directory laid out as `sql/` is.
    Dir(PathBuf),
}

impl SqlSource {
    /// `--sql-dir` if given, else the demo's.
    pub fn from_option(dir: Option<&Path>) -> SqlSource {
        match dir {
            Some(dir) => SqlSource::Dir(dir.to_owned()),
            None => SqlSource::Demo,
        }
    }

    /// What a person is told at start: which catalogue is in use.
    pub fn describe(&self) -> String {
        match self {
            SqlSource::Demo => {
                "the demo catalogue built into this binary (--sql-dir DIR serves your own)".into()
            }
            SqlSource::Dir(dir) => format!("{}", dir.join("catalog").display()),
        }
    }

    pub fn catalog(&self) -> Result<Catalog, CatalogError> {
        match self {
            SqlSource::Demo => Catalog::from_sources(DEMO_CATALOGUE.iter().copied()),
            SqlSource::Dir(dir) => Catalog::load_dir(&dir.join("catalog")),
        }
    }

    pub fn policy(&self) -> Result<AccessPolicy, String> {
        match self {
            SqlSource::Demo => {
                AccessPolicy::parse(DEMO_ACCESS).map_err(|e| format!("sql/access.toml: {e}"))
            }
            SqlSource::Dir(dir) => AccessPolicy::load_file(&dir.join("access.toml")),
        }
    }

    /// The schema file's name and text; a directory without one has none.
    pub fn schema(&self) -> anyhow::Result<Option<(String, String)>> {
        match self {
            SqlSource::Demo => Ok(Some(("sql/schema.sql".into(), DEMO_SCHEMA.into()))),
            SqlSource::Dir(dir) => {
                let path = dir.join("schema.sql");
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some((path.display().to_string(), text))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
        }
    }

    /// A warehouse session holding the schema's tables.
    pub async fn session(&self) -> anyhow::Result<SessionContext> {
        let session = redshift_session()?;
        if let Some((name, text)) = self.schema()? {
            crate::tables::load_schema_text(&session, &name, &text).await?;
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry added to `sql/catalog/` must be added to the built-in list too.
    #[test]
    fn the_built_in_catalogue_is_every_file_of_sql_catalog() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/catalog");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .map(|name| format!("sql/catalog/{name}"))
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = DEMO_CATALOGUE.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(built_in, on_disk);
        for (file, text) in DEMO_CATALOGUE {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(file);
            assert_eq!(*text, std::fs::read_to_string(path).unwrap(), "{file}");
        }
        assert_eq!(
            SqlSource::Demo.catalog().unwrap().exports().count(),
            DEMO_CATALOGUE.len()
        );
    }
}
