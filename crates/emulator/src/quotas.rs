//! The Data API's request quotas. "Quotas and limits in Amazon Redshift" (Amazon Redshift
//! Management Guide) gives each operation a rate per account and region: `ExecuteStatement` 30
//! a second, `DescribeStatement` 100, `GetStatementResult` 20. A call past its operation's
//! rate is refused with `ThrottlingException` (HTTP 400), the error every AWS query API answers
//! for throttling ("Common Errors"). Each operation is a token bucket holding one second's
//! worth of calls, so a burst of its rate passes and a sustained excess is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Calls a second per operation; an operation not named is not limited.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaRates {
    pub execute_statement: f64,
    pub describe_statement: f64,
    pub get_statement_result: f64,
}

impl QuotaRates {
    /// The defaults "Quotas and limits in Amazon Redshift" lists for the Data API.
    pub const DOCUMENTED: QuotaRates = QuotaRates {
        execute_statement: 30.0,
        describe_statement: 100.0,
        get_statement_result: 20.0,
    };

    fn rate_of(&self, operation: &str) -> Option<f64> {
        match operation {
            "ExecuteStatement" => Some(self.execute_statement),
            "DescribeStatement" => Some(self.describe_statement),
            "GetStatementResult" => Some(self.get_statement_result),
            _ => None,
        }
    }
}

struct Bucket {
    tokens: f64,
    filled_at: Instant,
}

/// The buckets of one account and region (one endpoint), and what they refused.
pub struct RequestQuotas {
    rates: QuotaRates,
    buckets: Mutex<HashMap<String, Bucket>>,
    throttled: Mutex<HashMap<String, u64>>,
}

impl RequestQuotas {
    pub fn new(rates: QuotaRates) -> RequestQuotas {
        RequestQuotas {
            rates,
            buckets: Mutex::new(HashMap::new()),
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a call of `operation` from its bucket: false if the operation is over its rate.
    pub fn admit(&self, operation: &str) -> bool {
        let Some(rate) = self.rates.rate_of(operation) else {
            return true;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("quota lock");
        let bucket = buckets.entry(operation.to_owned()).or_insert(Bucket {
            tokens: rate,
            filled_at: now,
        });
        let elapsed = now.duration_since(bucket.filled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate.max(1.0));
        bucket.filled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        drop(buckets);
        *self
            .throttled
            .lock()
            .expect("quota lock")
            .entry(operation.to_owned())
            .or_default() += 1;
        false
    }

    /// How many calls of `operation` were refused so far.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.throttled
            .lock()
            .expect("quota lock")
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_and_the_next_call_is_refused() {
        let quotas = RequestQuotas::new(QuotaRates {
            execute_statement: 5.0,
            ..QuotaRates::DOCUMENTED
        });
        let admitted = (0..6).filter(|_| quotas.admit("ExecuteStatement")).count();
        assert_eq!(admitted, 5);
        assert_eq!(quotas.throttled("ExecuteStatement"), 1);
        assert!(quotas.admit("CancelStatement"), "not limited");
        assert!(quotas.admit("DescribeStatement"), "a bucket of its own");
    }
}
