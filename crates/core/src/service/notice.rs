//! The job's one email, in words: what a ready export and a failed one say, as plain text
//! and HTML. The bodies are templates (`templates/notice/`); the HTML ones escape every value
//! they are given, so nothing a request carries can become markup.

use super::{DownloadLink, PartLink};
use crate::domain::Job;
use crate::ports::Email;
use askama::Template;

/// What the ready notice tells.
struct Ready<'a> {
    request_id: &'a str,
    dataset: &'a str,
    url: &'a str,
    file_name: &'a str,
    rows: u64,
    size: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "notice/ready.txt")]
struct ReadyText<'a> {
    n: &'a Ready<'a>,
}

#[derive(Template)]
#[template(path = "notice/ready.html")]
struct ReadyHtml<'a> {
    n: &'a Ready<'a>,
}

/// The parts a mail lists; the rest are at `GET /exports/{id}/parts`.
pub const MAILED_PARTS: usize = 20;

/// One part's line in the parts notice.
struct PartLine<'a> {
    name: &'a str,
    url: &'a str,
    size: String,
    rows: u64,
}

/// What the notice for an export handed out as parts tells.
struct Parts<'a> {
    request_id: &'a str,
    dataset: &'a str,
    parts: Vec<PartLine<'a>>,
    total: usize,
    more: usize,
    rows: u64,
    size: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "notice/parts.txt")]
struct PartsText<'a> {
    n: &'a Parts<'a>,
}

#[derive(Template)]
#[template(path = "notice/parts.html")]
struct PartsHtml<'a> {
    n: &'a Parts<'a>,
}

/// What the failure notice tells.
struct Failed<'a> {
    request_id: &'a str,
    dataset: &'a str,
    error: &'a str,
}

#[derive(Template)]
#[template(path = "notice/failed.txt")]
struct FailedText<'a> {
    n: &'a Failed<'a>,
}

#[derive(Template)]
#[template(path = "notice/failed.html")]
struct FailedHtml<'a> {
    n: &'a Failed<'a>,
}

fn render(template: &impl Template) -> String {
    // The templates are compiled in and their values are plain strings and numbers: rendering
    // can only fail on a formatter error, which these types never raise.
    template.render().expect("notice templates render")
}

/// The mail for a job whose archive is ready at `link`.
pub fn ready(job: &Job, link: &DownloadLink, to: Vec<String>) -> Email {
    let notice = Ready {
        request_id: &job.request_id,
        dataset: &job.dataset,
        url: &link.url,
        file_name: &link.file_name,
        rows: job.rows.unwrap_or(0),
        size: human_size(job.bytes.unwrap_or(0)),
        expires: chrono::DateTime::from_timestamp_millis(link.expires_at)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
    };
    Email {
        to,
        subject: format!("Export {} is ready ({})", job.dataset, job.request_id),
        text: render(&ReadyText { n: &notice }),
        html: render(&ReadyHtml { n: &notice }),
        request_id: job.request_id.clone(),
    }
}

/// The mail for a job handed out as `total` parts, the first of which are `links`.
pub fn ready_parts(job: &Job, links: &[PartLink], total: usize, to: Vec<String>) -> Email {
    let notice = Parts {
        request_id: &job.request_id,
        dataset: &job.dataset,
        parts: links
            .iter()
            .map(|p| PartLine {
                name: &p.name,
                url: &p.url,
                size: human_size(p.size),
                rows: p.rows,
            })
            .collect(),
        total,
        more: total.saturating_sub(links.len()),
        rows: job.rows.unwrap_or(0),
        size: human_size(job.bytes.unwrap_or(0)),
        expires: links
            .iter()
            .map(|p| p.expires_at)
            .min()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
    };
    Email {
        to,
        subject: format!("Export {} is ready ({})", job.dataset, job.request_id),
        text: render(&PartsText { n: &notice }),
        html: render(&PartsHtml { n: &notice }),
        request_id: job.request_id.clone(),
    }
}

/// The mail for a job that failed.
pub fn failed(job: &Job, to: Vec<String>) -> Email {
    let notice = Failed {
        request_id: &job.request_id,
        dataset: &job.dataset,
        error: job.error.as_deref().unwrap_or(""),
    };
    Email {
        to,
        subject: format!("Export {} failed ({})", job.dataset, job.request_id),
        text: render(&FailedText { n: &notice }),
        html: render(&FailedHtml { n: &notice }),
        request_id: job.request_id.clone(),
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobStatus, Owner};

    fn job(error: Option<&str>) -> Job {
        let mut job = crate::testing::conformance::queued_job("r-1", &Owner("o".into()), 0);
        job.dataset = "product<detail>".into();
        job.status = if error.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Succeeded
        };
        job.rows = Some(3);
        job.bytes = Some(1536);
        job.error = error.map(str::to_owned);
        job
    }

    #[test]
    fn the_ready_notice_links_the_archive_and_escapes_what_it_shows() {
        let link = DownloadLink {
            url: "https://downloads.example/a.zip?X-Amz-Expires=60&X-Amz-Signature=\"x\"".into(),
            file_name: "a<b>.zip".into(),
            expires_at: 1_795_395_230_806,
        };
        let email = ready(&job(None), &link, vec!["a@example.com".into()]);
        assert_eq!(email.subject, "Export product<detail> is ready (r-1)");
        assert!(
            email.text.contains(&format!("Download: {}\n", link.url)),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("Rows: 3\nSize: 1.5 KiB\n"),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("Link expires: 2026-11-23 00:53 UTC"),
            "{}",
            email.text
        );
        assert!(
            email.html.contains(
                "href=\"https://downloads.example/a.zip?X-Amz-Expires=60&#38;X-Amz-Signature=&#34;x&#34;\""
            ),
            "{}",
            email.html
        );
        assert!(
            email.html.contains("Download a&#60;b&#62;.zip"),
            "{}",
            email.html
        );
        assert!(!email.html.contains("<detail>"), "{}", email.html);
    }

    #[test]
    fn the_parts_notice_links_the_first_parts_and_points_at_the_rest() {
        let mut job = job(None);
        job.archive = crate::domain::Archive::None;
        let links: Vec<PartLink> = (0..2)
            .map(|i| PartLink {
                index: i,
                name: format!("product-000{i}.csv"),
                size: 2048,
                rows: 10,
                url: format!("https://results.example/p{i}?X-Amz-Signature=<x>&a=b"),
                expires_at: 1_795_395_230_806,
            })
            .collect();
        let email = ready_parts(&job, &links, 25, vec![]);
        assert!(
            email.text.contains("product-0001.csv (2.0 KiB, 10 rows): https://results.example/p1?X-Amz-Signature=<x>&a=b\n"),
            "{}",
            email.text
        );
        assert!(email.text.contains("… and 23 more."), "{}", email.text);
        assert!(
            email.text.contains("GET /exports/r-1/parts"),
            "{}",
            email.text
        );
        assert!(
            email
                .html
                .contains("p1?X-Amz-Signature=&#60;x&#62;&#38;a=b"),
            "{}",
            email.html
        );
        assert!(
            email.text.starts_with("Your export is ready: 25 parts"),
            "{}",
            email.text
        );
    }

    #[test]
    fn the_failure_notice_carries_the_error() {
        let email = failed(&job(Some("ERROR: <no such table>")), vec![]);
        assert_eq!(email.subject, "Export product<detail> failed (r-1)");
        assert!(
            email.text.contains("Error: ERROR: <no such table>"),
            "{}",
            email.text
        );
        assert!(!email.html.contains("<no such table>"), "{}", email.html);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
