//! The export job and its history: the vocabulary every other module speaks.

pub use export_api::{Archive, Compression, Delivery, Format, JobEvent, JobStatus, Millis};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whose a job is: derived from the identity API Gateway's IAM authorisation reports by
/// [`crate::identity::RoleOwner::owner_of`] (an IAM ARN, or a Cognito identity).
/// Every job belongs to exactly one owner, and only that owner can see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner(pub String);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A move of the lifecycle that is allowed. Only this module makes them, so an adapter that
/// stores one never has to ask whether it is legal: the policy lives here, the adapters store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    from: JobStatus,
    to: JobStatus,
}

impl Transition {
    /// The statement started.
    pub const START: Transition = Transition {
        from: JobStatus::Queued,
        to: JobStatus::Running,
    };
    /// The statement finished; its output is being packaged.
    pub const FINISH: Transition = Transition {
        from: JobStatus::Running,
        to: JobStatus::Packaging,
    };
    /// The archive is written.
    pub const SUCCEED: Transition = Transition {
        from: JobStatus::Packaging,
        to: JobStatus::Succeeded,
    };

    /// `from → to`, if the lifecycle has that move: forward along QUEUED → RUNNING →
    /// PACKAGING → SUCCEEDED, or to FAILED / CANCELLED from any state not yet terminal.
    pub fn new(from: JobStatus, to: JobStatus) -> Option<Transition> {
        use JobStatus::*;
        let allowed = match (from, to) {
            (Queued, Running) | (Running, Packaging) | (Packaging, Succeeded) => true,
            (from, Failed | Cancelled) => !from.is_terminal(),
            _ => false,
        };
        allowed.then_some(Transition { from, to })
    }

    /// To FAILED from `from`; none from a state that has already ended.
    pub fn fail(from: JobStatus) -> Option<Transition> {
        Transition::new(from, JobStatus::Failed)
    }

    /// To CANCELLED from `from`; none from a state that has already ended.
    pub fn cancel(from: JobStatus) -> Option<Transition> {
        Transition::new(from, JobStatus::Cancelled)
    }

    pub fn from(self) -> JobStatus {
        self.from
    }

    pub fn to(self) -> JobStatus {
        self.to
    }

    /// Whether the move settles the job (see [`Job::is_settled`]): only a cancel does, since
    /// a job that ends any other way still has its notice to send.
    pub fn settles(self) -> bool {
        self.to == JobStatus::Cancelled
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from, self.to)
    }
}

/// A bucket and key; the object store port's address of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Parses `s3://bucket/key`, the form UNLOAD and its manifest use.
    pub fn parse_s3_url(url: &str) -> Option<ObjectRef> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        (!bucket.is_empty()).then(|| ObjectRef::new(bucket, key))
    }

    pub fn s3_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// One export job: the request as accepted, and what has happened to it since.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub owner: Owner,
    pub dataset: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub format: Format,
    pub compression: Compression,
    pub archive: Archive,
    pub notify: Vec<String>,
    /// Where the finished export goes besides `notify`'s mail (webhooks, buckets, more mail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliver: Vec<Delivery>,
    /// Which of `params` were bound to the caller's access rather than given by the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<String>,
    /// Its caller's share of turns for warehouse slots when it was submitted (the access
    /// policy's group priority; 1 unless a group says more).
    #[serde(
        default = "normal_priority",
        skip_serializing_if = "is_normal_priority"
    )]
    pub priority: u32,
    /// The group whose turns for warehouse slots it takes, when its caller's group shares
    /// them (`share_turns` in the access policy); `None`: its caller's own turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns_of: Option<String>,
    pub status: JobStatus,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The warehouse statement running the UNLOAD, once started.
    pub statement_id: Option<String>,
    /// Which start of the job that statement is: each has its own client token and its own
    /// UNLOAD prefix (see `UnloadSettings::attempt_at`). 0 for jobs from before attempts.
    #[serde(default)]
    pub unload_attempt: u32,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// The packaged archive, once written; with `archive: none`, the UNLOAD's manifest, which
    /// names the parts handed out.
    pub archive_object: Option<ObjectRef>,
    pub error: Option<String>,
    /// Set once the completion email has been handed to the mailer, so it is sent once.
    pub notified_at: Option<Millis>,
    /// The subscription whose run this job is, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
}

/// An export run on a schedule, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub owner: Owner,
    /// What each run submits, its parameters as written (relative dates unresolved), and
    /// the schedule.
    pub request: export_api::SubscriptionRequest,
    pub paused: bool,
    pub created_at: Millis,
    /// When the schedule starts: a rate's periods count from it.
    pub start: Millis,
    /// When it runs next; None while paused, or when the schedule never runs again.
    pub next_run_at: Option<Millis>,
    pub runs: u64,
    /// One more on every change: each write is conditional on the version it read.
    pub version: u64,
}

fn normal_priority() -> u32 {
    1
}

fn is_normal_priority(priority: &u32) -> bool {
    *priority == 1
}

/// The fields a transition may set alongside the new status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobUpdate {
    pub statement_id: Option<String>,
    pub unload_attempt: Option<u32>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub archive_object: Option<ObjectRef>,
    pub error: Option<String>,
}

impl Job {
    /// Nothing more will happen to it: it ended and its notice went out, or it was cancelled
    /// (which sends none). The sweep looks only at jobs that are not.
    pub fn is_settled(&self) -> bool {
        match self.status {
            JobStatus::Cancelled => true,
            JobStatus::Succeeded | JobStatus::Failed => self.notified_at.is_some(),
            _ => false,
        }
    }

    /// The job as `transition` leaves it: its new status and the update's fields, changed at `at`.
    pub fn apply(&mut self, transition: Transition, update: &JobUpdate, at: Millis) {
        self.status = transition.to();
        self.updated_at = at;
        if let Some(v) = &update.statement_id {
            self.statement_id = Some(v.clone());
        }
        if let Some(v) = update.unload_attempt {
            self.unload_attempt = v;
        }
        if let Some(v) = update.rows {
            self.rows = Some(v);
        }
        if let Some(v) = update.bytes {
            self.bytes = Some(v);
        }
        if let Some(v) = &update.archive_object {
            self.archive_object = Some(v.clone());
        }
        if let Some(v) = &update.error {
            self.error = Some(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_only_moves_forward_or_to_an_end() {
        use JobStatus::*;
        assert!(Transition::new(Queued, Running).is_some());
        assert!(Transition::new(Running, Packaging).is_some());
        assert!(Transition::new(Packaging, Succeeded).is_some());
        assert!(Transition::new(Queued, Cancelled).is_some());
        assert!(Transition::new(Packaging, Failed).is_some());
        assert!(Transition::new(Queued, Packaging).is_none());
        assert!(Transition::new(Running, Queued).is_none());
        for end in [Succeeded, Failed, Cancelled] {
            for next in JobStatus::ALL {
                assert!(Transition::new(end, next).is_none(), "{end} must be final");
            }
        }
    }

    #[test]
    fn only_settling_moves_say_so() {
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let Some(transition) = Transition::new(from, to) else {
                    continue;
                };
                assert_eq!((transition.from(), transition.to()), (from, to));
                let mut job = sample_job(from);
                job.apply(transition, &JobUpdate::default(), 5);
                assert_eq!(
                    transition.settles(),
                    job.is_settled(),
                    "{transition}: settles() must agree with Job::is_settled"
                );
            }
        }
        assert_eq!(Transition::fail(JobStatus::Succeeded), None);
        assert_eq!(Transition::cancel(JobStatus::Cancelled), None);
        assert_eq!(
            Transition::new(JobStatus::Queued, JobStatus::Running),
            Some(Transition::START)
        );
    }

    fn sample_job(status: JobStatus) -> Job {
        let mut job = crate::testing::conformance::queued_job("r1", &Owner("o".into()), 1);
        job.status = status;
        job
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert_eq!("tar.gz".parse::<Archive>().unwrap(), Archive::TarGz);
        assert!("xml"
            .parse::<Format>()
            .unwrap_err()
            .contains("csv, parquet, json"));
    }

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        let r = ObjectRef::parse_s3_url("s3://results/exports/abc/0000_part_00").unwrap();
        assert_eq!(r.bucket, "results");
        assert_eq!(r.key, "exports/abc/0000_part_00");
        assert_eq!(r.s3_url(), "s3://results/exports/abc/0000_part_00");
        assert!(ObjectRef::parse_s3_url("https://x/y").is_none());
    }
}
