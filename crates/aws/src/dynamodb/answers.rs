//! Lookup answers shared by every instance, as items of the control table.

use super::*;

#[async_trait]
impl AnswerCache for DynamoControlTable {
    /// An eventually consistent read: a lookup answer a moment old is as good as the newest,
    /// at half the read's cost.
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(key.to_owned(), ANSWER)))
            .send()
            .await
            .map_err(|e| port_error("GetItem", e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let answer: AnswerItem = decode(item)?;
        Ok((answer.expires_at_ms > now).then_some(CachedAnswer {
            body: answer.body,
            stored_at: answer.stored_at,
            expires_at: answer.expires_at_ms,
        }))
    }

    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        let item = item_of(&AnswerItem {
            pk: key.to_owned(),
            sk: ANSWER.into(),
            body: answer.body.clone(),
            stored_at: answer.stored_at,
            expires_at_ms: answer.expires_at,
            // Whole seconds, rounded up: never removed before it expires.
            expires_at: (answer.expires_at + 999) / 1000,
        });
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("PutItem", e))?;
        Ok(())
    }
}
