//! The catalogue checked before it runs: every entry planned against the local warehouse with
//! sample values of its parameters' types, and held to what Redshift itself would refuse, so
//! an entry that cannot run is found at start (or by `redshift-export check` in a team's CI)
//! with its file, line and reason, not by its first caller. (Parameter names need no check
//! here: the catalogue's parser takes `[a-z][a-z0-9_]*` only, and a lookup names its Data API
//! parameters `p1`, `p2`…, within the API's `[0-9a-zA-Z_]+`.)

use crate::warehouse::unload::parse_unload;
use datafusion::execution::context::{SQLOptions, SessionContext};
use export_core::catalog::{Catalog, Export, MAX_STATEMENT_BYTES};
use export_core::domain::{Compression, Format};
use export_core::settings::UnloadSettings;
use std::fmt;

/// One entry that would not run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub export: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: export '{}': {}",
            self.file, self.line, self.export, self.reason
        )
    }
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The word a planner's message is about: a name it quotes (`` `PIVOT` ``, `'x'`, `"x"`).
fn named_word(message: &str) -> Option<&str> {
    for (open, close) in [('`', '`'), ('"', '"'), ('\'', '\'')] {
        if let Some((_, rest)) = message.split_once(open) {
            if let Some((word, _)) = rest.split_once(close) {
                let word = word.rsplit('.').next().unwrap_or(word);
                if !word.is_empty() && word.len() < 64 {
                    return Some(word);
                }
            }
        }
    }
    None
}

/// The UNLOAD the processor would send for `select`, as the local stack configures it.
fn unload_sql(export: &Export, select: &str) -> String {
    let mut settings = UnloadSettings::new(crate::stack::RESULTS_BUCKET, "check");
    settings.iam_role = crate::stack::UNLOAD_ROLE.into();
    settings.unload_sql(
        select,
        "00000000-0000-0000-0000-000000000000",
        0,
        Format::Csv,
        Compression::Gzip,
        export.parallel,
    )
}

/// Every problem of one entry.
pub async fn check_export(ctx: &SessionContext, export: &Export) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |line: usize, reason: String| {
        problems.push(Problem {
            file: export.file.clone(),
            line,
            export: export.name.clone(),
            reason,
        })
    };
    let select = export.sample_select();
    if let Err(e) = export_dialect::plan_typed(ctx, &select, read_only()).await {
        problem(export.line_of(named_word(&e)), e);
    }
    // Redshift's own rules for the UNLOAD that carries it: no LIMIT in its outer SELECT, one
    // SELECT, a statement of at most 16 MB.
    let unload = unload_sql(export, &select);
    if let Err(e) = parse_unload(&unload) {
        problem(
            export.body_line,
            format!("its UNLOAD would be refused: {e}"),
        );
    }
    let largest = unload_sql(export, &export.largest_select()).len();
    if largest > MAX_STATEMENT_BYTES {
        problem(
            export.body_line,
            format!(
                "with its parameters at their largest its UNLOAD is {largest} bytes, over \
                 Redshift's {MAX_STATEMENT_BYTES}-byte statement limit: lower max_length or \
                 max_items"
            ),
        );
    }
    if export.lookup.is_some() {
        let lookup = export.sample_lookup();
        if let Err(e) = export_dialect::plan_typed(ctx, &lookup.sql, read_only()).await {
            problem(export.line_of(named_word(&e)), format!("as a lookup: {e}"));
        }
    }
    problems
}

/// Every problem of every entry, in the catalogue's order.
pub async fn check_catalogue(ctx: &SessionContext, catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    for export in catalog.exports() {
        problems.extend(check_export(ctx, export).await);
    }
    problems
}

/// The problems as one error, for a stack that refuses to start with them.
pub fn refusal(problems: &[Problem]) -> anyhow::Error {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "{} catalogue {} cannot run on this warehouse:\n{}\n(`redshift-export check` checks a catalogue without starting anything)",
        problems.len(),
        if problems.len() == 1 { "entry" } else { "entries" },
        lines.join("\n")
    )
}
