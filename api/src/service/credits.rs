//! The group commit of credit spends. Concurrent verifications of one key queue behind one
//! statement instead of taking the key's row lock one by one: the first caller starts a writer
//! for the key, and whoever arrives while its statement runs goes into the next one. Each caller
//! still gets its own exact answer, in arrival order, and nothing is held back from other
//! replicas: every spend is in Postgres before its caller hears of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::ServiceError;
use crate::store::{self, keys::Spent};

/// Most spends in one statement.
const MOST: usize = 1024;

/// What a spend found: `None` when the key is gone or its credits became unlimited meanwhile.
type Answer = Result<Option<Spent>, ServiceError>;

struct Waiter {
    cost: i64,
    period_start: Option<OffsetDateTime>,
    answer: oneshot::Sender<Answer>,
}

/// Queues of spends by key id. A key has a queue exactly while a writer is running for it.
#[derive(Default)]
pub struct Spends {
    queues: Mutex<HashMap<String, Vec<Waiter>>>,
}

impl Spends {
    /// Spends `cost` credits of key `key_id`, refilling first when `period_start` is later than
    /// the last refill.
    pub async fn spend(
        self: &Arc<Self>,
        pool: &Pool,
        key_id: &str,
        cost: i64,
        period_start: Option<OffsetDateTime>,
    ) -> Answer {
        let (answer, heard) = oneshot::channel();
        let waiter = Waiter { cost, period_start, answer };
        let start_writer = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            match queues.get_mut(key_id) {
                Some(queue) => {
                    queue.push(waiter);
                    false
                }
                None => {
                    queues.insert(key_id.to_owned(), vec![waiter]);
                    true
                }
            }
        };
        if start_writer {
            // A task of its own, so that a caller who goes away cannot stop the statement that
            // carries the others' spends.
            tokio::spawn(Arc::clone(self).write(pool.clone(), key_id.to_owned()));
        }
        heard.await.map_err(|_| {
            ServiceError::Internal(anyhow::anyhow!("the credit writer stopped before answering"))
        })?
    }

    /// Writes the key's queue, batch after batch, until it is empty.
    async fn write(self: Arc<Self>, pool: Pool, key_id: String) {
        let mut guard = Guard { spends: &self, key_id: &key_id, armed: true };
        loop {
            let batch: Vec<Waiter> = {
                let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = queues.get_mut(&key_id) else { break };
                if queue.is_empty() {
                    queues.remove(&key_id);
                    break;
                }
                let take = queue.len().min(MOST);
                // A caller who went away before its spend was written is not charged.
                queue.drain(..take).filter(|w| !w.answer.is_closed()).collect()
            };
            if batch.is_empty() {
                continue;
            }
            metrics::counter!("strongbox_credit_statements_total").increment(1);
            metrics::counter!("strongbox_credit_spends_total").increment(batch.len() as u64);
            let costs: Vec<i64> = batch.iter().map(|w| w.cost).collect();
            let period_start = batch.iter().filter_map(|w| w.period_start).max();
            let written = async {
                let db = pool.get().await?;
                Ok::<_, ServiceError>(
                    store::keys::spend_credits(&db, &key_id, &costs, period_start).await?,
                )
            }
            .await;
            match written {
                Ok(Some(spent)) if spent.len() == batch.len() => {
                    for (waiter, spent) in batch.into_iter().zip(spent) {
                        let _ = waiter.answer.send(Ok(Some(spent)));
                    }
                }
                Ok(None) => {
                    for waiter in batch {
                        let _ = waiter.answer.send(Ok(None));
                    }
                }
                Ok(Some(spent)) => fail(
                    batch,
                    ServiceError::Internal(anyhow::anyhow!(
                        "spending credits answered {} of {} spends",
                        spent.len(),
                        costs.len()
                    )),
                ),
                Err(error) => fail(batch, error),
            }
        }
        guard.armed = false;
    }
}

/// Gives every waiter of a failed batch its own copy of the error.
fn fail(batch: Vec<Waiter>, error: ServiceError) {
    let unavailable = matches!(error, ServiceError::DatabaseUnavailable(_));
    let cause = match error {
        ServiceError::DatabaseUnavailable(e) | ServiceError::Internal(e) => format!("{e:#}"),
        other => other.to_string(),
    };
    for waiter in batch {
        let error = anyhow::anyhow!("{cause}");
        let _ = waiter.answer.send(Err(if unavailable {
            ServiceError::DatabaseUnavailable(error)
        } else {
            ServiceError::Internal(error)
        }));
    }
}

/// Drops the key's queue if its writer dies, so that the next spend starts a new writer
/// rather than waiting behind one that is gone. The queued callers hear that it stopped.
struct Guard<'a> {
    spends: &'a Spends,
    key_id: &'a str,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.spends.queues.lock().unwrap_or_else(|e| e.into_inner()).remove(self.key_id);
        }
    }
}
