//! Redshift's syntax where it differs from DataFusion's, rewritten in the parsed statement
//! before DataFusion plans it: Redshift's spelling of a function becomes the DataFusion
//! function (or expression) that answers as Redshift documents it.

use crate::parts::Part;
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    BinaryOperator, CaseWhen, CastKind, DataType, DateTimeField, DuplicateTreatment, Expr,
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList,
    FunctionArguments, Ident, LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, Statement,
    TableFactor, TopQuantity, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// Parses Redshift SQL into statements DataFusion plans as Redshift would run them.
pub fn parse(sql: &str) -> Result<Vec<Statement>, String> {
    let text = export_core::sql::parser_text(sql)?;
    let mut statements =
        Parser::parse_sql(&RedshiftSqlDialect {}, &text).map_err(|e| e.to_string())?;
    for statement in &mut statements {
        if let ControlFlow::Break(e) = statement.visit(&mut Rewriter) {
            return Err(e);
        }
    }
    Ok(statements)
}

struct Rewriter;

fn unsupported<T>(what: &str) -> ControlFlow<String, T> {
    ControlFlow::Break(format!("{what} is not supported by the local warehouse"))
}

/// An expression from fixed text (no value of a statement's in it: those are moved as parsed
/// nodes, never printed and read again, which could change what a literal holds).
fn fixed_expr(text: &str) -> Expr {
    Parser::new(&RedshiftSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .expect("fixed text parses")
}

/// `(e)`: an argument moved into a new expression keeps its own precedence.
fn nested(e: &Expr) -> Box<Expr> {
    Box::new(Expr::Nested(Box::new(e.clone())))
}

/// `name(args…)`.
fn call(name: &str, args: Vec<Expr>) -> Function {
    Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }
}

/// `CAST(e AS data_type)`.
fn cast(e: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(e),
        data_type,
        array: false,
        format: None,
    }
}

fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_owned()).into())
}

fn name_of(f: &Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn rename(f: &mut Function, name: &str) {
    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
}

/// The function's plain argument expressions, if it has a plain argument list.
fn args_of(f: &mut Function) -> Option<&mut Vec<FunctionArg>> {
    match &mut f.args {
        FunctionArguments::List(list) => Some(&mut list.args),
        _ => None,
    }
}

fn arg_exprs(f: &Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A date part written as a word (`month`) or a string (`'mon'`) becomes the part's full name
/// as a string, which the functions here take.
fn part_argument(arg: &mut FunctionArg) {
    let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
        return;
    };
    let name = match e {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => return,
        },
        _ => return,
    };
    if let Some(part) = Part::parse(&name) {
        *e = string(part.name());
    }
}

impl Rewriter {
    fn function(&self, expr: &mut Expr) -> ControlFlow<String> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(name) = name_of(f) else {
            return ControlFlow::Continue(());
        };
        match name.as_str() {
            // GETDATE: the current time to the second ("GETDATE function").
            "getdate" => {
                *expr = fixed_expr("date_trunc('second', CAST(now() AS TIMESTAMP))");
            }
            "dateadd" | "datediff" | "date_part" | "date_trunc" | "pgdate_part" => {
                if name == "pgdate_part" {
                    rename(f, "date_part");
                }
                if let Some(first) = args_of(f).and_then(|a| a.first_mut()) {
                    part_argument(first);
                }
                let years = arg_exprs(f).first().is_some_and(|p| {
                    ["'millennium'", "'century'", "'decade'"].contains(&p.to_string().as_str())
                });
                if name == "date_trunc" && years {
                    rename(f, "redshift_date_trunc");
                }
            }
            "len" => rename(f, "character_length"),
            "textlen" => rename(f, "character_length"),
            "replicate" => {
                rename(f, "repeat");
                if let Some(first) = args_of(f).and_then(|a| a.first_mut()) {
                    as_text(first);
                }
            }
            "dexp" => rename(f, "exp"),
            "dlog10" => rename(f, "log10"),
            "dlog1" => rename(f, "ln"),
            "dpow" => rename(f, "power"),
            // NVL takes any number of arguments: it is COALESCE ("NVL and COALESCE functions").
            "nvl" => rename(f, "coalesce"),
            // CHARINDEX(sub, text) is STRPOS(text, sub).
            "charindex" => {
                if let Some(args) = args_of(f) {
                    if args.len() == 2 {
                        args.swap(0, 1);
                    }
                }
                rename(f, "strpos");
            }
            "decode" => *expr = decode(f)?,
            // MOD(a, b) is a % b, with the dividend's sign ("MOD function").
            "mod" => {
                let [a, b] = arg_exprs(f)[..] else {
                    return ControlFlow::Break("MOD takes two arguments".into());
                };
                *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                    left: nested(a),
                    op: BinaryOperator::Modulo,
                    right: nested(b),
                }));
            }
            // A string function given a date, a timestamp or a number reads it as text, as
            // Redshift prints it.
            "substring" | "substr" | "ltrim" | "rtrim" | "btrim" | "split_part" | "repeat"
            | "left" | "right" | "lpad" | "rpad" | "reverse" | "upper" | "lower" | "initcap"
            | "strpos" | "replace" | "translate" | "character_length" | "char_length"
            | "length" | "octet_length" | "concat" => {
                let first_only = !matches!(name.as_str(), "concat");
                if let Some(args) = args_of(f) {
                    for arg in args
                        .iter_mut()
                        .take(if first_only { 1 } else { usize::MAX })
                    {
                        as_text(arg);
                    }
                }
            }
            "listagg" => {
                if let Some(replaced) = listagg(f)? {
                    *expr = replaced;
                }
            }
            "percentile_cont" | "percentile_disc" => {
                if let Some(replaced) = percentile(f, &name)? {
                    *expr = replaced;
                }
            }
            "ceiling" => rename(f, "ceil"),
            "sign" => rename(f, "signum"),
            // Text given to a math function is read as a number ("SQRT('16')").
            "sqrt" | "cbrt" | "exp" | "ln" | "log" | "log10" | "power" | "pow" | "abs" | "ceil"
            | "floor" | "round" | "degrees" | "radians" => {
                if let Some(args) = args_of(f) {
                    for arg in args.iter_mut() {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                            let text = matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
                            if text {
                                *e = cast(e.clone(), DataType::DoublePrecision);
                            }
                        }
                    }
                }
            }
            "ratio_to_report" => *expr = ratio_to_report(f)?,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Wraps an argument in `redshift_text(…)` unless it is text already as written.
fn as_text(arg: &mut FunctionArg) {
    let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
        return;
    };
    if matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))) {
        return;
    }
    let inner = std::mem::replace(e, Expr::value(Value::Null));
    *e = Expr::Function(call("redshift_text", vec![inner]));
}

/// Redshift's types as DataFusion should read them. Its fixed-width and national character
/// types hold text here: DataFusion has one string type (a CHAR's trailing blanks are not
/// ignored: see ARCHITECTURE's differences). FLOAT is FLOAT8, double precision ("Numeric
/// types"), where DataFusion reads it as single precision.
fn plain_text_type(data_type: &mut DataType) {
    let single = |info: &sqlparser::ast::ExactNumberInfo| matches!(info, sqlparser::ast::ExactNumberInfo::Precision(p) if *p <= 24);
    if matches!(&*data_type, DataType::Float(info) if !single(info)) {
        *data_type = DataType::DoublePrecision;
        return;
    }
    if matches!(
        data_type,
        DataType::Character(_)
            | DataType::Char(_)
            | DataType::CharacterVarying(_)
            | DataType::CharVarying(_)
            | DataType::Nvarchar(_)
            | DataType::Text
    ) {
        *data_type = DataType::Varchar(None);
    }
}

/// DECODE(expr, search, result [, search, result]… [, default]): the result of the first
/// search equal to the expression, a NULL search matching a NULL ("DECODE function").
fn decode(f: &Function) -> ControlFlow<String, Expr> {
    let args = arg_exprs(f);
    if args.len() < 3 {
        return ControlFlow::Break("DECODE needs an expression, a search and a result".into());
    }
    let mut conditions = Vec::new();
    let mut else_result = None;
    for pair in args[1..].chunks(2) {
        match pair {
            [search, result] => conditions.push(CaseWhen {
                condition: Expr::IsNotDistinctFrom(nested(args[0]), nested(search)),
                result: *nested(result),
            }),
            [default] => else_result = Some(nested(default)),
            _ => unreachable!("chunks of two"),
        }
    }
    ControlFlow::Continue(Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions,
        else_result,
    })
}

/// LISTAGG(expr [, delimiter]) WITHIN GROUP (ORDER BY …) is STRING_AGG(expr, delimiter ORDER
/// BY …); no delimiter is the empty one ("LISTAGG function"). With DISTINCT and an order, or
/// as a window function, which DataFusion's STRING_AGG cannot be, it is `redshift_listagg`.
fn listagg(f: &mut Function) -> ControlFlow<String, Option<Expr>> {
    let order = std::mem::take(&mut f.within_group);
    let FunctionArguments::List(list) = &mut f.args else {
        return ControlFlow::Break("LISTAGG needs an expression".into());
    };
    if list.args.len() == 1 {
        list.args
            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(string(""))));
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    if !order.is_empty() && (distinct || f.over.is_some()) {
        let [value, delimiter] = arg_exprs(f)[..] else {
            return ControlFlow::Break("LISTAGG takes an expression and a delimiter".into());
        };
        let directions: String = order
            .iter()
            .map(|o| {
                if o.options.asc == Some(false) {
                    'd'
                } else {
                    'a'
                }
            })
            .collect();
        let mut args = vec![
            value.clone(),
            delimiter.clone(),
            string(&directions),
            Expr::value(Value::Boolean(distinct)),
        ];
        args.extend(order.iter().map(|o| o.expr.clone()));
        let mut ordered = call("redshift_listagg", args);
        ordered.over = f.over.clone();
        return ControlFlow::Continue(Some(Expr::Function(ordered)));
    }
    if !order.is_empty() {
        list.clauses.push(FunctionArgumentClause::OrderBy(order));
    }
    rename(f, "string_agg");
    ControlFlow::Continue(None)
}

/// PERCENTILE_CONT(f) WITHIN GROUP (ORDER BY x) OVER (…) is DataFusion's PERCENTILE_CONT(x, f)
/// as a window function; PERCENTILE_DISC is `redshift_percentile_disc` in either form.
fn percentile(f: &Function, name: &str) -> ControlFlow<String, Option<Expr>> {
    let ([fraction], [order]) = (&arg_exprs(f)[..], &f.within_group[..]) else {
        return ControlFlow::Continue(None);
    };
    let descending = order.options.asc == Some(false);
    let value = &order.expr;
    let mut replaced = if name == "percentile_disc" {
        call(
            "redshift_percentile_disc",
            vec![
                value.clone(),
                (*fraction).clone(),
                Expr::value(Value::Boolean(descending)),
            ],
        )
    } else if f.over.is_some() {
        let fraction = if descending {
            Expr::BinaryOp {
                left: Box::new(Expr::value(Value::Number("1".into(), false))),
                op: BinaryOperator::Minus,
                right: nested(fraction),
            }
        } else {
            (*fraction).clone()
        };
        call("percentile_cont", vec![value.clone(), fraction])
    } else {
        return ControlFlow::Continue(None);
    };
    replaced.over = f.over.clone();
    ControlFlow::Continue(Some(Expr::Function(replaced)))
}

/// RATIO_TO_REPORT(expr) OVER (PARTITION BY …): the value over its partition's sum
/// ("RATIO_TO_REPORT window function").
fn ratio_to_report(f: &Function) -> ControlFlow<String, Expr> {
    let [value] = arg_exprs(f)[..] else {
        return ControlFlow::Break("RATIO_TO_REPORT takes one expression".into());
    };
    if f.over.is_none() {
        return ControlFlow::Break("RATIO_TO_REPORT needs an OVER clause".into());
    }
    let mut sum = call("sum", vec![value.clone()]);
    sum.over = f.over.clone();
    ControlFlow::Continue(Expr::BinaryOp {
        left: Box::new(cast(*nested(value), DataType::DoublePrecision)),
        op: BinaryOperator::Divide,
        right: Box::new(Expr::Function(sum)),
    })
}

impl VisitorMut for Rewriter {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<String> {
        if let Statement::CreateTable(create) = statement {
            for column in &mut create.columns {
                plain_text_type(&mut column.data_type);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Pivot { .. } => unsupported("`PIVOT`"),
            TableFactor::Unpivot { .. } => unsupported("`UNPIVOT`"),
            TableFactor::MatchRecognize { .. } => unsupported("`MATCH_RECOGNIZE`"),
            _ => ControlFlow::Continue(()),
        }
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        match expr {
            // SYSDATE: the transaction's start, as a timestamp without zone ("SYSDATE function").
            Expr::Identifier(ident)
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("sysdate") =>
            {
                *expr = fixed_expr("CAST(now() AS TIMESTAMP)");
            }
            // EXTRACT answers whole numbers (seconds without their fraction), but for the
            // epoch ("EXTRACT function").
            Expr::Extract {
                field, expr: of, ..
            } => {
                let name = match field {
                    DateTimeField::Custom(ident) => ident.value.clone(),
                    other => other.to_string(),
                };
                if let Some(part) = Part::parse(&name) {
                    let part_of = Expr::Function(call(
                        "date_part",
                        vec![string(part.name()), (**of).clone()],
                    ));
                    *expr = if part == Part::Epoch {
                        part_of
                    } else {
                        cast(
                            Expr::Function(call("floor", vec![part_of])),
                            DataType::BigInt(None),
                        )
                    };
                }
            }
            Expr::Cast { data_type, .. } => plain_text_type(data_type),
            // CONVERT(type, expr) is a cast ("CAST and CONVERT functions").
            Expr::Convert {
                expr: value,
                data_type: Some(data_type),
                charset: None,
                is_try: false,
                ..
            } => {
                *expr = cast((**value).clone(), data_type.clone());
            }
            Expr::Substring { expr: of, .. } => {
                let mut arg = FunctionArg::Unnamed(FunctionArgExpr::Expr((**of).clone()));
                as_text(&mut arg);
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                    **of = e;
                }
            }
            Expr::Function(_) => self.function(expr)?,
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// `SELECT TOP n` is `LIMIT n` ("TOP clause" in "SELECT list").
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<String> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let Some(top) = select.top.take() else {
            return ControlFlow::Continue(());
        };
        if top.percent || top.with_ties {
            return unsupported("`TOP … PERCENT` and `WITH TIES`");
        }
        let limit = match top.quantity {
            Some(TopQuantity::Constant(n)) => Expr::value(Value::Number(n.to_string(), false)),
            Some(TopQuantity::Expr(e)) => e,
            None => return ControlFlow::Break("TOP needs a number".into()),
        };
        if query.limit_clause.is_some() {
            return ControlFlow::Break("a query takes TOP or LIMIT, not both".into());
        }
        query.limit_clause = Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by: Vec::new(),
        });
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> String {
        parse(sql).unwrap()[0].to_string()
    }

    #[test]
    fn redshift_spellings_become_datafusion_s() {
        assert_eq!(
            one("SELECT TOP 3 len(a), charindex('x', b) FROM t"),
            "SELECT character_length(a), strpos(b, 'x') FROM t LIMIT 3"
        );
        assert_eq!(
            one("SELECT datediff(qtr, a, b), extract(dow from a)"),
            "SELECT datediff('quarter', a, b), CAST(floor(date_part('dayofweek', a)) AS BIGINT)"
        );
        assert_eq!(
            one("SELECT decode(a, 1, 'one', NULL, 'none', 'other')"),
            "SELECT CASE WHEN (a) IS NOT DISTINCT FROM (1) THEN ('one') WHEN (a) IS NOT DISTINCT FROM (NULL) THEN ('none') ELSE ('other') END"
        );
        assert_eq!(
            one("SELECT APPROXIMATE count(DISTINCT a) FROM t"),
            "SELECT count(DISTINCT a) FROM t"
        );
        assert_eq!(
            one("SELECT listagg(a, ',') WITHIN GROUP (ORDER BY b) FROM t"),
            "SELECT string_agg(a, ',' ORDER BY b) FROM t"
        );
    }

    #[test]
    fn what_is_not_supported_says_so_by_name() {
        let e = parse("SELECT * FROM t PIVOT (sum(a) FOR b IN ('x'))").unwrap_err();
        assert_eq!(e, "`PIVOT` is not supported by the local warehouse");
    }
}
