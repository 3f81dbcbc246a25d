//! The web console in a real browser (headless Chromium over WebDriver), against the local
//! stack: the catalogue, a lookup, a validation error beside its field, an export followed to
//! SUCCEEDED and its archive downloaded and read, ownership in the list, and cancelling.
//! Screenshots of the main views go to `CONSOLE_SCREENSHOTS` (default: the test target's
//! scratch directory); `docs/console/` holds the ones the README shows.

use crate::browser::Browser;
use crate::common::*;
use export_api::{Archive, JobStatus};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn screenshots() -> PathBuf {
    std::env::var_os("CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console"))
}

/// The request id of the export on screen, from the page's address.
async fn export_on_screen(browser: &Browser) -> String {
    let id = browser
        .wait_for(
            "the export's page",
            Duration::from_secs(20),
            "const m = location.hash.match(/^#\\/exports\\/(.+)$/); return m && decodeURIComponent(m[1]);",
        )
        .await;
    id.as_str().unwrap().to_owned()
}

async fn status_on_screen(browser: &Browser, wanted: &str, deadline: Duration) {
    browser
        .wait_for(
            &format!("{wanted} on the export's page"),
            deadline,
            &format!(
                "const s = document.getElementById('job-status'); return s && s.textContent === '{wanted}';"
            ),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_looks_up_exports_downloads_and_keeps_callers_apart() {
    let stack = start().await;
    let browser = Browser::start().await;
    let shots = screenshots();

    // The catalogue, with every dataset.
    browser.goto(&stack.stack.console_url()).await;
    browser
        .wait_for(
            "the catalogue",
            Duration::from_secs(20),
            "return document.querySelectorAll('#datasets > li').length;",
        )
        .await;
    let shown = browser
        .eval(
            "return [...document.querySelectorAll('#datasets > li')].map(li => li.dataset.dataset);",
            json!([]),
        )
        .await;
    let catalogue = stack.alice.datasets().await.unwrap();
    let names: Vec<Value> = catalogue
        .datasets
        .into_iter()
        .map(|d| Value::String(d.name))
        .collect();
    assert_eq!(shown, Value::Array(names));
    browser.screenshot(&shots.join("catalogue.png")).await;

    // A value the API refuses: its message appears beside the field it names.
    browser.click("a[href='#/datasets/customers']").await;
    browser.type_into("#param-ids", "1,two").await;
    browser.click("#lookup-button").await;
    let message = browser
        .wait_for(
            "the error beside ids",
            Duration::from_secs(20),
            "return document.getElementById('param-ids-error').textContent;",
        )
        .await;
    let refused = stack
        .alice
        .send(http::Method::GET, "/lookups/customers?ids=1,two", None, &[])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(message, refused["error"]["message"], "the API's own words");
    assert_eq!(refused["error"]["field"], "params.ids[1]");
    let invalid = browser
        .eval(
            "return document.getElementById('param-ids').getAttribute('aria-invalid');",
            json!([]),
        )
        .await;
    assert_eq!(invalid, "true");
    browser.screenshot(&shots.join("validation.png")).await;

    // A lookup: the rows as a table, from the warehouse, then from the cache.
    browser.type_into("#param-ids", "3,1,2").await;
    browser.click("#lookup-button").await;
    let table_script = "const rows = document.querySelectorAll('#lookup-table tbody tr'); \
         return rows.length === 3 && [...rows].map(r => [...r.cells].map(c => c.textContent));";
    let table = browser
        .wait_for("three rows", Duration::from_secs(20), table_script)
        .await;
    let answer = stack
        .alice
        .lookup("customers", &[("ids", "1,2,3")])
        .await
        .unwrap();
    let expected: Vec<Value> = answer
        .rows
        .iter()
        .map(|row| {
            json!(answer
                .columns
                .iter()
                .map(|c| match &row[&c.name] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>())
        })
        .collect();
    assert_eq!(table, json!(expected));
    let meta = browser
        .eval(
            "return document.getElementById('lookup-meta').textContent;",
            json!([]),
        )
        .await;
    assert!(meta.as_str().unwrap().starts_with("3 rows"), "{meta}");
    browser.click("#lookup-button").await;
    browser
        .wait_for(
            "an answer from the cache",
            Duration::from_secs(20),
            "return document.getElementById('lookup-meta').textContent.includes('from the cache');",
        )
        .await;
    browser.screenshot(&shots.join("lookup.png")).await;

    // An export of the same customers, followed to SUCCEEDED.
    browser.click("#export-button").await;
    let id = export_on_screen(&browser).await;
    status_on_screen(&browser, "SUCCEEDED", Duration::from_secs(60)).await;
    // Its notice is the history's last event, written after SUCCEEDED: the page reads the
    // history on for a few seconds after the end, and shows it whole.
    wait_for_mails(&stack.stack, &id, 1).await;
    let history: Vec<Value> = stack
        .alice
        .events(&id)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| Value::String(e.step))
        .collect();
    assert_eq!(history.last(), Some(&json!("notified")));
    let expected = serde_json::to_string(&history).unwrap();
    browser
        .wait_for(
            "the timeline showing the job's whole history",
            Duration::from_secs(20),
            &format!(
                "const steps = [...document.querySelectorAll('#history .step')].map(s => s.textContent); \
                 return JSON.stringify(steps) === {};",
                serde_json::to_string(&expected).unwrap()
            ),
        )
        .await;
    let progress = browser
        .eval(
            "return [...document.querySelectorAll('#progress li')].map(li => li.className);",
            json!([]),
        )
        .await;
    assert_eq!(progress, json!(["done", "done", "done", "done last"]));
    let cancel = browser
        .eval(
            "return getComputedStyle(document.getElementById('cancel-button')).display;",
            json!([]),
        )
        .await;
    assert_eq!(cancel, "none", "a finished export offers no cancel");
    browser.screenshot(&shots.join("export.png")).await;

    // The download button saves the archive; it holds the three customers.
    browser.click("#download-link").await;
    let saved = browser.downloaded().await;
    assert_eq!(
        saved.file_name().unwrap().to_string_lossy(),
        format!("customers-{id}.zip"),
        "the name the link gives it"
    );
    let files = export_client::unpack::unpack(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let csv = String::from_utf8(files[0].contents.clone()).unwrap();
    let keys: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(keys, ["1", "2", "3"], "{csv}");
    for row in &answer.rows {
        assert!(csv.contains(row["c_name"].as_str().unwrap()), "{csv}");
    }

    // Alice's exports list it; bob's do not, and bob cannot open it.
    browser.click("a[data-nav='exports']").await;
    let row = format!("#exports tr[data-request-id='{id}']");
    browser
        .wait_for(
            "alice's export in her list",
            Duration::from_secs(20),
            &format!("return !!document.querySelector(\"{row}\");"),
        )
        .await;
    browser.screenshot(&shots.join("exports.png")).await;
    browser.choose("#identity", "bob").await;
    browser
        .wait_for(
            "bob's list",
            Duration::from_secs(20),
            "const l = document.querySelector('.lede'); return l && l.textContent.includes('bob');",
        )
        .await;
    let seen = browser
        .eval(
            &format!("return !!document.querySelector(\"{row}\");"),
            json!([]),
        )
        .await;
    assert_eq!(seen, false, "bob sees alice's export");
    // Bob's quotas, from the shipped policy's suppliers group, beside his list.
    let quota = browser
        .wait_for(
            "bob's quotas",
            Duration::from_secs(20),
            "const q = document.getElementById('quota'); return q && q.textContent;",
        )
        .await;
    let quota = quota.as_str().unwrap_or_default().to_owned();
    assert!(
        quota.contains("Exports not yet ended")
            && quota.contains("of 100")
            && quota.contains("20 a second"),
        "{quota}"
    );
    browser
        .eval(
            "location.hash = '#/exports/' + encodeURIComponent(arguments[0]);",
            json!([id]),
        )
        .await;
    let error = browser
        .wait_for(
            "bob refused alice's export",
            Duration::from_secs(20),
            "const e = document.getElementById('job-error'); return e && e.textContent;",
        )
        .await;
    assert!(
        error.as_str().unwrap().contains("(404 not_found)"),
        "{error}"
    );

    // Bob, a supplier's partner, is offered his datasets only; his supplier is shown fixed,
    // and a lookup from the page reads his rows only.
    browser.eval("location.hash = '#/';", json!([])).await;
    let offered = browser
        .wait_for(
            "bob's catalogue",
            Duration::from_secs(20),
            "const l = [...document.querySelectorAll('#datasets > li')].map(li => li.dataset.dataset); \
             return l.length > 0 && !l.includes('customers') && l;",
        )
        .await;
    assert_eq!(offered, json!(["product_detail", "supplier_shipments"]));
    browser
        .eval(
            "location.hash = '#/datasets/supplier_shipments';",
            json!([]),
        )
        .await;
    let fixed = browser
        .wait_for(
            "bob's supplier, fixed",
            Duration::from_secs(20),
            "const i = document.getElementById('param-suppliers'); return i && i.readOnly && i.value;",
        )
        .await;
    assert_eq!(fixed, json!("7"));
    browser
        .eval(
            "document.getElementById('param-ship_from').value = '1995-01-01'; \
             document.getElementById('param-ship_to').value = '1995-12-31';",
            json!([]),
        )
        .await;
    browser.click("#lookup-button").await;
    let suppliers = browser
        .wait_for(
            "bob's rows",
            Duration::from_secs(20),
            "const rows = [...document.querySelectorAll('#lookup-table tbody tr')]; \
             return rows.length > 0 && [...new Set(rows.map(r => r.cells[0].textContent))];",
        )
        .await;
    assert_eq!(suppliers, json!(["7"]));

    // Bob's list, a page of 20 at a time: 21 exports make two pages.
    for _ in 0..21 {
        submit_ok(
            &stack.bob,
            json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
        )
        .await;
    }
    browser.click("a[data-nav='exports']").await;
    let rows = "return document.querySelectorAll('#exports tbody tr').length;";
    browser
        .wait_for(
            "a first page of 20",
            Duration::from_secs(20),
            &format!("const n = (() => {{ {rows} }})(); return n === 20 && n;"),
        )
        .await;
    browser.click("#older").await;
    browser
        .wait_for(
            "the older page with the 21st",
            Duration::from_secs(20),
            &format!("const n = (() => {{ {rows} }})(); return n === 1 && n;"),
        )
        .await;
    browser.click("#newer").await;
    browser
        .wait_for(
            "back to the newest 20",
            Duration::from_secs(20),
            &format!("const n = (() => {{ {rows} }})(); return n === 20 && n;"),
        )
        .await;

    // An export without an archive: its parts, each with its own link.
    browser.choose("#identity", "alice").await;
    browser
        .eval("location.hash = '#/datasets/product_detail';", json!([]))
        .await;
    browser.type_into("#param-sku", "FLOWER12").await;
    browser.choose("#option-archive", "none").await;
    browser.click("#export-button").await;
    let parts_id = export_on_screen(&browser).await;
    assert_ne!(parts_id, id);
    status_on_screen(&browser, "SUCCEEDED", Duration::from_secs(60)).await;
    let links = browser
        .wait_for(
            "the parts' links",
            Duration::from_secs(20),
            "const a = [...document.querySelectorAll('#parts tbody a')]; return a.length && a.map(l => l.href);",
        )
        .await;
    let parts = stack.alice.all_parts(&parts_id).await.unwrap();
    assert_eq!(links.as_array().unwrap().len(), parts.len());
    let part = stack.alice.fetch(links[0].as_str().unwrap()).await.unwrap();
    assert!(
        String::from_utf8_lossy(&part).contains("FLOWER12"),
        "the part's link serves the part"
    );

    browser.close().await;
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_cancels_a_running_export() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // Long enough to be seen running and cancelled; the cancel ends it at once.
    config.statement_delay = Duration::from_secs(60);
    let stack = start_with(dir, config).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}#/datasets/shipped_lineitems",
            stack.stack.console_url()
        ))
        .await;
    browser
        .wait_for(
            "the form",
            Duration::from_secs(20),
            "return !!document.getElementById('param-ship_to');",
        )
        .await;
    // A date field's typing order follows the browser's locale; its value does not.
    browser
        .eval(
            "for (const [id, v] of [['param-ship_from', '1992-01-01'], ['param-ship_to', '1992-12-31']]) { \
               const input = document.getElementById(id); input.value = v; \
               input.dispatchEvent(new Event('input', { bubbles: true })); }",
            json!([]),
        )
        .await;
    browser.choose("#option-archive", "tar.gz").await;
    browser.click("#export-button").await;
    let id = export_on_screen(&browser).await;
    status_on_screen(&browser, "RUNNING", Duration::from_secs(20)).await;
    browser.click("#cancel-button").await;
    status_on_screen(&browser, "CANCELLED", Duration::from_secs(20)).await;
    let shown = browser
        .eval(
            "return getComputedStyle(document.getElementById('cancel-button')).display;",
            json!([]),
        )
        .await;
    assert_eq!(shown, "none", "nothing left to cancel");
    let progress = browser
        .eval(
            "return [...document.querySelectorAll('#progress li')].map(li => li.textContent + ':' + li.className);",
            json!([]),
        )
        .await;
    assert_eq!(
        progress,
        json!([
            "QUEUED:done",
            "RUNNING:done",
            "PACKAGING:pending",
            "SUCCEEDED:pending",
            "CANCELLED:ended-badly"
        ])
    );
    let status = stack.alice.status(&id).await.unwrap();
    assert_eq!(status.summary.status, JobStatus::Cancelled);
    assert_eq!(status.summary.archive, Archive::TarGz);
    browser.close().await;
    stack.stack.stop().await;
}

/// Bob subscribes from the console: the form creates it, its first run arrives in the runs
/// table, pausing shows in the list, and a test notice reaches his receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_subscribes_shows_runs_pauses_and_tests_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.subscription_tick = Duration::from_millis(200);
    let stack = start_with(dir, config).await;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::start().await;
    browser.goto(&stack.stack.console_url()).await;
    browser
        .wait_for(
            "the catalogue",
            Duration::from_secs(20),
            "return document.querySelectorAll('#datasets > li').length;",
        )
        .await;
    browser.choose("#identity", "bob").await;
    browser
        .eval("location.hash = '#/subscriptions';", json!([]))
        .await;
    browser
        .wait_for(
            "the subscription form",
            Duration::from_secs(20),
            "return !!document.getElementById('no-subscriptions') && !!document.getElementById('sub-dataset');",
        )
        .await;
    browser.choose("#sub-dataset", "supplier_shipments").await;
    browser
        .eval(
            "const f = document.getElementById('subscribe-form'); \
             f.elements['sub-params'].value = '{\"ship_from\": \"yesterday-30y\", \"ship_to\": \"today-30y\"}'; \
             f.elements['sub-schedule'].value = 'rate(1 day)'; \
             f.elements['sub-now'].checked = true; \
             f.elements['sub-s3'].value = 's3://supplier-7-feed/inbound/';",
            json!([]),
        )
        .await;
    browser.click("#subscribe-button").await;
    let id = browser
        .wait_for(
            "the subscription's page",
            Duration::from_secs(20),
            "const m = location.hash.match(/^#\\/subscriptions\\/(.+)$/); return m && decodeURIComponent(m[1]);",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    // Its first run arrives, an export of bob's that succeeds.
    let run = eventually("the first run on the page", Duration::from_secs(60), || async {
        // A hash of its own each time: the page shows the subscription afresh.
        browser
            .eval(
                "location.hash = '#/subscriptions/' + encodeURIComponent(arguments[0]) + '?' + Date.now();",
                json!([id]),
            )
            .await;
        let cells = browser
            .eval(
                "const r = document.querySelector('#runs tbody tr'); return r && [...r.cells].map(c => c.textContent);",
                json!([]),
            )
            .await;
        match cells.as_array() {
            Some(cells) if cells[2] == "SUCCEEDED" => Ok(cells[1].as_str().unwrap().to_owned()),
            _ => Err(cells),
        }
    })
    .await;
    assert_eq!(
        stack.bob.status(&run).await.unwrap().summary.status,
        JobStatus::Succeeded
    );
    browser
        .screenshot(&screenshots().join("subscription.png"))
        .await;
    // Paused from its page; the list says so.
    browser.click("#pause-button").await;
    browser
        .wait_for(
            "paused",
            Duration::from_secs(20),
            "const s = document.getElementById('subscription-state'); return s && s.textContent === 'paused';",
        )
        .await;
    assert!(stack.bob.subscription(&id).await.unwrap().paused);
    browser
        .eval("location.hash = '#/subscriptions';", json!([]))
        .await;
    let state = browser
        .wait_for(
            "the list",
            Duration::from_secs(20),
            "const c = document.querySelector('#subscriptions tbody tr .state'); return c && c.textContent;",
        )
        .await;
    assert_eq!(state, "paused");
    // A test notice to bob's receiver.
    browser.type_into("#test-url", &hook).await;
    browser.click("#webhook-test-button").await;
    let said = browser
        .wait_for(
            "the test's answer",
            Duration::from_secs(20),
            "const r = document.getElementById('webhook-test-result').textContent; return r.includes('answered') && r;",
        )
        .await;
    assert!(said.as_str().unwrap().ends_with("answered 200"), "{said}");
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Alice sees none of it.
    assert!(stack
        .alice
        .subscriptions()
        .await
        .unwrap()
        .subscriptions
        .is_empty());
    browser.close().await;
    stack.stack.stop().await;
}
