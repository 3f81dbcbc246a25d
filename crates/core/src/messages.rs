//! What travels on the queues.

use serde::{Deserialize, Serialize};

/// On the requests queue: a job to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartJob {
    pub request_id: String,
}

/// On the polls queue: either the poller's own follow-up, or the warehouse's status-change
/// event as EventBridge forwards it ("Redshift Data Statement Status Change").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollMessage {
    FollowUp(FollowUp),
    StatementEvent(StatementEvent),
}

/// The poller's own look at a job's statement; `attempt` drives the backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub request_id: String,
    pub attempt: u32,
}

/// The `detail` of a Data API status-change event; `statementName` carries the request id.
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

/// The EventBridge envelope, as the local warehouse emits it and the rule forwards it.
#[derive(Serialize, Deserialize)]
struct EventEnvelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: StatementEvent,
}

impl PollMessage {
    pub fn parse(body: &str) -> Result<PollMessage, String> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("poll message is not JSON: {e}"))?;
        if value.get("detail-type").is_some() {
            let envelope: EventEnvelope = serde_json::from_value(value)
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
        }
        .expect("plain structs serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_round_trip() {
        let follow = PollMessage::FollowUp(FollowUp {
            request_id: "r1".into(),
            attempt: 3,
        });
        assert_eq!(PollMessage::parse(&follow.to_body()).unwrap(), follow);
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
