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
