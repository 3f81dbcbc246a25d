//! Lookups: the catalogue entries that may be answered at once (`-- lookup: max_rows=1000
//! cache=180s`), and their SELECT with every value bound as a named parameter rather than
//! written into the text, as the Data API's `ExecuteStatement` takes them.

use super::params::{ParamType, ScalarType};
use super::Export;
use crate::sql::Literal;
use std::collections::BTreeMap;
use std::time::Duration;

/// The most rows a lookup may declare; more is an export's job.
pub const MAX_LOOKUP_ROWS: usize = 10_000;
/// Rows a lookup answers when its header does not say.
pub const DEFAULT_LOOKUP_ROWS: usize = 1_000;
/// How long an answer is cached when the header does not say (the second seed's 180 s).
pub const DEFAULT_CACHE: Duration = Duration::from_secs(180);

/// How an export may be looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupPolicy {
    /// A lookup that matches more rows than this is refused, pointing at `POST /exports`.
    pub max_rows: usize,
    /// How long an answer may be served from the cache; zero caches nothing.
    pub cache: Duration,
}

impl LookupPolicy {
    /// Parses the words after `-- lookup:`: `max_rows=N`, `cache=180s|5m|0|off`.
    pub(super) fn parse(words: &str) -> Result<LookupPolicy, String> {
        let mut policy = LookupPolicy {
            max_rows: DEFAULT_LOOKUP_ROWS,
            cache: DEFAULT_CACHE,
        };
        for word in words.split_whitespace() {
            match word.split_once('=') {
                Some(("max_rows", v)) => {
                    policy.max_rows = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LOOKUP_ROWS).contains(n))
                        .ok_or_else(|| {
                            format!("lookup max_rows '{v}' must be 1 to {MAX_LOOKUP_ROWS}")
                        })?
                }
                Some(("cache", v)) => policy.cache = parse_duration(v)?,
                _ => return Err(format!("lookup: unknown setting '{word}'")),
            }
        }
        Ok(policy)
    }
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("lookup cache '{v}' must be seconds or minutes, e.g. 180s, 5m, or off");
    if v == "off" || v == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = v.split_at(v.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// One named parameter of a statement: a name (`[0-9a-zA-Z_]+`) and a non-empty value, as
/// the Data API's `SqlParameter` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlParameter {
    pub name: String,
    pub value: String,
}

/// A SELECT whose values travel beside it: the text holds `:p1`, `:p2`… (each cast to its
/// declared type, so the meaning never rests on an implicit conversion), the values are in
/// `params`. Only two values are ever written into the text, and neither comes from the
/// caller: `NULL` for an optional parameter left out, and `''` for empty text, since a Data
/// API parameter value cannot be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundSelect {
    pub sql: String,
    pub params: Vec<SqlParameter>,
}

impl Export {
    /// The lookup's SELECT for `bound` values (from [`Export::bind`]), reading at most
    /// `limit` rows.
    pub fn lookup_select(
        &self,
        bound: &BTreeMap<String, Vec<Literal>>,
        limit: usize,
    ) -> Result<BoundSelect, String> {
        let mut params = Vec::new();
        let mut names: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for param in &self.params {
            let literals = bound
                .get(&param.name)
                .ok_or_else(|| format!("no value for :{}", param.name))?;
            let scalar = match &param.ty {
                ParamType::Scalar(s) | ParamType::List { item: s, .. } => s,
            };
            let mut pieces = Vec::new();
            for literal in literals {
                pieces.push(match literal {
                    Literal::Null => "NULL".to_owned(),
                    Literal::Text(s) if s.is_empty() => "''".to_owned(),
                    other => {
                        let name = format!("p{}", params.len() + 1);
                        let piece = format!("CAST(:{name} AS {})", sql_type(scalar));
                        params.push(SqlParameter {
                            name,
                            value: parameter_value(other),
                        });
                        piece
                    }
                });
            }
            names.insert(&param.name, pieces);
        }
        let select =
            self.substitute_with(|name| names.get(name).map(|pieces| pieces.join(", ")))?;
        // Only the placeholders differ from the SELECT parsed at load time, so whether it has
        // a limit of its own is known without parsing it again.
        let sql = if self.own_limit {
            format!("SELECT * FROM (\n{select}\n) AS lookup LIMIT {limit}")
        } else {
            format!("{select}\nLIMIT {limit}")
        };
        Ok(BoundSelect { sql, params })
    }
}

/// The type a parameter's value is cast to.
fn sql_type(scalar: &ScalarType) -> String {
    match scalar {
        // The longest VARCHAR Redshift has: a bare VARCHAR would be 256 bytes and cut longer
        // values short.
        ScalarType::Text { .. } | ScalarType::Enum(_) => "VARCHAR(65535)".into(),
        ScalarType::Integer { .. } => "BIGINT".into(),
        ScalarType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        ScalarType::Date => "DATE".into(),
        ScalarType::Timestamp => "TIMESTAMP".into(),
        ScalarType::Boolean => "BOOLEAN".into(),
    }
}

/// A literal's value as the Data API takes it: text.
fn parameter_value(literal: &Literal) -> String {
    match literal {
        Literal::Null => String::new(),
        Literal::Text(s) => s.clone(),
        Literal::Integer(v) => v.to_string(),
        Literal::Decimal(d) | Literal::Date(d) | Literal::Timestamp(d) => d.clone(),
        Literal::Boolean(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::params;
    use super::*;
    use serde_json::json;

    const CUSTOMERS: &str = "-- export: customers
-- lookup: max_rows=50 cache=2m
-- param: ids list<integer> max_items=10
-- param: segment enum(A|B) optional
-- param: note text optional
SELECT c_custkey FROM customer
WHERE c_custkey IN (:ids) AND (:segment IS NULL OR c_mktsegment = :segment)
  AND (:note IS NULL OR c_comment <> :note) AND c_name <> ':ids'
ORDER BY c_custkey";

    #[test]
    fn the_header_says_what_may_be_looked_up() {
        let export = Export::parse(CUSTOMERS).unwrap();
        assert_eq!(
            export.lookup,
            Some(LookupPolicy {
                max_rows: 50,
                cache: Duration::from_secs(120)
            })
        );
        let plain = Export::parse("-- export: e\n-- lookup:\nSELECT 1").unwrap();
        assert_eq!(
            plain.lookup,
            Some(LookupPolicy {
                max_rows: DEFAULT_LOOKUP_ROWS,
                cache: DEFAULT_CACHE
            })
        );
        assert_eq!(
            Export::parse("-- export: e\nSELECT 1").unwrap().lookup,
            None
        );
        let off = Export::parse("-- export: e\n-- lookup: cache=off\nSELECT 1").unwrap();
        assert_eq!(off.lookup.unwrap().cache, Duration::ZERO);
        for (header, needle) in [
            ("max_rows=0", "max_rows"),
            ("max_rows=10001", "max_rows"),
            ("cache=3h", "cache"),
            ("colour=red", "unknown setting"),
        ] {
            let e =
                Export::parse(&format!("-- export: e\n-- lookup: {header}\nSELECT 1")).unwrap_err();
            assert!(e.contains(needle), "{header}: {e}");
        }
    }

    #[test]
    fn values_travel_as_parameters_never_as_text() {
        let export = Export::parse(CUSTOMERS).unwrap();
        let hostile = "x'); DROP TABLE customer; --\\";
        let bound = export
            .bind(&params(
                json!({"ids": [3, 1], "segment": "A", "note": hostile}),
            ))
            .unwrap();
        let select = export.lookup_select(&bound, 51).unwrap();
        assert!(!select.sql.contains("DROP"), "{}", select.sql);
        assert!(
            select
                .sql
                .contains("c_custkey IN ( CAST(:p1 AS BIGINT), CAST(:p2 AS BIGINT) )"),
            "{}",
            select.sql
        );
        // One parameter per use of a value, the same one wherever the template repeats it.
        assert!(select.sql.contains(
            "( CAST(:p3 AS VARCHAR(65535)) IS NULL OR c_mktsegment = CAST(:p3 AS VARCHAR(65535)) )"
        ));
        // The template's own string literal is left alone, and the limit comes last.
        assert!(select.sql.contains("c_name <> ':ids'"));
        assert!(select.sql.ends_with("ORDER BY c_custkey\nLIMIT 51"));
        let values: Vec<(&str, &str)> = select
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            values,
            [("p1", "3"), ("p2", "1"), ("p3", "A"), ("p4", hostile)]
        );
        crate::sql::parse_query(&select.sql).unwrap();
    }

    #[test]
    fn absent_and_empty_values_are_the_only_text_written() {
        let export = Export::parse(CUSTOMERS).unwrap();
        let bound = export
            .bind(&params(json!({"ids": [7], "note": ""})))
            .unwrap();
        let select = export.lookup_select(&bound, 10).unwrap();
        assert!(select.sql.contains("( NULL IS NULL OR"), "{}", select.sql);
        assert!(select.sql.contains("c_comment <> '' )"), "{}", select.sql);
        assert_eq!(select.params.len(), 1);
    }

    #[test]
    fn a_select_with_a_limit_of_its_own_is_limited_again() {
        let export =
            Export::parse("-- export: e\n-- lookup:\nSELECT a FROM t ORDER BY a LIMIT 5000")
                .unwrap();
        let select = export.lookup_select(&BTreeMap::new(), 11).unwrap();
        assert_eq!(
            select.sql,
            "SELECT * FROM (\nSELECT a FROM t ORDER BY a LIMIT 5000\n) AS lookup LIMIT 11"
        );
    }
}
