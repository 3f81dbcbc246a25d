//! The conformance corpus: examples from Redshift's SQL reference, each the statement, the
//! small table it reads and the result the page documents (`corpus/*.toml`), run on the local
//! warehouse's dialect. Every case either answers as documented or is named in
//! `corpus/differences.toml` with the reason; the test fails when a case outside that list
//! answers otherwise, when a listed case starts to pass (so the list stays true), or when
//! fewer than 95% of the cases pass.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::execution::context::SQLOptions;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    doc: String,
    #[serde(default)]
    setup: Vec<String>,
    sql: String,
    #[serde(default)]
    ordered: bool,
    expect: Vec<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Differences {
    /// Case name → why the local warehouse answers otherwise.
    differences: BTreeMap<String, String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// A value as Redshift's clients print it: dates `2009-08-28`, timestamps without a `T` and
/// with a fraction only when there is one, NULL as `NULL`.
fn render(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    match array.data_type() {
        DataType::Timestamp(_, None) => {
            let micros = datafusion::arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )
            .expect("a timestamp");
            let value = datafusion::common::ScalarValue::try_from_array(&micros, row).unwrap();
            let datafusion::common::ScalarValue::TimestampMicrosecond(Some(us), _) = value else {
                unreachable!("cast to microseconds")
            };
            let t = chrono::DateTime::from_timestamp_micros(us)
                .unwrap()
                .naive_utc();
            t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
        }
        _ => array_value_to_string(array, row).expect("a value"),
    }
}

/// What kind of value a column holds, which says how it is compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Text,
    Number,
    Time,
    Truth,
}

fn kind_of(data_type: &DataType) -> Kind {
    match data_type {
        DataType::Boolean => Kind::Truth,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Time64(_) => {
            Kind::Time
        }
        t if t.is_numeric() => Kind::Number,
        _ => Kind::Text,
    }
}

/// Equal as documented: text exactly; numbers to the printed precision; timestamps but for
/// trailing zeros of a fraction; truth values however printed.
fn same(expected: &str, actual: &str, kind: Kind) -> bool {
    if expected == actual {
        return true;
    }
    if kind == Kind::Text {
        return false;
    }
    if let (Kind::Number, Ok(e), Ok(a)) = (kind, expected.parse::<f64>(), actual.parse::<f64>()) {
        let decimals = expected.split_once('.').map_or(0, |(_, f)| {
            f.trim_end_matches(|c: char| !c.is_ascii_digit()).len()
        });
        let tolerance = if decimals == 0 {
            1e-9
        } else {
            0.5 * 10f64.powi(-(decimals as i32)) + 1e-12
        };
        return (e - a).abs() <= tolerance.max(e.abs() * 1e-15);
    }
    let fraction_trimmed = |s: &str| -> String {
        match s.split_once('.') {
            Some((head, frac)) if head.len() >= 8 && frac.chars().all(|c| c.is_ascii_digit()) => {
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    head.to_owned()
                } else {
                    format!("{head}.{frac}")
                }
            }
            _ => s.to_owned(),
        }
    };
    if fraction_trimmed(expected) == fraction_trimmed(actual) {
        return true;
    }
    let truth = |s: &str| match s {
        "t" | "true" => Some(true),
        "f" | "false" => Some(false),
        _ => None,
    };
    truth(expected).is_some() && truth(expected) == truth(actual)
}

fn rows_match(case: &Case, actual: &[Vec<(String, Kind)>]) -> bool {
    let row_same = |e: &Vec<String>, a: &Vec<(String, Kind)>| {
        e.len() == a.len() && e.iter().zip(a).all(|(e, (a, kind))| same(e, a, *kind))
    };
    if actual.len() != case.expect.len() {
        return false;
    }
    if case.ordered {
        return case.expect.iter().zip(actual).all(|(e, a)| row_same(e, a));
    }
    // As a multiset: each expected row takes one actual row it matches.
    let mut left: Vec<&Vec<(String, Kind)>> = actual.iter().collect();
    case.expect
        .iter()
        .all(|e| match left.iter().position(|a| row_same(e, a)) {
            Some(i) => {
                left.swap_remove(i);
                true
            }
            None => false,
        })
}

/// The case's answer, or why there is none.
async fn run(case: &Case) -> Result<Vec<Vec<(String, Kind)>>, String> {
    let ctx = export_dialect::session();
    for statement in &case.setup {
        export_dialect::run(&ctx, statement, SQLOptions::new())
            .await
            .map_err(|e| format!("setup `{statement}`: {e}"))?;
    }
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let batches = export_dialect::run(&ctx, &case.sql, read_only).await?;
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| (render(column, row), kind_of(column.data_type())))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[tokio::test]
async fn the_corpus_answers_as_redshift_documents() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("differences.toml"))
        .collect();
    files.sort();
    let differences: Differences =
        toml::from_str(&std::fs::read_to_string(corpus_dir().join("differences.toml")).unwrap())
            .unwrap();

    let mut total = 0;
    let mut passed = 0;
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for file in &files {
        let family = file.file_stem().unwrap().to_string_lossy().into_owned();
        let corpus: CorpusFile = toml::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut family_passed = 0;
        for case in &corpus.cases {
            assert!(
                names.insert(case.name.clone()),
                "{} is named twice",
                case.name
            );
            assert!(
                case.doc
                    .starts_with("https://docs.aws.amazon.com/redshift/"),
                "{}: {}",
                case.name,
                case.doc
            );
            total += 1;
            let outcome = run(case).await;
            let ok = matches!(&outcome, Ok(rows) if rows_match(case, rows));
            let known = differences.differences.get(&case.name);
            match (ok, known) {
                (true, None) => {
                    passed += 1;
                    family_passed += 1;
                }
                (true, Some(_)) => {
                    passed += 1;
                    family_passed += 1;
                    now_passing.push(case.name.clone());
                }
                (false, Some(why)) => println!("not supported: {} — {why}", case.name),
                (false, None) => unexpected.push(format!(
                    "{} ({family}): {}\n    expected {:?}\n    answered {}",
                    case.name,
                    case.sql,
                    case.expect,
                    match outcome {
                        Ok(rows) => format!(
                            "{:?}",
                            rows.iter()
                                .map(|r| r.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>())
                                .collect::<Vec<_>>()
                        ),
                        Err(e) => e,
                    }
                )),
            }
        }
        println!(
            "{family}: {family_passed} of {} answered as documented",
            corpus.cases.len()
        );
    }
    let stale: Vec<&String> = differences
        .differences
        .keys()
        .filter(|name| !names.contains(*name))
        .collect();
    println!(
        "corpus: {passed} of {total} cases answered as documented ({:.1}%)",
        100.0 * passed as f64 / total as f64
    );
    assert!(
        stale.is_empty(),
        "differences.toml names no case: {stale:?}"
    );
    assert!(
        unexpected.is_empty(),
        "{} cases answered otherwise than documented and are not listed in differences.toml:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "these cases now answer as documented; take them out of differences.toml: {now_passing:?}"
    );
    assert!(
        total >= 150,
        "the corpus has {total} cases; it needs at least 150"
    );
    assert!(
        passed * 100 >= total * 95,
        "{passed} of {total} is under 95%"
    );
}
