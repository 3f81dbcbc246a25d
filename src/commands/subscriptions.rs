//! A caller's subscriptions: `subscribe`, `subscriptions`, `subscription <action> <id>`, and
//! the webhook helpers `webhook-secret` and `test-webhook`.

use super::ClientArgs;
use anyhow::Context;
use clap::{Args, Subcommand};
use export_api::{Archive, Compression, Delivery, Format, SubscriptionView};
use serde_json::{json, Map, Value};

#[derive(Args)]
pub struct SubscribeArgs {
    pub dataset: String,
    /// A parameter, name=value: a date may be relative to each run (`yesterday`,
    /// `today-7d`); a number, `true`/`false` or a `[…]` list is read as JSON.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    /// `rate(1 day)`, `rate(6 hours)`, or `cron(minutes hours day-of-month month day-of-week year)`.
    #[arg(long)]
    pub schedule: String,
    /// The schedule's time zone (`Europe/Berlin`); UTC unless given.
    #[arg(long)]
    pub timezone: Option<String>,
    /// When the schedule starts: `now`, or an RFC 3339 time (a rate's first run is then).
    #[arg(long)]
    pub start: Option<String>,
    #[arg(long)]
    pub format: Option<Format>,
    #[arg(long)]
    pub compression: Option<Compression>,
    #[arg(long)]
    pub archive: Option<Archive>,
    /// Email each run's link here.
    #[arg(long)]
    pub email: Vec<String>,
    /// POST each run's signed notice here.
    #[arg(long)]
    pub webhook: Vec<String>,
    /// Copy each run's files into this place of yours: `s3://bucket/prefix/`.
    #[arg(long)]
    pub s3: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct SubscriptionArgs {
    #[command(subcommand)]
    pub action: SubscriptionAction,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Subcommand)]
pub enum SubscriptionAction {
    /// The subscription.
    Show { id: String },
    /// Stop its runs until it is resumed.
    Pause { id: String },
    /// Run it again from the schedule's next time.
    Resume { id: String },
    /// Its runs, newest first, each with its job.
    Runs { id: String },
    /// End it.
    Delete { id: String },
}

#[derive(Args)]
pub struct TestWebhookArgs {
    /// The receiver to POST a signed test notice to.
    pub url: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A `-p` value: JSON where it reads as a number, a boolean or a list; text otherwise.
fn param_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Array(_))) => value,
        _ => Value::String(text.to_owned()),
    }
}

/// A time as the rest of the CLI prints it (local RFC 3339), or `-`.
fn when(millis: Option<i64>) -> String {
    millis.map_or_else(|| "-".into(), redshift_export::show::time)
}

fn describe(s: &SubscriptionView) -> String {
    let deliver: Vec<String> = s
        .deliver
        .iter()
        .map(|d| format!("{} {}", d.kind(), d.target()))
        .collect();
    format!(
        "{}  {}  {} ({})  {}  next run {}  runs {}{}\n",
        s.subscription_id,
        s.dataset,
        s.schedule,
        s.timezone,
        if s.paused { "paused" } else { "active" },
        when(s.next_run_at),
        s.runs,
        if deliver.is_empty() {
            String::new()
        } else {
            format!("\n    deliver: {}", deliver.join(", "))
        }
    )
}

pub async fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let mut params = Map::new();
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("parameter '{pair}' must be name=value"))?;
        params.insert(name.to_owned(), param_value(value));
    }
    let deliver: Vec<Delivery> = args
        .email
        .iter()
        .cloned()
        .map(Delivery::Email)
        .chain(args.webhook.iter().cloned().map(Delivery::Webhook))
        .chain(args.s3.iter().cloned().map(Delivery::S3))
        .collect();
    let mut body = json!({
        "dataset": args.dataset,
        "params": params,
        "schedule": args.schedule,
        "deliver": deliver,
    });
    for (name, value) in [
        ("timezone", args.timezone.clone()),
        ("start", args.start.clone()),
        ("format", args.format.map(|f| f.as_str().to_owned())),
        (
            "compression",
            args.compression.map(|c| c.as_str().to_owned()),
        ),
        ("archive", args.archive.map(|a| a.as_str().to_owned())),
    ] {
        if let Some(value) = value {
            body[name] = Value::String(value);
        }
    }
    let created = client.subscribe(&body).await?;
    args.client.print(&created, |s| {
        format!(
            "subscribed: {}follow its runs with: redshift-export subscription runs {}\n",
            describe(s),
            s.subscription_id
        )
    });
    Ok(())
}

pub async fn list(client_args: ClientArgs) -> anyhow::Result<()> {
    let client = client_args.client().await?;
    let list = client.subscriptions().await?;
    client_args.print(&list, |list| {
        if list.subscriptions.is_empty() {
            return "no subscriptions\n".into();
        }
        list.subscriptions.iter().map(describe).collect()
    });
    Ok(())
}

pub async fn subscription(args: SubscriptionArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    match args.action {
        SubscriptionAction::Show { id } => {
            let s = client.subscription(&id).await?;
            args.client.print(&s, describe);
        }
        SubscriptionAction::Pause { id } => {
            let s = client.pause_subscription(&id, true).await?;
            args.client.print(&s, describe);
        }
        SubscriptionAction::Resume { id } => {
            let s = client.pause_subscription(&id, false).await?;
            args.client.print(&s, describe);
        }
        SubscriptionAction::Runs { id } => {
            let runs = client.subscription_runs(&id).await?;
            args.client.print(&runs, |runs| {
                if runs.runs.is_empty() {
                    return "no runs yet\n".into();
                }
                runs.runs
                    .iter()
                    .map(|run| {
                        let outcome = match (&run.request_id, &run.status, &run.error) {
                            (Some(id), Some(status), _) => format!("{id}  {status}"),
                            (Some(id), None, _) => format!("{id}  (expired)"),
                            (None, _, Some(error)) => format!("refused: {error}"),
                            (None, _, None) => "refused".into(),
                        };
                        format!("{}  {outcome}\n", when(Some(run.scheduled_at)))
                    })
                    .collect()
            });
        }
        SubscriptionAction::Delete { id } => {
            client.delete_subscription(&id).await?;
            if !args.client.json {
                println!("deleted: {id}");
            }
        }
    }
    Ok(())
}

pub async fn webhook_secret(client_args: ClientArgs) -> anyhow::Result<()> {
    let client = client_args.client().await?;
    let secret = client.webhook_secret().await?;
    client_args.print(&secret, |s| {
        format!(
            "{}\nnotices carry `{}: t=<unix seconds>,v1=<hex>`: HMAC-SHA256 of \"t.body\" with this secret; refuse one older than {} s\n",
            s.secret, s.header, s.tolerance_seconds
        )
    });
    Ok(())
}

/// Has the API send a test notice, signed with the caller's secret as real ones are, to the
/// receiver, so a partner can try its check before the first run.
pub async fn test_webhook(args: TestWebhookArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let result = client.test_webhook(&args.url).await?;
    args.client.print(&result, |r| match (r.status, &r.error) {
        (Some(status), _) => format!("{} answered {status}\n", r.url),
        (None, Some(error)) => format!("{} did not answer: {error}\n", r.url),
        (None, None) => format!("{} did not answer\n", r.url),
    });
    if !result.delivered {
        anyhow::bail!("the receiver did not take the test notice");
    }
    Ok(())
}
