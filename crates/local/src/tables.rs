//! The local warehouse's tables: the demo schema from `sql/schema.sql`, and TPC-H `customer`,
//! `orders` and `lineitem` generated deterministically by `tpchgen` and kept as Parquet under
//! the data directory, so only the first start pays for generating them.

use anyhow::Context;
use datafusion::arrow::record_batch::RecordBatchReader;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::ParquetReadOptions;
use std::path::{Path, PathBuf};

/// A table whose Parquet file is at most this large is held in memory once loaded, as a
/// warehouse keeps a small, hot dimension table cached: a point lookup then filters rows in
/// memory instead of decoding the file again. Larger tables are scanned from their files.
pub const IN_MEMORY_TABLE_BYTES: u64 = 16 * 1024 * 1024;

/// The customer table always has at least this scale (15,000 rows), whatever `--scale` says,
/// so the `customers` export has a realistic population to pick from.
pub const MIN_CUSTOMER_SCALE: f64 = 0.1;

/// Runs each statement of the demo schema file.
pub async fn load_schema(ctx: &SessionContext, file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    load_schema_text(ctx, &file.display().to_string(), &text).await
}

/// Runs each statement of a schema file's text (`name` says which file in errors).
pub async fn load_schema_text(ctx: &SessionContext, name: &str, text: &str) -> anyhow::Result<()> {
    // Split on `;` tokens, keeping each statement's text exactly as written (literals included).
    let tokens =
        sqlparser::tokenizer::Tokenizer::new(&sqlparser::dialect::RedshiftSqlDialect {}, text)
            .with_unescape(false)
            .tokenize()
            .with_context(|| format!("tokenizing {name}"))?;
    let mut statements = vec![String::new()];
    for token in tokens {
        match token {
            sqlparser::tokenizer::Token::SemiColon => statements.push(String::new()),
            sqlparser::tokenizer::Token::Whitespace(
                sqlparser::tokenizer::Whitespace::SingleLineComment { .. },
            ) => {}
            other => statements
                .last_mut()
                .expect("never empty")
                .push_str(&other.to_string()),
        }
    }
    for sql in statements
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        // Redshift's DDL, as a team's own schema file would be written.
        export_dialect::run(ctx, sql, datafusion::execution::context::SQLOptions::new())
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{name}: {sql}"))?;
    }
    Ok(())
}

/// A team's own table, `schema.name=path` on the command line: a Parquet file, or a CSV file
/// whose first line names the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct TableFile {
    pub schema: Option<String>,
    pub name: String,
    pub path: PathBuf,
}

impl std::str::FromStr for TableFile {
    type Err = String;

    fn from_str(spec: &str) -> Result<TableFile, String> {
        let (qualified, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}' is not schema.name=path"))?;
        let (schema, name) = match qualified.split_once('.') {
            Some((schema, name)) => (Some(schema.to_owned()), name.to_owned()),
            None => (None, qualified.to_owned()),
        };
        let identifier = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !identifier(&name) || schema.as_deref().is_some_and(|s| !identifier(s)) {
            return Err(format!(
                "'{qualified}': a table is named schema.name, letters, digits and _"
            ));
        }
        let path = PathBuf::from(path);
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet" | "csv") => {}
            _ => {
                return Err(format!(
                    "{}: a table file is .parquet or .csv (with a header line)",
                    path.display()
                ))
            }
        }
        Ok(TableFile { schema, name, path })
    }
}

impl TableFile {
    /// `schema.name`, or `name`.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Registers a team's table beside the demo's, read from its file at each statement.
pub async fn load_table_file(ctx: &SessionContext, table: &TableFile) -> anyhow::Result<()> {
    anyhow::ensure!(
        table.path.is_file(),
        "--table {}: no file at {}",
        table.qualified(),
        table.path.display()
    );
    if let Some(schema) = &table.schema {
        ctx.sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?
            .collect()
            .await?;
    }
    let path = table.path.to_string_lossy();
    let registered = if table.path.extension().is_some_and(|e| e == "csv") {
        ctx.register_csv(
            table.qualified(),
            path.as_ref(),
            datafusion::prelude::CsvReadOptions::new().has_header(true),
        )
        .await
    } else {
        ctx.register_parquet(
            table.qualified(),
            path.as_ref(),
            ParquetReadOptions::default(),
        )
        .await
    };
    registered.with_context(|| format!("--table {}={}", table.qualified(), path))
}

/// Registers the TPC-H tables with no rows: enough to plan statements against them, without
/// generating their data (`check`).
pub async fn register_tpch_empty(ctx: &SessionContext) -> anyhow::Result<()> {
    use tpchgen::generators::{CustomerGenerator, LineItemGenerator, OrderGenerator};
    use tpchgen_arrow::{CustomerArrow, LineItemArrow, OrderArrow};
    ctx.sql("CREATE SCHEMA IF NOT EXISTS tpch")
        .await?
        .collect()
        .await?;
    let schemas = [
        (
            "customer",
            CustomerArrow::new(CustomerGenerator::new(0.001, 1, 1)).schema(),
        ),
        (
            "orders",
            OrderArrow::new(OrderGenerator::new(0.001, 1, 1)).schema(),
        ),
        (
            "lineitem",
            LineItemArrow::new(LineItemGenerator::new(0.001, 1, 1)).schema(),
        ),
    ];
    for (table, schema) in schemas {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(format!("tpch.{table}").as_str(), std::sync::Arc::new(empty))?;
    }
    Ok(())
}

fn scale_dir(dir: &Path, scale: f64) -> PathBuf {
    dir.join(format!("tpch-sf{scale}"))
}

/// Writes one generated table to Parquet, atomically (a half-written file is never used).
fn write_parquet(path: &Path, reader: impl RecordBatchReader) -> anyhow::Result<()> {
    let staging = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&staging)?;
    let mut writer = ArrowWriter::try_new(file, reader.schema(), None)?;
    for batch in reader {
        writer.write(&batch?)?;
    }
    writer.close()?;
    std::fs::rename(&staging, path)?;
    Ok(())
}

/// Makes sure the TPC-H tables exist at `scale` under `dir`, then registers them as `tpch.*`.
pub async fn load_tpch(ctx: &SessionContext, dir: &Path, scale: f64) -> anyhow::Result<()> {
    use tpchgen::generators::{CustomerGenerator, LineItemGenerator, OrderGenerator};
    use tpchgen_arrow::{CustomerArrow, LineItemArrow, OrderArrow};

    anyhow::ensure!(
        scale > 0.0 && scale <= 100.0,
        "scale must be above 0 and at most 100"
    );
    let customer_scale = scale.max(MIN_CUSTOMER_SCALE);
    let tables: [(&str, f64); 3] = [
        ("customer", customer_scale),
        ("orders", scale),
        ("lineitem", scale),
    ];
    let mut paths = Vec::new();
    for (table, table_scale) in tables {
        let folder = scale_dir(dir, table_scale);
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("{table}.parquet"));
        if !path.exists() {
            let started = std::time::Instant::now();
            let generate = {
                let path = path.clone();
                move || match table {
                    "customer" => write_parquet(
                        &path,
                        CustomerArrow::new(CustomerGenerator::new(table_scale, 1, 1)),
                    ),
                    "orders" => write_parquet(
                        &path,
                        OrderArrow::new(OrderGenerator::new(table_scale, 1, 1)),
                    ),
                    _ => write_parquet(
                        &path,
                        LineItemArrow::new(LineItemGenerator::new(table_scale, 1, 1)),
                    ),
                }
            };
            tokio::task::spawn_blocking(generate).await??;
            tracing::info!(
                table,
                scale = table_scale,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "generated TPC-H table"
            );
        }
        paths.push((table, path));
    }
    ctx.sql("CREATE SCHEMA IF NOT EXISTS tpch")
        .await?
        .collect()
        .await?;
    for (table, path) in paths {
        let name = format!("tpch.{table}");
        let file = path.to_string_lossy();
        if std::fs::metadata(&path)?.len() <= IN_MEMORY_TABLE_BYTES {
            let frame = ctx
                .read_parquet(file.as_ref(), ParquetReadOptions::default())
                .await?;
            let schema = frame.schema().as_arrow().clone();
            let batches = frame.collect().await?;
            let table = MemTable::try_new(std::sync::Arc::new(schema), vec![batches])?;
            ctx.register_table(name.as_str(), std::sync::Arc::new(table))?;
        } else {
            ctx.register_parquet(name.as_str(), file.as_ref(), ParquetReadOptions::default())
                .await?;
        }
    }
    Ok(())
}
