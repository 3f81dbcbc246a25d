//! Compatibility with the original sample's API (`POST /product`, `GET /product`), answered
//! by the same services.

use super::*;

/// The dataset the original sample's `/product` routes export.
pub const PRODUCT_DATASET: &str = "product_detail";

/// `POST /product {sku, productname?, createdate?}` → `{"RequestId": …}`: the original
/// sample's submission, an export of `product_detail`.
#[utoipa::path(
    post, path = "/product", tag = "compatibility", operation_id = "submit_product",
    request_body(content = ProductRequest, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "The job is queued.", body = ProductAccepted),
        (status = 400, description = "A field is invalid; `field` names it.", body = ErrorBody),
        (status = 403, description = "The request is not signed with SigV4, or the signer may not call the API; or the dataset binds a parameter to an attribute the caller does not have.", body = ErrorBody),
        SubmitRefusals,
    )
)]
pub(super) async fn submit_product(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    headers: HeaderMap,
    StrictJson(body): StrictJson<ProductRequest>,
) -> Result<Response, ApiError> {
    let params = [
        ("sku", body.sku),
        ("product_name", body.productname),
        ("created_on", body.createdate),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?)))
    .collect();
    let request = ExportRequest::new(PRODUCT_DATASET, params);
    let submitted = submissions
        .submit(&owner, request, idempotency_key(&headers)?)
        .await
        .map_err(|mut e| {
            // Name the original field, not the catalogue's parameter.
            if let Some(field) = &e.field {
                e.field = Some(match field.as_str() {
                    "params.product_name" => "productname".into(),
                    "params.created_on" => "createdate".into(),
                    other => other.trim_start_matches("params.").to_owned(),
                });
            }
            e
        })?;
    Ok((
        StatusCode::OK,
        Json(ProductAccepted {
            request_id: submitted.request_id,
        }),
    )
        .into_response())
}

/// `GET /product` with headers `requestid` and `type: latest|all`: the original sample's
/// status call.
#[utoipa::path(
    get, path = "/product", tag = "compatibility", operation_id = "get_product_status",
    params(
        ("requestid" = String, Header, description = "The `RequestId` `POST /product` answered."),
        ("type" = Option<String>, Header, description = "`latest` (the default) or `all`."),
    ),
    responses(
        (status = 200, description = "The latest state, or every event.", body = ProductAnswer),
        (status = 400, description = "A header is missing or invalid.", body = ErrorBody),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn product_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    headers: HeaderMap,
) -> Result<Json<ProductAnswer>, ApiError> {
    let id = headers
        .get("requestid")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid("requestid", "the 'requestid' header is required"))?;
    let kind = headers
        .get("type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("latest");
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::job_not_found(id))?;
    let job = queries.job(&owner, id).await?;
    match kind {
        "latest" => Ok(Json(ProductAnswer::Latest(ProductStatus {
            request_id: job.request_id,
            status: job.status,
            timestamp: job.updated_at,
            rows: job.rows,
            error: job.error,
        }))),
        "all" => {
            let events = queries.control.events(&job.request_id).await?;
            Ok(Json(ProductAnswer::All(
                events
                    .into_iter()
                    .map(|e| ProductEvent {
                        request_id: job.request_id.clone(),
                        step: e.step,
                        status: e.outcome,
                        timestamp: e.at,
                        message: e.message,
                    })
                    .collect(),
            )))
        }
        other => Err(ApiError::invalid(
            "type",
            format!("the 'type' header must be latest or all, not '{other}'"),
        )),
    }
}
