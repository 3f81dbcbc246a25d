//! A catalogue file's header: `-- export:`, `-- description:`, `-- param:` and optionally
//! `-- allow: group, group`, `-- parallel: on|off` and `-- lookup: [max_rows=N] [cache=180s]`
//! lines, then the SELECT. Modifiers are `key=value` words: `max_length`, `pattern` (a regex
//! without spaces; use `\s`), `min`, `max` (integers), `max_items` (lists), `bound` (the
//! caller's attribute the value comes from), `optional`. Types: `text`,
//! `integer`, `decimal(p,s)`, `date`, `timestamp`, `boolean`, `enum(a|b|c)`, and `list<T>` of
//! any of them.

use super::lookup::LookupPolicy;
use super::params::{Param, ParamType, Pattern, ScalarType, DEFAULT_MAX_ITEMS, MAX_TEXT_LENGTH};
use super::Export;
use regex::Regex;
use std::collections::BTreeMap;

impl Export {
    /// Parses one catalogue file.
    pub fn parse(text: &str) -> Result<Export, String> {
        let mut name = None;
        let mut description = String::new();
        let mut params: Vec<Param> = Vec::new();
        let mut parallel = None;
        let mut lookup = None;
        let mut allow: Option<Vec<String>> = None;
        let mut body = Vec::new();
        let mut in_header = true;
        let mut body_line = 0;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if in_header {
                if let Some(rest) = trimmed.strip_prefix("--") {
                    let rest = rest.trim();
                    if let Some(v) = rest.strip_prefix("export:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = rest.strip_prefix("description:") {
                        if !description.is_empty() {
                            description.push(' ');
                        }
                        description.push_str(v.trim());
                    } else if let Some(v) = rest.strip_prefix("param:") {
                        let param = Param::parse(v.trim())?;
                        if params.iter().any(|p| p.name == param.name) {
                            return Err(format!("parameter '{}' is declared twice", param.name));
                        }
                        params.push(param);
                    } else if let Some(v) = rest.strip_prefix("allow:") {
                        if allow.is_some() {
                            return Err("'-- allow:' is given twice".into());
                        }
                        allow = Some(parse_allow(v)?);
                    } else if let Some(v) = rest.strip_prefix("lookup:") {
                        lookup = Some(LookupPolicy::parse(v)?);
                    } else if let Some(v) = rest.strip_prefix("parallel:") {
                        parallel = Some(match v.trim() {
                            "on" => true,
                            "off" => false,
                            other => {
                                return Err(format!("'-- parallel: {other}' is not on or off"))
                            }
                        });
                    } else {
                        refuse_misspelt_header(rest)?;
                    }
                    continue;
                }
                if trimmed.is_empty() {
                    continue;
                }
                in_header = false;
                body_line = number + 1;
            }
            // Below the SELECT an `-- allow:` would be a comment of the SQL, granting every
            // caller what it meant to restrict.
            if trimmed
                .strip_prefix("--")
                .is_some_and(|rest| spells_allow(rest.trim()))
            {
                return Err("'-- allow:' is below the SELECT; header lines go above it".into());
            }
            body.push(line);
        }
        let name = name.ok_or("missing '-- export: <name>' header")?;
        if !valid_identifier(&name) {
            return Err(format!(
                "export name '{name}' must be lower-case letters, digits and _"
            ));
        }
        let template = body.join("\n").trim().trim_end_matches(';').to_owned();
        if template.is_empty() {
            return Err("no SELECT body after the header".into());
        }
        let parallel = parallel.unwrap_or_else(|| !ends_in_order_by(&template));
        let mut export = Export {
            name,
            description,
            params,
            segments: super::template::segments(&template)?,
            template,
            parallel,
            lookup,
            // `*` among the groups: every caller, as with no line at all.
            allow: allow.filter(|groups| !groups.iter().any(|g| g == "*")),
            own_limit: false,
            body_line,
            file: String::new(),
        };
        export.own_limit = export.check_template()?;
        Ok(export)
    }
}

/// The header keys a catalogue file may use.
const HEADER_KEYS: [&str; 6] = [
    "export",
    "description",
    "param",
    "allow",
    "lookup",
    "parallel",
];

/// Whether a comment spells an `allow` line in any case, with or without its colon (`Allow:`,
/// `allow internal`).
fn spells_allow(comment: &str) -> bool {
    comment
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .is_some_and(|word| word.eq_ignore_ascii_case("allow"))
}

/// A header comment that is none of the known lines: fine as prose, refused when it looks
/// like a header line (`key:`), or like an `allow` line, since a mistyped `-- allow:` read as a
/// comment would open the entry to every caller.
fn refuse_misspelt_header(comment: &str) -> Result<(), String> {
    if spells_allow(comment) {
        return Err(format!(
            "'-- {comment}' is not an '-- allow:' line (lower case, a colon after 'allow')"
        ));
    }
    let word = comment.split(':').next().unwrap_or_default();
    if comment.contains(':')
        && !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "'-- {word}:' is not a header line (known: {})",
            HEADER_KEYS.join(", ")
        ));
    }
    Ok(())
}

/// `-- allow: internal, suppliers`: group names (letters, digits, `_`, `-`), or `*`.
fn parse_allow(line: &str) -> Result<Vec<String>, String> {
    let groups: Vec<String> = line
        .split(',')
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.is_empty() {
        return Err("'-- allow:' names no group (use '*' for every caller)".into());
    }
    if let Some(bad) = groups.iter().find(|g| *g != "*" && !valid_group(g)) {
        return Err(format!(
            "'-- allow:' group '{bad}' must be letters, digits, '_' and '-'"
        ));
    }
    Ok(groups)
}

/// Whether the SELECT's last clauses order its result: an `ORDER BY` outside any parentheses,
/// string literal or quoted name (one inside a subquery or a window orders nothing UNLOAD
/// writes).
fn ends_in_order_by(select: &str) -> bool {
    let mut depth = 0usize;
    let mut quote = None;
    let mut outer = String::with_capacity(select.len());
    for c in select.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 => outer.push(c.to_ascii_uppercase()),
            (None, _) => outer.push(' '),
        }
    }
    let words: Vec<&str> = outer.split_whitespace().collect();
    words.windows(2).any(|w| w == ["ORDER", "BY"])
}

impl Param {
    /// Parses `name type [modifier …] [-- description]`.
    fn parse(spec: &str) -> Result<Param, String> {
        let (spec, description) = match spec.split_once(" -- ") {
            Some((s, d)) => (s, d.trim().to_owned()),
            None => (spec, String::new()),
        };
        let mut words = spec.split_whitespace();
        let name = words
            .next()
            .ok_or("empty parameter declaration")?
            .to_owned();
        if !valid_identifier(&name) {
            return Err(format!(
                "parameter name '{name}' must be lower-case letters, digits and _"
            ));
        }
        let ty_word = words
            .next()
            .ok_or_else(|| format!("parameter '{name}' has no type"))?;
        let mut modifiers = BTreeMap::new();
        let mut optional = false;
        let mut bound = None;
        for word in words {
            if word == "optional" {
                optional = true;
            } else if let Some(attribute) = word.strip_prefix("bound=") {
                if !valid_group(attribute) {
                    return Err(format!(
                        "parameter '{name}': bound attribute '{attribute}' must be letters, digits, '_' and '-'"
                    ));
                }
                bound = Some(attribute.to_owned());
            } else if let Some((k, v)) = word.split_once('=') {
                modifiers.insert(k, v);
            } else {
                return Err(format!("parameter '{name}': unknown modifier '{word}'"));
            }
        }
        let ctx = |m: String| format!("parameter '{name}': {m}");
        let ty = if let Some(inner) = ty_word
            .strip_prefix("list<")
            .and_then(|s| s.strip_suffix('>'))
        {
            let max_items = match modifiers.remove("max_items") {
                Some(v) => v
                    .parse()
                    .map_err(|_| ctx(format!("max_items '{v}' is not a number")))?,
                None => DEFAULT_MAX_ITEMS,
            };
            ParamType::List {
                item: ScalarType::parse(inner, &mut modifiers).map_err(ctx)?,
                max_items,
            }
        } else {
            ParamType::Scalar(ScalarType::parse(ty_word, &mut modifiers).map_err(ctx)?)
        };
        if let Some(k) = modifiers.keys().next() {
            return Err(ctx(format!("modifier '{k}' does not apply to its type")));
        }
        if bound.is_some() && optional {
            // A caller without the attribute would otherwise run it unfiltered.
            return Err(ctx("a bound parameter cannot be optional".into()));
        }
        Ok(Param {
            name,
            ty,
            optional,
            description,
            bound,
        })
    }
}

impl ScalarType {
    fn parse(word: &str, modifiers: &mut BTreeMap<&str, &str>) -> Result<ScalarType, String> {
        let int_modifier =
            |m: &mut BTreeMap<&str, &str>, key: &str| -> Result<Option<i64>, String> {
                m.remove(key)
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("{key} '{v}' is not an integer"))
                    })
                    .transpose()
            };
        Ok(match word {
            "text" => {
                let max_length = match modifiers.remove("max_length") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| format!("max_length '{v}' is not a number"))?,
                    None => 256,
                };
                if max_length == 0 || max_length > MAX_TEXT_LENGTH {
                    return Err(format!("max_length must be 1..={MAX_TEXT_LENGTH}"));
                }
                let pattern = modifiers
                    .remove("pattern")
                    .map(|p| {
                        // The pattern must stand alone, so that wrapping it in the anchors
                        // below cannot be escaped by a stray `)` (as `a)|(.*` would).
                        Regex::new(p)
                            .and_then(|_| Regex::new(&format!("^(?:{p})$")))
                            .map(Pattern)
                            .map_err(|e| format!("pattern does not compile: {e}"))
                    })
                    .transpose()?;
                ScalarType::Text {
                    max_length,
                    pattern,
                }
            }
            "integer" => {
                let min = int_modifier(modifiers, "min")?;
                let max = int_modifier(modifiers, "max")?;
                if let (Some(min), Some(max)) = (min, max) {
                    if min > max {
                        return Err(format!("min={min} is above max={max}"));
                    }
                }
                ScalarType::Integer { min, max }
            }
            "date" => ScalarType::Date,
            "timestamp" => ScalarType::Timestamp,
            "boolean" => ScalarType::Boolean,
            _ => {
                if let Some(args) = word
                    .strip_prefix("decimal(")
                    .and_then(|s| s.strip_suffix(')'))
                {
                    let (p, s) = args
                        .split_once(',')
                        .ok_or("decimal needs (precision,scale)")?;
                    let precision: u32 = p.trim().parse().map_err(|_| "bad decimal precision")?;
                    let scale: u32 = s.trim().parse().map_err(|_| "bad decimal scale")?;
                    if precision == 0 || precision > 38 || scale > precision {
                        return Err("decimal precision must be 1..=38 and scale ≤ precision".into());
                    }
                    ScalarType::Decimal { precision, scale }
                } else if let Some(args) =
                    word.strip_prefix("enum(").and_then(|s| s.strip_suffix(')'))
                {
                    let values: Vec<String> = args.split('|').map(str::to_owned).collect();
                    if values
                        .iter()
                        .any(|v| v.is_empty() || v.contains(['\'', '\\']))
                    {
                        return Err("enum values must be non-empty and free of quotes".into());
                    }
                    ScalarType::Enum(values)
                } else {
                    return Err(format!("unknown type '{word}'"));
                }
            }
        })
    }
}

/// A group or attribute name: letters, digits, `_` and `-` (as IAM tag keys and TOML keys
/// take them without quoting).
pub fn valid_group(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordered_select_unloads_serially_unless_the_header_says_otherwise() {
        let export = |header: &str, select: &str| {
            Export::parse(&format!("-- export: e\n{header}\n{select}")).unwrap()
        };
        let ordered = "SELECT a FROM t ORDER BY a";
        assert!(!export("", ordered).parallel);
        assert!(!export("", "select a from t\norder  by a desc").parallel);
        assert!(export("", "SELECT a FROM t").parallel);
        // An ORDER BY that orders nothing UNLOAD writes: in a subquery, a window, a literal.
        assert!(export("", "SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 5) s").parallel);
        assert!(export("", "SELECT a, rank() OVER (ORDER BY a) FROM t").parallel);
        assert!(export("", "SELECT 'order by' AS a FROM t").parallel);
        assert!(export("-- parallel: on", ordered).parallel);
        assert!(!export("-- parallel: off", "SELECT a FROM t").parallel);
        assert!(Export::parse("-- export: e\n-- parallel: maybe\nSELECT 1")
            .unwrap_err()
            .contains("maybe"));
    }

    #[test]
    fn refuses_broken_catalogue_files() {
        for (text, needle) in [
            (
                "-- export: a\n-- Allow: internal\nSELECT 1",
                "not an '-- allow:' line",
            ),
            (
                "-- export: a\n-- allow internal\nSELECT 1",
                "not an '-- allow:' line",
            ),
            (
                "-- export: a\n-- allowed: internal\nSELECT 1",
                "not a header line",
            ),
            (
                "-- export: a\n-- Param: x integer\nSELECT :x",
                "not a header line",
            ),
            (
                "-- export: a\nSELECT 1\n-- allow: internal",
                "below the SELECT",
            ),
            ("-- export: a\n-- allow:\nSELECT 1", "names no group"),
            ("-- export: a\n-- allow: a b\nSELECT 1", "letters, digits"),
            (
                "-- export: a\n-- param: x integer bound=s optional\nSELECT :x",
                "cannot be optional",
            ),
            ("SELECT 1", "missing '-- export"),
            ("-- export: a\nSELECT :x", "no '-- param: x"),
            ("-- export: a\n-- param: x integer\nSELECT 1", "never used"),
            ("-- export: a\n-- param: x blob\nSELECT :x", "unknown type"),
            ("-- export: a\nSELECT FROM WHERE", "does not parse"),
            // A pattern that would escape its anchors once wrapped.
            (
                "-- export: a\n-- param: x text pattern=a)|(.*\nSELECT :x",
                "pattern does not compile",
            ),
            ("-- export: a\nSELECT 1; DROP TABLE t", "does not parse"),
            (
                "-- export: a\n-- param: x text colour=red\nSELECT :x",
                "does not apply",
            ),
        ] {
            let e = Export::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
