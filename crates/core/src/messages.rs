//! What travels on the queues. Every message names the queue it belongs on, so a sender
//! cannot put one on the wrong queue, and its body is written here, never by hand.

use crate::ports::QueueName;
use serde::{Deserialize, Serialize};

/// A message for one of the two queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// For the processor: start this job.
    Start(StartJob),
    /// For the poller: look at a job, a statement's end, or the sweep's tick.
    Poll(PollMessage),
}

impl Message {
    /// The start of `request_id`'s export.
    pub fn start(request_id: &str) -> Message {
        Message::Start(StartJob {
            request_id: request_id.to_owned(),
            tries: 0,
        })
    }

    /// A follow-up look at `request_id`: one of a backoff chain (`attempt`), or a single look.
    pub fn follow_up(request_id: &str, attempt: Option<u32>) -> Message {
        Message::Poll(PollMessage::FollowUp(FollowUp {
            request_id: request_id.to_owned(),
            attempt,
            resume: None,
            tries: 0,
        }))
    }

    /// Packaging of `request_id` goes on from its checkpoint number `seq`.
    pub fn resume(request_id: &str, seq: u64) -> Message {
        Message::Poll(PollMessage::FollowUp(FollowUp {
            request_id: request_id.to_owned(),
            attempt: None,
            resume: Some(seq),
            tries: 0,
        }))
    }

    /// The queue this message goes on.
    pub fn queue(&self) -> QueueName {
        match self {
            Message::Start(_) => QueueName::Requests,
            Message::Poll(_) => QueueName::Polls,
        }
    }

    /// The message body, as the queue carries it.
    pub fn body(&self) -> String {
        match self {
            Message::Start(start) => serde_json::to_string(start).expect("plain struct serialises"),
            Message::Poll(poll) => poll.to_body(),
        }
    }
}

/// On the requests queue: a job to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartJob {
    pub request_id: String,
    /// On a retry's copy, the tries the message had before it (see [`FollowUp::tries`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// On the polls queue: the poller's own follow-up, the warehouse's status-change event as
/// EventBridge forwards it ("Redshift Data Statement Status Change"), or the schedule's tick
/// that sweeps stuck jobs (an EventBridge "Scheduled Event").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollMessage {
    FollowUp(FollowUp),
    StatementEvent(StatementEvent),
    Sweep,
}

/// The poller's own look at a job. `attempt` drives the backoff of a follow-up chain; a look
/// without one (the sweep's) checks once and schedules nothing, so sweeping a long statement
/// never multiplies its chains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// A continuation of packaging: the checkpoint it carries on from. One that finds the job
    /// at another checkpoint is stale (a duplicate delivery) and does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<u64>,
    /// On a retry's copy, the tries the message had before it: a copy is a new message to
    /// the queue, whose receive count starts again at one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tries: u32,
}

/// The `detail` of a Data API status-change event; `statementName` is the deployment's
/// statement prefix and the request id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementEvent {
    pub statement_id: String,
    #[serde(default)]
    pub statement_name: Option<String>,
    pub state: String,
    #[serde(default)]
    pub rows: Option<i64>,
}

pub const STATEMENT_EVENT_SOURCE: &str = "aws.redshift-data";
pub const STATEMENT_EVENT_DETAIL_TYPE: &str = "Redshift Data Statement Status Change";
pub const SCHEDULE_EVENT_SOURCE: &str = "aws.events";
pub const SCHEDULE_EVENT_DETAIL_TYPE: &str = "Scheduled Event";

/// The EventBridge envelope, as the local warehouse emits it and the rule forwards it.
#[derive(Serialize, Deserialize)]
struct EventEnvelope<T> {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: T,
}

impl PollMessage {
    pub fn parse(body: &str) -> Result<PollMessage, String> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("poll message is not JSON: {e}"))?;
        if value.get("detail-type").is_some() {
            if value["source"] == SCHEDULE_EVENT_SOURCE
                && value["detail-type"] == SCHEDULE_EVENT_DETAIL_TYPE
            {
                return Ok(PollMessage::Sweep);
            }
            let envelope: EventEnvelope<StatementEvent> = serde_json::from_value(value)
                .map_err(|e| format!("statement event has an unexpected shape: {e}"))?;
            if envelope.source != STATEMENT_EVENT_SOURCE
                || envelope.detail_type != STATEMENT_EVENT_DETAIL_TYPE
            {
                return Err(format!(
                    "unexpected event {}/{}",
                    envelope.source, envelope.detail_type
                ));
            }
            return Ok(PollMessage::StatementEvent(envelope.detail));
        }
        serde_json::from_value(value)
            .map(PollMessage::FollowUp)
            .map_err(|e| format!("poll message has an unexpected shape: {e}"))
    }

    pub fn to_body(&self) -> String {
        match self {
            PollMessage::FollowUp(follow_up) => serde_json::to_string(follow_up),
            PollMessage::StatementEvent(detail) => serde_json::to_string(&EventEnvelope {
                source: STATEMENT_EVENT_SOURCE.into(),
                detail_type: STATEMENT_EVENT_DETAIL_TYPE.into(),
                detail: detail.clone(),
            }),
            PollMessage::Sweep => serde_json::to_string(&EventEnvelope {
                source: SCHEDULE_EVENT_SOURCE.into(),
                detail_type: SCHEDULE_EVENT_DETAIL_TYPE.into(),
                detail: serde_json::json!({}),
            }),
        }
        .expect("plain structs serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_know_their_queue() {
        let start = Message::start("r1");
        assert_eq!(start.queue(), QueueName::Requests);
        assert_eq!(start.body(), r#"{"request_id":"r1"}"#);
        let look = Message::follow_up("r1", None);
        assert_eq!(look.queue(), QueueName::Polls);
        assert_eq!(look.body(), r#"{"request_id":"r1"}"#);
        assert_eq!(Message::Poll(PollMessage::Sweep).queue(), QueueName::Polls);
    }

    #[test]
    fn both_shapes_round_trip() {
        let follow = PollMessage::FollowUp(FollowUp {
            request_id: "r1".into(),
            attempt: Some(3),
            resume: None,
            tries: 2,
        });
        assert_eq!(PollMessage::parse(&follow.to_body()).unwrap(), follow);
        let look = PollMessage::FollowUp(FollowUp {
            request_id: "r1".into(),
            attempt: None,
            resume: None,
            tries: 0,
        });
        assert_eq!(look.to_body(), r#"{"request_id":"r1"}"#);
        let resume = Message::resume("r1", 7);
        assert_eq!(resume.queue(), QueueName::Polls);
        assert_eq!(resume.body(), r#"{"request_id":"r1","resume":7}"#);
        assert_eq!(PollMessage::parse(&look.to_body()).unwrap(), look);
        assert_eq!(
            PollMessage::parse(&PollMessage::Sweep.to_body()).unwrap(),
            PollMessage::Sweep
        );
        // What an EventBridge schedule rule delivers to SQS.
        let tick = r#"{"version":"0","id":"5b2f","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-22T10:00:00Z","region":"eu-west-1","resources":["arn:aws:events:eu-west-1:123456789012:rule/sweep"],"detail":{}}"#;
        assert_eq!(PollMessage::parse(tick).unwrap(), PollMessage::Sweep);
        let event = PollMessage::StatementEvent(StatementEvent {
            statement_id: "s1".into(),
            statement_name: Some("r1".into()),
            state: "FINISHED".into(),
            rows: Some(4),
        });
        assert_eq!(PollMessage::parse(&event.to_body()).unwrap(), event);
        assert!(
            PollMessage::parse("{\"source\":\"aws.ec2\",\"detail-type\":\"x\",\"detail\":{}}")
                .is_err()
        );
        assert!(PollMessage::parse("nope").is_err());
    }
}
