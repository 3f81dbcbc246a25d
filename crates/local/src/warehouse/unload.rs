//! Reads an `UNLOAD ('…') TO 's3://…' …` statement exactly as Redshift would receive it: both
//! quoting levels undone by the Redshift dialect's own lexer, then every option checked.

use export_core::domain::{Compression, Format, ObjectRef};
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, FileSizeUnit, IamRoleKind, Statement, Value,
};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

/// Redshift's smallest and largest MAXFILESIZE.
const MIN_FILE_SIZE: u64 = 5 * 1024 * 1024;
const MAX_FILE_SIZE: u64 = 6200 * 1024 * 1024;
/// Redshift's default MAXFILESIZE.
const DEFAULT_FILE_SIZE: u64 = MAX_FILE_SIZE;

#[derive(Clone, Debug, PartialEq)]
pub struct UnloadPlan {
    /// The SELECT, with its own literals still quoted once.
    pub query: String,
    /// Prefix for the part files and the manifest.
    pub target: ObjectRef,
    pub format: Format,
    pub compression: Compression,
    pub header: bool,
    /// `Some(verbose)` when a manifest was asked for.
    pub manifest: Option<bool>,
    pub max_file_size: u64,
    pub allow_overwrite: bool,
    /// `PARALLEL ON` (Redshift's default) or `OFF`.
    pub parallel: bool,
    pub iam_role: Option<String>,
}

fn error(message: impl std::fmt::Display) -> String {
    format!("ERROR: {message}")
}

/// Parses UNLOAD text into a plan, or fails with Redshift-like error text.
pub fn parse_unload(sql: &str) -> Result<UnloadPlan, String> {
    let statements = Parser::parse_sql(&RedshiftSqlDialect {}, sql)
        .map_err(|e| error(format!("syntax error: {e}")))?;
    let [Statement::Unload {
        query,
        query_text,
        to,
        auth,
        with,
        options,
    }] = <[Statement; 1]>::try_from(statements).map_err(|v| {
        error(format!(
            "expected one UNLOAD statement, found {} statements",
            v.len()
        ))
    })?
    else {
        return Err(error("only UNLOAD statements are accepted here"));
    };
    if !with.is_empty() {
        return Err(error("UNLOAD does not take WITH options"));
    }
    let query = match (query_text, query) {
        (Some(text), _) => text,
        (None, Some(query)) => query.to_string(),
        (None, None) => return Err(error("UNLOAD has no query")),
    };
    // Redshift unloads any SELECT but one with a LIMIT in its outer SELECT ("Unloading data to
    // Amazon S3", Amazon Redshift Database Developer Guide); a LIMIT nested in a subquery is
    // how its usage notes say to limit the rows ("UNLOAD", Usage notes).
    // Read as the checks read Redshift's text (`APPROXIMATE COUNT`, `EXTRACT(ms FROM …)`).
    let readable = export_core::sql::parser_text(&query)
        .map_err(|e| error(format!("syntax error in the UNLOAD's query: {e}")))?;
    let select = Parser::new(&RedshiftSqlDialect {})
        .try_with_sql(&readable)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|e| error(format!("syntax error in the UNLOAD's query: {e}")))?;
    if select.limit_clause.is_some() {
        return Err(error(
            "LIMIT is not supported in the outer SELECT of an UNLOAD; nest it in a subquery",
        ));
    }
    let target = ObjectRef::parse_s3_url(&to.value).ok_or_else(|| {
        error(format!(
            "invalid S3 location '{}': it must be s3://bucket/prefix",
            to.value
        ))
    })?;
    let mut plan = UnloadPlan {
        query,
        target,
        format: Format::Csv,
        compression: Compression::None,
        header: false,
        manifest: None,
        max_file_size: DEFAULT_FILE_SIZE,
        allow_overwrite: false,
        parallel: true,
        iam_role: auth.map(|kind| match kind {
            IamRoleKind::Default => "default".to_owned(),
            IamRoleKind::Arn(arn) => arn,
        }),
    };
    for option in options {
        match option {
            CopyLegacyOption::Csv(csv_options) => {
                if !csv_options.is_empty()
                    && !csv_options
                        .iter()
                        .all(|o| matches!(o, CopyLegacyCsvOption::Header))
                {
                    return Err(error(
                        "CSV sub-options other than HEADER are not supported here",
                    ));
                }
                plan.header |= !csv_options.is_empty();
                plan.format = Format::Csv;
            }
            CopyLegacyOption::Parquet => plan.format = Format::Parquet,
            CopyLegacyOption::Json(_) => {
                plan.format = Format::Json;
            }
            CopyLegacyOption::Header => plan.header = true,
            CopyLegacyOption::Gzip => plan.compression = Compression::Gzip,
            CopyLegacyOption::Zstd => plan.compression = Compression::Zstd,
            CopyLegacyOption::Manifest { verbose } => plan.manifest = Some(verbose),
            CopyLegacyOption::AllowOverwrite => plan.allow_overwrite = true,
            CopyLegacyOption::Parallel(on) => plan.parallel = on.unwrap_or(true),
            CopyLegacyOption::IamRole(kind) => {
                plan.iam_role = Some(match kind {
                    IamRoleKind::Default => "default".to_owned(),
                    IamRoleKind::Arn(arn) => arn,
                })
            }
            CopyLegacyOption::MaxFileSize(size) => {
                let number = match &size.size.value {
                    Value::Number(n, _) => n.to_string(),
                    other => {
                        return Err(error(format!("MAXFILESIZE must be a number, not {other}")))
                    }
                };
                let value: f64 = number
                    .parse()
                    .map_err(|_| error(format!("MAXFILESIZE '{number}' is not a number")))?;
                let unit = match size.unit {
                    Some(FileSizeUnit::GB) => 1024.0 * 1024.0 * 1024.0,
                    _ => 1024.0 * 1024.0,
                };
                let bytes = (value * unit) as u64;
                if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&bytes) {
                    return Err(error("MAXFILESIZE must be between 5 MB and 6.2 GB"));
                }
                plan.max_file_size = bytes;
            }
            other => {
                return Err(error(format!(
                    "UNLOAD option {other} is not supported here"
                )))
            }
        }
    }
    if plan.format == Format::Parquet && (plan.header || plan.compression != Compression::None) {
        return Err(error(
            "PARQUET cannot be combined with HEADER, GZIP or ZSTD",
        ));
    }
    if plan.format == Format::Json && plan.header {
        return Err(error("HEADER is only valid with CSV or delimited text"));
    }
    if plan.iam_role.is_none() {
        return Err(error(
            "UNLOAD needs IAM_ROLE (or CREDENTIALS) to write to S3",
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::sql::{render_unload, UnloadOptions};

    fn options(format: Format, compression: Compression) -> UnloadOptions {
        UnloadOptions {
            target: ObjectRef::new("results", "exports/r1/"),
            iam_role: "arn:aws:iam::000000000000:role/unload".into(),
            format,
            compression,
            max_file_size_mb: 16,
            allow_overwrite: true,
            parallel: format != Format::Json,
        }
    }

    #[test]
    fn reads_back_what_the_processor_renders() {
        let select = "SELECT 'it''s \\\\ here' AS x";
        for (format, compression) in [
            (Format::Csv, Compression::Gzip),
            (Format::Parquet, Compression::None),
            (Format::Json, Compression::Zstd),
        ] {
            let plan = parse_unload(&render_unload(select, &options(format, compression))).unwrap();
            assert_eq!(plan.query, select);
            assert_eq!(plan.target, ObjectRef::new("results", "exports/r1/"));
            assert_eq!((plan.format, plan.compression), (format, compression));
            assert_eq!(plan.header, format == Format::Csv);
            assert_eq!(plan.manifest, Some(true));
            assert_eq!(plan.max_file_size, 16 * 1024 * 1024);
            assert!(plan.allow_overwrite);
            assert_eq!(
                plan.parallel,
                format != Format::Json,
                "PARALLEL OFF read back"
            );
            assert_eq!(
                plan.iam_role.as_deref(),
                Some("arn:aws:iam::000000000000:role/unload")
            );
        }
    }

    /// A catalogue SELECT with a LIMIT of its own is refused as the outer SELECT of an UNLOAD,
    /// so the catalogue renders it nested; the nested one runs.
    #[test]
    fn an_export_with_a_limit_of_its_own_unloads_nested() {
        let export = export_core::catalog::Export::parse(
            "-- export: top_customers\n-- param: n integer\n\
             SELECT c_custkey FROM tpch.customer WHERE c_nationkey = :n ORDER BY c_acctbal DESC LIMIT 10",
        )
        .unwrap();
        let params = serde_json::json!({"n": 7});
        let select = export.render(params.as_object().unwrap()).unwrap();
        let unload = render_unload(&select, &options(Format::Csv, Compression::Gzip));
        let plan = parse_unload(&unload).unwrap();
        assert!(
            plan.query.starts_with("SELECT * FROM (\n"),
            "{}",
            plan.query
        );
        // Unloaded as written, the same SELECT is refused.
        let direct = render_unload(
            export.template.replace(":n", "7").as_str(),
            &options(Format::Csv, Compression::Gzip),
        );
        let refused = parse_unload(&direct).unwrap_err();
        assert!(refused.contains("outer SELECT"), "{refused}");
    }

    #[test]
    fn malformed_statements_fail_like_redshift() {
        for (sql, needle) in [
            ("SELECT 1", "only UNLOAD"),
            (
                "UNLOAD ('select 1') TO 'http://x/y' IAM_ROLE default",
                "invalid S3 location",
            ),
            (
                "UNLOAD ('select 1') TO 's3://b/p' IAM_ROLE default MAXFILESIZE 1 MB",
                "between 5 MB",
            ),
            (
                "UNLOAD ('select 1') TO 's3://b/p' IAM_ROLE default FORMAT PARQUET GZIP",
                "PARQUET cannot",
            ),
            ("UNLOAD ('select 1') TO 's3://b/p'", "needs IAM_ROLE"),
            (
                "UNLOAD ('select 1' TO 's3://b/p' IAM_ROLE default",
                "syntax error",
            ),
            (
                "UNLOAD ('select a from t order by a limit 10') TO 's3://b/p' IAM_ROLE default",
                "LIMIT is not supported in the outer SELECT",
            ),
        ] {
            let e = parse_unload(sql).unwrap_err();
            assert!(e.starts_with("ERROR: ") && e.contains(needle), "{sql}: {e}");
        }
        // A LIMIT in a subquery is how Redshift's usage notes limit an UNLOAD's rows.
        let nested = "UNLOAD ('select * from (select a from t order by a limit 10) as top') \
                      TO 's3://b/p' IAM_ROLE default";
        assert!(parse_unload(nested).is_ok());
    }
}
