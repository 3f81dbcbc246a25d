//! Redshift's string functions that DataFusion lacks or answers otherwise ("String
//! functions", Amazon Redshift Database Developer Guide). The regular expression functions
//! read Redshift's patterns through `fancy-regex`, Perl's syntax (look-around included, which
//! Redshift takes with the `p` parameter). Redshift's are POSIX expressions ("POSIX operators",
//! Amazon Redshift Database Developer Guide); where POSIX and Perl differ, this answers as Perl
//! does: an alternation takes its first matching branch, not the longest (ARCHITECTURE's
//! differences).

use crate::rowfn::{int, invalid, text, Arg, RowFn};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ScalarUDF;
use fancy_regex::{Captures, Regex, RegexBuilder};

pub fn functions() -> Vec<ScalarUDF> {
    use Arg::*;
    let text_type = |_: &[DataType]| DataType::Utf8;
    let int_type = |_: &[DataType]| DataType::Int64;
    vec![
        RowFn::udf(
            "regexp_substr",
            &[Text, Text, Int, Int, Text],
            2,
            text_type,
            regexp_substr,
        ),
        RowFn::udf(
            "regexp_count",
            &[Text, Text, Int, Text],
            2,
            int_type,
            regexp_count,
        ),
        RowFn::udf(
            "regexp_instr",
            &[Text, Text, Int, Int, Int, Text],
            2,
            int_type,
            regexp_instr,
        ),
        RowFn::udf(
            "regexp_replace",
            &[Text, Text, Text, Int, Text],
            2,
            text_type,
            regexp_replace,
        ),
        RowFn::udf("strtol", &[Text, Int], 2, int_type, strtol),
        RowFn::udf("chr", &[Int], 1, text_type, chr),
    ]
}

/// The pattern with its parameters: `c` case-sensitive (the default), `i` insensitive, `e`
/// answers the first subexpression, `p` Perl's syntax (which the `regex` crate speaks anyway).
struct Pattern {
    regex: Regex,
    subexpression: bool,
}

fn pattern(function: &str, pattern: &str, parameters: Option<&str>) -> Result<Pattern> {
    let parameters = parameters.unwrap_or("");
    let mut insensitive = false;
    // The flag goes in the pattern: fancy-regex's builder flag does not reach look-around.
    for p in parameters.chars() {
        match p {
            'c' => insensitive = false,
            'i' => insensitive = true,
            'e' | 'p' => {}
            other => return invalid(function, format!("invalid parameter '{other}'")),
        }
    }
    let pattern = if insensitive {
        format!("(?i){pattern}")
    } else {
        pattern.to_owned()
    };
    let subexpression = parameters.contains('e');
    // A statement calls with one pattern row after row: the last one compiled is kept.
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, Regex)>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(regex) = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(text, _)| *text == pattern)
            .map(|(_, regex)| regex.clone())
    }) {
        return Ok(Pattern {
            regex,
            subexpression,
        });
    }
    match RegexBuilder::new(&pattern).build() {
        Ok(regex) => {
            LAST.set(Some((pattern, regex.clone())));
            Ok(Pattern {
                regex,
                subexpression,
            })
        }
        Err(e) => invalid(function, format!("invalid regular expression: {e}")),
    }
}

/// The `occurrence`th (1-based) match's captures.
fn nth_match<'t>(
    function: &str,
    regex: &Regex,
    text: &'t str,
    occurrence: usize,
) -> Result<Option<Captures<'t>>> {
    match regex.captures_iter(text).nth(occurrence - 1) {
        None => Ok(None),
        Some(Ok(c)) => Ok(Some(c)),
        Some(Err(e)) => invalid(function, e),
    }
}

/// The text from the 1-based character `position` on, and its byte offset.
fn from_position(function: &str, source: &str, position: Option<i64>) -> Result<usize> {
    let position = position.unwrap_or(1);
    if position < 1 {
        return invalid(function, "the position must be greater than 0");
    }
    Ok(source
        .char_indices()
        .nth(position as usize - 1)
        .map_or(source.len(), |(at, _)| at))
}

fn chars_before(source: &str, byte: usize) -> i64 {
    source[..byte].chars().count() as i64
}

fn args_text(a: &[ScalarValue], i: usize) -> Option<&str> {
    a.get(i).and_then(text)
}

/// REGEXP_SUBSTR(source, pattern [, position [, occurrence [, parameters]]]).
fn regexp_substr(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(source), Some(pat)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let start = from_position("regexp_substr", source, a.get(2).and_then(int))?;
    let occurrence = a.get(3).and_then(int).unwrap_or(1).max(1) as usize;
    let p = pattern("regexp_substr", pat, args_text(a, 4))?;
    let found = nth_match("regexp_substr", &p.regex, &source[start..], occurrence)?;
    // Redshift answers an empty string, not NULL, when nothing matches.
    let value = match found {
        None => String::new(),
        Some(c) if p.subexpression && c.len() > 1 => c.get(1).map_or("", |m| m.as_str()).to_owned(),
        Some(c) => c.get(0).map_or("", |m| m.as_str()).to_owned(),
    };
    Ok(ScalarValue::Utf8(Some(value)))
}

/// REGEXP_COUNT(source, pattern [, position [, parameters]]).
fn regexp_count(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(source), Some(pat)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Int64(None));
    };
    let start = from_position("regexp_count", source, a.get(2).and_then(int))?;
    let p = pattern("regexp_count", pat, args_text(a, 3))?;
    let mut count = 0;
    for found in p.regex.find_iter(&source[start..]) {
        if let Err(e) = found {
            return invalid("regexp_count", e);
        }
        count += 1;
    }
    Ok(ScalarValue::Int64(Some(count)))
}

/// REGEXP_INSTR(source, pattern [, position [, occurrence [, option [, parameters]]]]): the
/// 1-based position of the match (option 0) or of the character after it (option 1); 0 if none.
fn regexp_instr(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(source), Some(pat)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Int64(None));
    };
    let start = from_position("regexp_instr", source, a.get(2).and_then(int))?;
    let occurrence = a.get(3).and_then(int).unwrap_or(1).max(1) as usize;
    let after = match a.get(4).and_then(int).unwrap_or(0) {
        0 => false,
        1 => true,
        _ => return invalid("regexp_instr", "the option must be 0 or 1"),
    };
    let p = pattern("regexp_instr", pat, args_text(a, 5))?;
    let Some(c) = nth_match("regexp_instr", &p.regex, &source[start..], occurrence)? else {
        return Ok(ScalarValue::Int64(Some(0)));
    };
    let m = if p.subexpression {
        c.get(1).or_else(|| c.get(0))
    } else {
        c.get(0)
    }
    .expect("a match");
    let byte = start + if after { m.end() } else { m.start() };
    Ok(ScalarValue::Int64(Some(chars_before(source, byte) + 1)))
}

/// REGEXP_REPLACE(source, pattern [, replacement [, position [, parameters]]]): every match
/// replaced (Redshift's, unlike DataFusion's, which replaces the first), `\1` naming a group.
fn regexp_replace(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(source), Some(pat)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let replacement = match a.get(2) {
        Some(v) => match text(v) {
            Some(r) => r,
            None => return Ok(ScalarValue::Utf8(None)),
        },
        None => "",
    };
    let start = from_position("regexp_replace", source, a.get(3).and_then(int))?;
    let p = pattern("regexp_replace", pat, args_text(a, 4))?;
    let replacement = regex_replacement(replacement);
    let mut out = source[..start].to_owned();
    match p
        .regex
        .try_replacen(&source[start..], 0, replacement.as_str())
    {
        Ok(replaced) => out.push_str(&replaced),
        Err(e) => return invalid("regexp_replace", e),
    }
    Ok(ScalarValue::Utf8(Some(out)))
}

/// `\1` → `${1}`, and a literal `$` kept literal.
fn regex_replacement(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// CHR(code): the character with that code point; NULL for 0 ("CHR function").
fn chr(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(code) = int(&a[0]) else {
        return Ok(ScalarValue::Utf8(None));
    };
    if code == 0 {
        return Ok(ScalarValue::Utf8(None));
    }
    match u32::try_from(code).ok().and_then(char::from_u32) {
        Some(c) => Ok(ScalarValue::Utf8(Some(c.to_string()))),
        None => invalid("chr", format!("{code} is not a character")),
    }
}

/// STRTOL(text, base): the text as a number in base 2 to 36, an optional sign and (base 16)
/// an optional `0x` ("STRTOL function").
fn strtol(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(s), Some(base)) = (text(&a[0]), int(&a[1])) else {
        return Ok(ScalarValue::Int64(None));
    };
    if !(2..=36).contains(&base) {
        return invalid("strtol", "the base must be 2 to 36");
    }
    // The text ends at a NUL, as C's strtol reads it ("STRTOL('\\0', 2)" is 0).
    let s = s.split('\0').next().unwrap_or("").trim();
    if s.is_empty() {
        return Ok(ScalarValue::Int64(Some(0)));
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = if base == 16 {
        digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
            .unwrap_or(digits)
    } else {
        digits
    };
    match i64::from_str_radix(digits, base as u32) {
        Ok(n) => Ok(ScalarValue::Int64(Some(if negative { -n } else { n }))),
        Err(_) => invalid("strtol", format!("invalid input for base {base}: \"{s}\"")),
    }
}
