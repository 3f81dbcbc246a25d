//! The lookup routes: `GET /lookups/{dataset}?name=value…` and the second seed's own shape,
//! `GET /customer/{ids}`. Answers carry an `ETag` and a `Cache-Control` that says how long
//! they stay fresh; `If-None-Match` gets a 304, `Cache-Control: no-cache` a fresh read.

use super::Caller;
use crate::error::ApiError;
use crate::service::{Looked, Lookups};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use export_api::{CustomerRows, ErrorBody, LookupAnswer};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The dataset `GET /customer/{ids}` looks up, and its parameter.
pub const CUSTOMER_DATASET: &str = "customers";
const CUSTOMER_IDS: &str = "ids";

/// The headers both lookup routes read.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read from the `HeaderMap`; this is their description.
struct CacheHeaders {
    /// An `ETag` this route answered: 304 if the answer is the same.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
    /// `no-cache` reads the warehouse, not a cache.
    #[param(rename = "Cache-Control")]
    cache_control: Option<String>,
}

/// What both lookup routes answer besides their rows.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // `answer` and `ApiError` write these; this is their description.
enum LookupRefusals {
    /// The caller's `If-None-Match` names the answer it holds.
    #[response(status = 304, headers(("ETag" = String), ("Cache-Control" = String)))]
    NotModified,
    /// A parameter is invalid; `field` names it. A bound parameter given is `bound_parameter`.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// The request is not signed with SigV4, or the signer may not call the API; or the
    /// dataset binds a parameter to an attribute the caller does not have (or has several
    /// values of, for one value).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such dataset, or not one the caller may use: the same answer.
    #[response(status = 404)]
    UnknownDataset(ErrorBody),
    /// More rows match than a lookup answers (`too_many_rows`), or, on AWS, the answer is more
    /// than a function may return (`answer_too_large`, 6 MB); ask for an export.
    #[response(status = 422)]
    TooManyRows(ErrorBody),
    /// Over the caller's lookups per second (`quota_lookups_per_second`).
    #[response(status = 429, headers(("Retry-After" = String, description = "Seconds until the next lookup is allowed.")))]
    OverQuota(ErrorBody),
    /// The warehouse's statement failed; `statement_id` names it.
    #[response(status = 502)]
    StatementFailed(ErrorBody),
    /// The warehouse did not answer in time; `statement_id` names the statement.
    #[response(status = 504)]
    TimedOut(ErrorBody),
}

/// Lookups, served beside the status routes (the read path), with their contract.
pub fn lookup_routes() -> OpenApiRouter<Arc<Lookups>> {
    OpenApiRouter::default()
        .routes(routes!(lookup))
        .routes(routes!(dataset_lookup))
        .routes(routes!(customers))
}

pub fn lookup_router(lookups: Arc<Lookups>) -> Router {
    lookup_routes().with_state(lookups).split_for_parts().0
}

/// A small answer at once: the dataset's rows for the parameters in the query string, as
/// JSON, or CSV for `Accept: text/csv`.
#[utoipa::path(
    get, path = "/lookups/{dataset}", tag = "lookups", operation_id = "lookup",
    params(
        ("dataset" = String, Path, example = "customers",
         description = "A dataset the catalogue offers for lookups."),
        ("params" = Option<Object>, Query, style = Form, explode, example = json!({"ids": "1,2,3"}),
         description = "The dataset's parameters as `name=value`; a list as comma-separated values or the name repeated."),
        CacheHeaders,
        ("Accept" = Option<String>, Header, description = "`text/csv` for CSV; JSON otherwise."),
    ),
    responses(
        (status = 200, description = "The rows.",
         content((LookupAnswer = "application/json"), (String = "text/csv")),
         headers(("ETag" = String, description = "The rows' validator."),
                 ("Cache-Control" = String, description = "How long the answer stays fresh."))),
        LookupRefusals,
    )
)]
async fn lookup(
    State(lookups): State<Arc<Lookups>>,
    Caller(owner): Caller,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query.as_deref().unwrap_or("");
    let looked = lookups
        .lookup_text(
            &owner,
            &dataset,
            form_urlencoded::parse(query.as_bytes()),
            wants_fresh(&headers),
        )
        .await?;
    Ok(rows_answer(&lookups, &headers, &looked))
}

/// `GET /lookups/{dataset}` under the dataset's own path, for an `execute-api` policy that
/// grants a caller single datasets.
#[utoipa::path(
    get, path = "/datasets/{name}/lookup", tag = "lookups", operation_id = "lookup_dataset",
    params(
        ("name" = String, Path, example = "customers",
         description = "A dataset the catalogue offers for lookups."),
        ("params" = Option<Object>, Query, style = Form, explode, example = json!({"ids": "1,2,3"}),
         description = "The dataset's parameters as `name=value`; a list as comma-separated values or the name repeated; never a bound one."),
        CacheHeaders,
        ("Accept" = Option<String>, Header, description = "`text/csv` for CSV; JSON otherwise."),
    ),
    responses(
        (status = 200, description = "The rows.",
         content((LookupAnswer = "application/json"), (String = "text/csv")),
         headers(("ETag" = String, description = "The rows' validator."),
                 ("Cache-Control" = String, description = "How long the answer stays fresh."))),
        LookupRefusals,
    )
)]
async fn dataset_lookup(
    state: State<Arc<Lookups>>,
    caller: Caller,
    name: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    lookup(state, caller, name, query, headers).await
}

/// A lookup's answer as JSON, or CSV for `Accept: text/csv`.
fn rows_answer(lookups: &Lookups, headers: &HeaderMap, looked: &Looked) -> Response {
    let now = lookups.clock.now();
    if accepts_csv(headers) {
        let tag = csv_etag(looked);
        return answer(headers, looked, now, tag, "text/csv; charset=utf-8", || {
            csv(looked).into_bytes()
        });
    }
    let tag = looked.answer.etag().to_owned();
    answer(headers, looked, now, tag, "application/json", || {
        let body = LookupAnswer {
            dataset: looked.answer.dataset.as_str().into(),
            columns: looked.answer.columns.as_slice().into(),
            rows: looked.answer.row_objects(),
            row_count: looked.answer.rows.len(),
            cached: looked.cached,
            age_seconds: age_seconds(looked, now),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    })
}

/// `GET /customer/1,2,3`: the customers' rows as a JSON array, as the second seed answers
/// (a lookup of `customers`).
#[utoipa::path(
    get, path = "/customer/{ids}", tag = "lookups", operation_id = "lookup_customers",
    params(
        ("ids" = String, Path, example = "1,2,3", description = "Customer keys, comma-separated."),
        CacheHeaders,
    ),
    responses(
        (status = 200, description = "The customers' rows.", body = CustomerRows,
         headers(("ETag" = String, description = "The rows' validator."),
                 ("Cache-Control" = String, description = "How long the answer stays fresh."))),
        LookupRefusals,
    )
)]
async fn customers(
    State(lookups): State<Arc<Lookups>>,
    Caller(owner): Caller,
    Path(ids): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = [(Cow::Borrowed(CUSTOMER_IDS), Cow::Borrowed(ids.as_str()))];
    let looked = lookups
        .lookup_text(&owner, CUSTOMER_DATASET, pairs, wants_fresh(&headers))
        .await?;
    let now = lookups.clock.now();
    let tag = looked.answer.etag().to_owned();
    Ok(answer(
        &headers,
        &looked,
        now,
        tag,
        "application/json",
        || serde_json::to_vec(&looked.answer.row_objects()).unwrap_or_default(),
    ))
}

/// The response: 304 if the caller holds `tag` already, else `body()`; either way with the
/// validator and how long the answer stays fresh.
fn answer(
    headers: &HeaderMap,
    looked: &Looked,
    now: i64,
    tag: String,
    content_type: &'static str,
    body: impl FnOnce() -> Vec<u8>,
) -> Response {
    let fresh_for = ((looked.answer.expires_at - now) / 1000).max(0);
    let cache_control = if fresh_for > 0 {
        format!("private, max-age={fresh_for}")
    } else {
        "private, no-cache".to_owned()
    };
    let mut response = if matches_tag(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body(),
        )
            .into_response()
    };
    let out = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        out.insert(header::ETAG, tag);
    }
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        out.insert(header::CACHE_CONTROL, value);
    }
    out.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn age_seconds(looked: &Looked, now: i64) -> i64 {
    ((now - looked.answer.fetched_at) / 1000).max(0)
}

/// `If-None-Match` naming `tag` (or `*`), weak or strong.
fn matches_tag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

fn wants_fresh(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}

fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
        })
}

fn csv_etag(looked: &Looked) -> String {
    let tag = looked.answer.etag().to_owned();
    format!("{}-csv\"", tag.trim_end_matches('"'))
}

/// The answer as CSV (RFC 4180): a header line, then one line per row; NULL is an empty field.
fn csv(looked: &Looked) -> String {
    let field = |v: &Value| -> String {
        let text = match v {
            Value::Null => return String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let mut out = String::new();
    let names: Vec<String> = looked
        .answer
        .columns
        .iter()
        .map(|c| field(&Value::String(c.name.clone())))
        .collect();
    out.push_str(&names.join(","));
    out.push_str("\r\n");
    for row in &looked.answer.rows {
        let fields: Vec<String> = row.iter().map(field).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}
