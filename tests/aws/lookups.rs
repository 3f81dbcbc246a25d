//! Lookups through the status function: `ExecuteStatement` with named `Parameters` on the
//! emulated Data API, `DescribeStatement` until it finishes, every page of
//! `GetStatementResult`; the answer shared through DynamoDB; the deadline.

use super::*;
use export_aws::Env;
use export_core::http::lookup_router;
use serde_json::json;

/// The sample lookup event for `GET /lookups/customers` with `query` (name → values).
fn lookup_event(query: &[(&str, &[&str])]) -> Value {
    let mut event = sample_event("status-get-lookup.json", "");
    let single: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.last().unwrap())))
        .collect();
    let multi: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    event["queryStringParameters"] = Value::Object(single);
    event["multiValueQueryStringParameters"] = Value::Object(multi);
    event
}

/// The status function's lookup routes built from the emulator's variables and `extra`, as
/// a fresh instance (its own in-process cache) builds them.
fn instance(h: &Harness, extra: &[(&str, &str)]) -> axum::Router {
    let mut vars = h.emulator.function_variables();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let mut env = Env::from_pairs(vars);
    let access = functions::access(&mut env, &h.emulator.clients);
    let router = with_json_fallbacks(lookup_router(functions::lookups(
        &mut env,
        &h.emulator.clients,
        access,
    )));
    env.finish().unwrap();
    router
}

#[tokio::test]
async fn a_lookup_binds_its_values_reads_every_page_and_is_shared() {
    let h = Harness::start_with(|o| o.data_api.result_page_rows = 2).await;
    let event = lookup_event(&[("ids", &["5", "1", "4", "2", "3"])]);
    let reply = h.call(&h.status, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let keys: Vec<i64> = reply.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["c_custkey"].as_i64().unwrap())
        .collect();
    // Five rows in pages of two: three GetStatementResult calls, every row once, in order.
    assert_eq!(keys, [1, 2, 3, 4, 5]);
    assert_eq!(reply.body["cached"], false);
    assert_eq!(
        reply.body["columns"][0],
        json!({"name": "c_custkey", "type": "int8"})
    );
    assert!(reply.headers["etag"].to_str().unwrap().starts_with('"'));

    // The statement the Data API got: placeholders in the text, the values beside it.
    let selects = h.emulator.data_api.api.selects();
    assert_eq!(selects.len(), 1);
    let (sql, params) = &selects[0];
    assert!(
        sql.contains("WHERE c_custkey IN ( CAST(:p1 AS BIGINT), CAST(:p2 AS BIGINT), CAST(:p3 AS BIGINT), CAST(:p4 AS BIGINT), CAST(:p5 AS BIGINT) )\n"),
        "no value is in the text: {sql}"
    );
    let values: Vec<&str> = params.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(values, ["5", "1", "4", "2", "3"]);

    // Again, on this instance: its own cache.
    let again = h.call(&h.status, &event).await;
    assert_eq!(again.body["cached"], true);
    // On a cold instance: DynamoDB's copy. Either way no second statement.
    let cold = h.call(&instance(&h, &[]), &event).await;
    assert_eq!(cold.status, 200, "{}", cold.body);
    assert_eq!(cold.body["cached"], true);
    assert_eq!(cold.body["rows"], reply.body["rows"]);
    assert_eq!(h.emulator.data_api.api.selects().len(), 1);

    // The seed's route: the same rows as a bare array.
    let customers = h.status_of("status-get-customer.json", "", ALICE).await;
    assert_eq!(customers.status, 200, "{}", customers.body);
    assert_eq!(customers.body.as_array().unwrap().len(), 3);
    assert_eq!(customers.body[2]["c_custkey"], 3);
}

#[tokio::test]
async fn values_that_look_like_sql_stay_values() {
    let h = Harness::start().await;
    let reply = h
        .call(
            &h.status,
            &lookup_event(&[("ids", &["1"]), ("segment", &["BUILDING' OR '1'='1"])]),
        )
        .await;
    // Not one of the declared segments: refused before any statement.
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["error"]["field"], "params.segment");
    assert!(h.emulator.data_api.api.selects().is_empty());
    // A real segment matches exactly its rows.
    let reply = h
        .call(
            &h.status,
            &lookup_event(&[
                ("ids", &["1", "2", "3", "4", "5"]),
                ("segment", &["BUILDING"]),
            ]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    for row in reply.body["rows"].as_array().unwrap() {
        assert_eq!(row["c_mktsegment"], "BUILDING", "{row}");
    }
    let (_, params) = &h.emulator.data_api.api.selects()[0];
    assert!(params.iter().any(|p| p.value == "BUILDING"));
}

#[tokio::test]
async fn a_lookup_past_its_deadline_answers_504_with_its_statement() {
    let h = Harness::start().await;
    h.emulator
        .data_api
        .api
        .delay_selects(Duration::from_secs(5));
    let slow = instance(&h, &[("LOOKUP_TIMEOUT_SECONDS", "1")]);
    let reply = h.call(&slow, &lookup_event(&[("ids", &["1"])])).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "lookup_timed_out");
    let statement = reply.body["error"]["statement_id"].as_str().unwrap();
    // It was cancelled, not left running.
    let described = h
        .emulator
        .clients
        .redshift
        .describe_statement()
        .id(statement)
        .send()
        .await
        .unwrap();
    assert_eq!(described.status().unwrap().as_str(), "ABORTED");
}

/// A lookup waits for its statement on the server ("Reduce API calls with long polling"): a
/// statement that takes a while still costs one `ExecuteStatement` and one
/// `GetStatementResult`, and no `DescribeStatement`, of the account's shared quotas.
#[tokio::test]
async fn a_lookup_waits_on_the_server_and_costs_two_calls() {
    let h = Harness::start().await;
    let api = &h.emulator.data_api.api;
    api.delay_selects(Duration::from_millis(700));
    let reply = h.call(&h.status, &lookup_event(&[("ids", &["3"])])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["rows"][0]["c_custkey"], 3);
    let calls = |op: &str| api.calls(op);
    assert_eq!(
        (
            calls("ExecuteStatement"),
            calls("DescribeStatement"),
            calls("GetStatementResult")
        ),
        (1, 0, 1)
    );
}

/// The emulated Data API holds each operation to its documented rate ("Quotas and limits in
/// Amazon Redshift") and answers `ThrottlingException`; `WaitTimeSeconds` is 1 to 30.
#[tokio::test]
async fn the_emulated_data_api_throttles_past_its_quotas_and_bounds_its_waits() {
    let h = Harness::start_with(|o| {
        o.data_api.quotas = Some(export_emulator::quotas::QuotaRates {
            describe_statement: 3.0,
            ..export_emulator::quotas::QuotaRates::DOCUMENTED
        })
    })
    .await;
    let client = &h.emulator.clients.redshift;
    let id = on_the_cluster(client)
        .sql("SELECT 1 AS one")
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    assert_eq!(id.status().map(|s| s.as_str()), Some("FINISHED"));
    assert_eq!(id.has_result_set(), Some(true));
    let id = id.id.unwrap();
    // A client that does not retry sees the refusal itself.
    let config = client
        .config()
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let plain = aws_sdk_redshiftdata::Client::from_conf(config);
    let mut throttled = None;
    for _ in 0..10 {
        if let Err(e) = plain.describe_statement().id(&id).send().await {
            throttled = Some(e);
            break;
        }
    }
    let error = throttled.expect("a describe past 3 a second is refused");
    assert_eq!(
        aws_sdk_redshiftdata::error::ProvideErrorMetadata::code(&error),
        Some("ThrottlingException"),
        "{error:?}"
    );
    assert!(h.emulator.data_api.api.throttled("DescribeStatement") >= 1);
    for seconds in [0, 31] {
        let refused = client
            .get_statement_result()
            .id(&id)
            .wait_time_seconds(seconds)
            .send()
            .await
            .unwrap_err();
        assert!(
            refused
                .as_service_error()
                .is_some_and(|e| e.is_validation_exception()),
            "{seconds}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn the_emulated_data_api_checks_parameters_as_documented() {
    let h = Harness::start().await;
    let execute = |name: &str, value: &str| {
        let parameter = aws_sdk_redshiftdata::types::SqlParameter::builder()
            .name(name)
            .value(value)
            .build()
            .unwrap();
        on_the_cluster(&h.emulator.clients.redshift)
            .sql("SELECT CAST(:n AS BIGINT) AS n")
            .parameters(parameter)
            .send()
    };
    // "SqlParameter": name matches [0-9a-zA-Z_]+, value has at least one character.
    for (name, value) in [("bad-name", "1"), ("n", "")] {
        let e = execute(name, value).await.unwrap_err();
        assert!(
            e.as_service_error()
                .is_some_and(|e| e.is_validation_exception()),
            "{name}={value:?}: {e:?}"
        );
    }
    let id = execute("n", "41").await.unwrap().id.unwrap();
    let result = eventually(
        "the statement's result",
        Duration::from_secs(10),
        || async {
            match h
                .emulator
                .clients
                .redshift
                .get_statement_result()
                .id(&id)
                .send()
                .await
            {
                Ok(result) => Ok(result),
                Err(e) => Err(format!("{e:?}")),
            }
        },
    )
    .await;
    assert_eq!(result.total_num_rows, 1);
    assert_eq!(
        result.records()[0][0],
        aws_sdk_redshiftdata::types::Field::LongValue(41)
    );
    assert_eq!(result.column_metadata()[0].type_name(), Some("int8"));
    assert!(result.next_token().is_none());

    // "SqlParameter": Redshift converts a value to the type the statement needs, so an
    // uncast placeholder compared with a BIGINT column matches its number.
    let k = aws_sdk_redshiftdata::types::SqlParameter::builder()
        .name("k")
        .value("7")
        .build()
        .unwrap();
    let converted = on_the_cluster(&h.emulator.clients.redshift)
        .sql("SELECT c_name FROM tpch.customer WHERE c_custkey = :k")
        .parameters(k)
        .wait_time_seconds(10)
        .send()
        .await
        .unwrap();
    assert_eq!(converted.status().map(|s| s.as_str()), Some("FINISHED"));
    let rows = h
        .emulator
        .clients
        .redshift
        .get_statement_result()
        .id(converted.id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        rows.records()[0][0],
        aws_sdk_redshiftdata::types::Field::StringValue("Customer#000000007".into())
    );
}

/// An `ExecuteStatement` on the emulator's cluster, as its secret, in its database.
fn on_the_cluster(
    client: &aws_sdk_redshiftdata::Client,
) -> aws_sdk_redshiftdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder {
    client
        .execute_statement()
        .cluster_identifier(export_emulator::provision::CLUSTER_ID)
        .secret_arn(export_emulator::provision::SECRET_ARN)
        .database(export_emulator::provision::DATABASE)
}
