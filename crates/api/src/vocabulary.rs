//! The words the contract is written in: a job's status, the output's format, compression and
//! archive, a line of a job's history, a result's column. The core's domain speaks them too.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch; every timestamp the API stores or returns.
pub type Millis = i64;

/// Where a job is in its life: QUEUED → RUNNING → PACKAGING → SUCCEEDED, or FAILED or
/// CANCELLED from any state that has not ended.
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

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

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
    /// The file format the warehouse unloads into (CSV unless a request says).
    Format { #[default] Csv = "csv", Parquet = "parquet", Json = "json" }
);
string_enum!(
    /// Compression of each unloaded part (text formats only; Parquet compresses itself).
    Compression { #[default] None = "none", Gzip = "gzip", Zstd = "zstd" }
);
string_enum!(
    /// The container the parts are packaged into for download; `none` hands out the parts
    /// themselves, a link each.
    Archive { #[default] Zip = "zip", TarGz = "tar.gz", None = "none" }
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

/// One column of a result, as the warehouse describes it (the Data API's `ColumnMetadata`):
/// its name and its Redshift type (`int8`, `numeric`, `varchar`, `date`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}
