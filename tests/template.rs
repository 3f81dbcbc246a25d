//! The SAM template, checked with no AWS account: `deploy/check` runs `sam validate --lint`,
//! cfn-lint, the guard rules' own tests and `cfn-guard validate` (installing the tools into
//! `.deploy-tools` on first use).

use crate::common::repo;
use std::process::Command;

#[test]
fn the_template_passes_sam_cfn_lint_and_the_projects_guard_rules() {
    let output = Command::new(repo().join("deploy/check"))
        .output()
        .expect("deploy/check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "deploy/check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("is a valid SAM Template"), "{stdout}");
    assert!(stdout.contains("Status = PASS"), "{stdout}");
    // Every rule ran and passed; none was skipped for lack of resources to check.
    for rule in [
        "buckets_encrypted",
        "queues_encrypted",
        "tables_encrypted",
        "buckets_block_public_access",
        "bucket_policies_require_tls",
        "roles_name_their_actions",
        "roles_name_their_resources",
        "functions_have_their_own_roles",
        "queues_have_dead_letter_queues",
        "queue_consumers_report_failed_items",
        "queue_consumers_cap_their_concurrency",
        "tables_expire_and_recover",
        "log_groups_expire",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("/{rule} ")) && l.trim_end().ends_with("PASS")),
            "{rule} did not pass:\n{stdout}"
        );
    }
}

/// The environment variable names the template gives `function` (its own and the globals'):
/// in the template they are the only all-caps keys.
fn template_variables(template: &str, function: &str) -> Vec<String> {
    let block = |start: &str| -> Vec<&str> {
        let mut lines = template.lines().skip_while(|l| *l != start);
        let first = lines.next().expect("the block is in the template");
        let indent = first.len() - first.trim_start().len();
        lines
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .collect()
    };
    let mut lines = block("Globals:");
    lines.extend(block(&format!("  {function}:")));
    lines
        .iter()
        .filter_map(|l| l.trim().split_once(':').map(|(key, _)| key))
        .filter(|key| {
            key.len() > 1
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_template_gives_each_function_every_variable_it_requires() {
    use export_aws::env::Env;
    use export_aws::functions;
    let template = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let clients = functions::Clients::new(&sdk, false);
    type Build = fn(&mut Env, &functions::Clients);
    let builds: [(&str, Build); 4] = [
        ("ReceiverFunction", |env, c| {
            drop(functions::receiver(env, c))
        }),
        ("StatusFunction", |env, c| drop(functions::status(env, c))),
        ("ProcessorFunction", |env, c| {
            drop(functions::processor(env, c))
        }),
        ("PollerFunction", |env, c| drop(functions::poller(env, c))),
    ];
    for (function, build) in builds {
        let names = template_variables(&template, function);
        assert!(
            names.contains(&"CONTROL_TABLE".to_owned()),
            "{function}: {names:?}"
        );
        // Any non-empty value: this checks names, not values.
        let mut env = Env::from_pairs(names.iter().map(|n| (n.clone(), "1".to_owned())));
        build(&mut env, &clients);
        if let Err(error) = env.finish() {
            assert!(
                error.missing.is_empty(),
                "{function} lacks {:?} in template.yaml",
                error.missing
            );
        }
    }
}

/// The API events of `function` in the template: (method, path) pairs, from either the
/// one-line `{ …, Path: …, Method: … }` form or the block form.
fn template_routes(template: &str, function: &str) -> std::collections::BTreeSet<(String, String)> {
    let start = format!("  {function}:");
    let mut lines = template.lines().skip_while(|l| *l != start);
    lines.next().expect("the function is in the template");
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .collect();
    let text = block.join("\n");
    let value = |key: &str, from: &str| -> Option<String> {
        let rest = &from[from.find(&format!("{key}: "))? + key.len() + 2..];
        if let Some(quoted) = rest.strip_prefix('"') {
            return Some(quoted[..quoted.find('"')?].to_owned());
        }
        let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_owned())
    };
    text.split("Type: Api")
        .skip(1)
        .filter_map(|event| {
            Some((
                value("Method", event)?.to_uppercase(),
                value("Path", event)?,
            ))
        })
        .collect()
}

#[test]
fn the_template_routes_every_operation_of_the_contract_to_its_function() {
    use export_core::http::{contract_operations, receiver_routes, subscription_routes};
    let template = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    // The receiver serves the commands and the subscriptions.
    let mut receiver_doc = receiver_routes().into_openapi();
    receiver_doc.merge(subscription_routes().into_openapi());
    let receiver = contract_operations(&serde_json::to_value(receiver_doc).unwrap());
    let all = contract_operations(export_core::http::contract());
    let status: std::collections::BTreeSet<_> = all.difference(&receiver).cloned().collect();
    // The status function serves the rest: its own routes, and the lookups.
    assert!(status.iter().any(|(_, path)| path.starts_with("/lookups/")));
    assert_eq!(template_routes(&template, "ReceiverFunction"), receiver);
    assert_eq!(template_routes(&template, "StatusFunction"), status);
}

/// Each lookup route of the contract has throttling of its own in the stage, at the lookup
/// rate: lookups draw on the Data API's per-account quotas, apart from the stage's rate.
#[test]
fn the_stage_throttles_every_lookup_route_apart() {
    let template = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let lookups: Vec<String> = export_core::http::contract_operations(
        &serde_json::to_value(export_core::http::lookup_routes().into_openapi()).unwrap(),
    )
    .into_iter()
    .map(|(_, path)| path)
    .collect();
    assert_eq!(lookups.len(), 3, "{lookups:?}");
    for path in lookups {
        let encoded = format!(
            "- ResourcePath: \"{}\"",
            path.replace('/', "~1").replacen("~1", "/~1", 1)
        );
        let at = lines
            .iter()
            .position(|l| l.trim() == encoded)
            .unwrap_or_else(|| panic!("no method settings for {path} ({encoded})"));
        let setting = lines[at..at + 5].join("\n");
        assert!(
            setting.contains("HttpMethod: GET")
                && setting.contains("ThrottlingRateLimit: !Ref LookupRateLimit")
                && setting.contains("ThrottlingBurstLimit: !Ref LookupBurstLimit"),
            "{setting}"
        );
    }
}

/// The status function tells expired files (404 from S3) from refused reads (403) only with
/// `s3:ListBucket` on both buckets ("GetObject", Permissions, Amazon S3 API Reference).
#[test]
fn the_status_role_may_list_the_buckets_it_reads() {
    let role = resource("StatusRole");
    let start = role.find("Sid: TellExpiredFiles").expect("the statement");
    let statement: String = role[start..].lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(
        statement.contains("Action: s3:ListBucket")
            && statement.contains("!GetAtt DownloadsBucket.Arn")
            && statement.contains("!GetAtt ResultsBucket.Arn"),
        "{statement}"
    );
}

/// The downloads bucket's rule for abandoned uploads outlasts the longest packaging: S3's
/// largest object (5 TiB) at the slowest packaging DEPLOY.md gives (about 21 MiB/s, at
/// `PollerMemoryMB` 512), or it would remove an archive still being written.
#[test]
fn abandoned_archive_uploads_are_removed_only_after_the_longest_packaging() {
    let bucket = resource("DownloadsBucket");
    let rule = &bucket[bucket.find("Id: expire-archives").expect("the rule")..];
    let days: u64 = rule
        .split("DaysAfterInitiation:")
        .nth(1)
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches(['}', ' '])
                .split_whitespace()
                .next()
        })
        .and_then(|n| n.trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("no abort rule in:\n{rule}"));
    let longest_seconds = 5u64 * 1024 * 1024 / 21; // 5 TiB in MiB, at 21 MiB/s
    assert!(
        days * 86_400 > longest_seconds,
        "{days} days against {longest_seconds} s of packaging"
    );
}

/// The template's lines for resource `name`: from its name to the next resource.
fn resource(name: &str) -> String {
    let template = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let start = format!("  {name}:");
    template
        .lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.starts_with("  ") || l.starts_with("   "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The partner role of docs/DEPLOY.md ("Giving a partner access") may call exactly the
/// routes of its dataset and its own jobs': each resource it names is an operation of the
/// contract, and it names every operation of a dataset's own routes.
#[test]
fn the_partner_example_grants_routes_the_api_has() {
    let example =
        std::fs::read_to_string(repo().join("deploy/examples/partner-role.yaml")).unwrap();
    let operations = export_core::http::contract_operations(export_core::http::contract());
    let granted: std::collections::BTreeSet<(String, String)> = example
        .lines()
        .filter_map(|l| l.split("${StageName}/").nth(1))
        .map(|route| {
            let route = route.trim_end_matches('"');
            let (method, path) = route.split_once('/').unwrap();
            let path = format!("/{path}")
                .replace("${Dataset}", "{name}")
                .replace("/exports/*", "/exports/{id}");
            (method.to_owned(), path)
        })
        .collect();
    assert_eq!(granted.len(), 7, "{granted:?}");
    for route in &granted {
        assert!(
            operations.contains(route),
            "{route:?} is not a route of the API"
        );
    }
    for route in operations
        .iter()
        .filter(|(_, p)| p.starts_with("/datasets/{name}"))
    {
        assert!(granted.contains(route), "{route:?} is not granted");
    }
}
