//! SCIM API keys resolved recently, so that a busy IdP's requests do not each read the key and
//! its connection from the database before doing their own work.
//!
//! A change to a connection or its keys made through this process ([`ScimKeyCache::invalidate`])
//! takes effect on the next request. A change made through another process sharing the
//! database is seen once the entry is older than the time to live, so the TTL bounds how long a
//! revoked key or a disabled connection keeps working there, and how long users created there
//! are mapped with the connection's previous mapping (the mapping worker then maps them again:
//! creates map with the connection authentication resolved).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use scimgate_store::{Connection, Store, StoreResult};
use time::OffsetDateTime;

pub struct ScimKeyCache {
    ttl: Duration,
    /// Bumped by every invalidation. An entry remembers the generation current when its read
    /// began, so a read that raced an invalidation cannot leave an entry that outlives it.
    generation: AtomicU64,
    entries: RwLock<HashMap<Vec<u8>, Entry>>,
}

/// A SCIM API key as authentication needs it: the connection is shared, not copied, by every
/// request that presents the key.
pub struct ResolvedKey {
    pub connection: Arc<Connection>,
    /// The earlier of the key's own expiry and, for a replaced key, the end of its overlap.
    pub valid_until: Option<OffsetDateTime>,
    /// The key was replaced by a reset.
    pub replaced: bool,
}

struct Entry {
    record: Arc<ResolvedKey>,
    read_at: Instant,
    generation: u64,
}

impl ScimKeyCache {
    /// A zero `ttl` turns the cache off: every request reads its key.
    pub fn new(ttl: Duration) -> Self {
        ScimKeyCache {
            ttl,
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The key with this hash, if it exists. Unknown keys are never cached, so a new key works
    /// at once and guessing cannot fill the cache.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        hash: &[u8],
    ) -> StoreResult<Option<Arc<ResolvedKey>>> {
        if self.ttl.is_zero() {
            return read(store, hash).await;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(record) = self.fresh(hash, generation) {
            return Ok(Some(record));
        }
        let Some(record) = read(store, hash).await? else {
            return Ok(None);
        };
        let entry = Entry {
            record: record.clone(),
            read_at: Instant::now(),
            generation,
        };
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(hash.to_vec(), entry);
        }
        Ok(Some(record))
    }

    fn fresh(&self, hash: &[u8], generation: u64) -> Option<Arc<ResolvedKey>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(hash)?;
        (entry.generation == generation && entry.read_at.elapsed() < self.ttl)
            .then(|| entry.record.clone())
    }

    /// Forgets every entry. Call it after a connection or its keys change, once the change is
    /// committed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

async fn read(store: &dyn Store, hash: &[u8]) -> StoreResult<Option<Arc<ResolvedKey>>> {
    Ok(store.scim_key(hash).await?.map(|record| {
        Arc::new(ResolvedKey {
            connection: Arc::new(record.connection),
            valid_until: record.valid_until,
            replaced: record.replaced,
        })
    }))
}
