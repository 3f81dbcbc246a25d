//! The export job and its history: the vocabulary every other module speaks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch; every timestamp the API stores or returns.
pub type Millis = i64;

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

/// Where a job is in its life. Only the moves a [`Transition`] can name exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Running,
    Packaging,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Packaging,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The lifecycle: forward along QUEUED → RUNNING → PACKAGING → SUCCEEDED, or to
    /// FAILED / CANCELLED from any state that is not yet terminal.
    fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            (Queued, Running) | (Running, Packaging) | (Packaging, Succeeded) => true,
            (from, Failed | Cancelled) => !from.is_terminal(),
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Packaging => "PACKAGING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown job status {s:?}"))
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

    /// `from → to`, if the lifecycle has that move.
    pub fn new(from: JobStatus, to: JobStatus) -> Option<Transition> {
        from.can_become(to).then_some(Transition { from, to })
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

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        // By hand: the derive cannot read a rename given as a macro's literal.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("must be one of: {}", Self::NAMES.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The file format the warehouse unloads into.
    Format { Csv = "csv", Parquet = "parquet", Json = "json" }
);
string_enum!(
    /// Compression of each unloaded part (text formats only; Parquet compresses itself).
    Compression { None = "none", Gzip = "gzip", Zstd = "zstd" }
);
string_enum!(
    /// The container the parts are packaged into for download; `none` hands out the parts
    /// themselves, a link each.
    Archive { Zip = "zip", TarGz = "tar.gz", None = "none" }
);

impl Format {
    /// The part file's extension, before any compression suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Json => "json",
        }
    }

    /// Whether the UNLOAD writes a header line at the top of each file (CSV is unloaded with
    /// `HEADER`; Parquet and JSON cannot have one).
    pub fn has_header_line(self) -> bool {
        self == Format::Csv
    }
}

impl Compression {
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

impl Archive {
    pub fn extension(self) -> &'static str {
        match self {
            Archive::Zip => "zip",
            Archive::TarGz => "tar.gz",
            Archive::None => "",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Archive::Zip => "application/zip",
            Archive::TarGz => "application/gzip",
            Archive::None => "application/octet-stream",
        }
    }
    /// Whether the parts are packaged into one archive (else the job's result is its parts).
    pub fn is_packaged(self) -> bool {
        self != Archive::None
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
}

/// One line of a job's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    /// Milliseconds since the epoch.
    #[schema(value_type = i64)]
    pub at: Millis,
    /// What happened: `submitted`, `started`, `finished`, `packaged`, `notified`, …
    pub step: String,
    /// `ok`, `error`, or the status the job moved to.
    pub outcome: String,
    pub message: String,
}

impl JobEvent {
    pub fn new(at: Millis, step: &str, outcome: &str, message: impl Into<String>) -> Self {
        JobEvent {
            at,
            step: step.to_owned(),
            outcome: outcome.to_owned(),
            message: message.into(),
        }
    }
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
        assert!(Queued.can_become(Running));
        assert!(Running.can_become(Packaging));
        assert!(Packaging.can_become(Succeeded));
        assert!(Queued.can_become(Cancelled));
        assert!(Packaging.can_become(Failed));
        assert!(!Queued.can_become(Packaging));
        assert!(!Running.can_become(Queued));
        for end in [Succeeded, Failed, Cancelled] {
            for next in JobStatus::ALL {
                assert!(!end.can_become(next), "{end} must be final");
            }
        }
    }

    #[test]
    fn only_settling_moves_say_so() {
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let Some(transition) = Transition::new(from, to) else {
                    assert!(!from.can_become(to));
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
