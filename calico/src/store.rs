//! The datastore cache: every Calico key felix understands, parsed and validated, by key.
//!
//! [`Store::apply`] takes the syncer's [`Update`]s and returns what changed (each key once, with
//! its old and new entry), so consumers can work incrementally. Readers look entries up by key or
//! iterate them by kind.
//!
//! Keys held: v3 resources (`/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>`,
//! read with [`Resource::from_etcd`]; the value's kind, namespace and name must be the key's),
//! IPv4 IPAM blocks and block affinities (read with [`Block::from_etcd`] and
//! [`Affinity::from_etcd`]). Every other key is ignored.
//!
//! A malformed value (bad JSON, a wrong type, a failed validation such as a selector that does not
//! parse or a CIDR that is not one) is logged once with its key and the reason, counted per kind
//! and skipped; everything else still applies. It replaces the key's previous value: a valid
//! value that turns malformed is removed (and said so in the log), and a later valid value
//! applies as usual. A key that is not UTF-8 is counted and logged the same way (kind
//! `NonUTF8Key`, the key escaped), once per value.

use std::{
    collections::{BTreeMap, BTreeSet, btree_map},
    fmt,
    ops::Bound,
    sync::Arc,
};

use tracing::{debug, info, warn};

use crate::{
    datastore::{Event, KeyValue, Update},
    ipam::{AFFINITIES, Affinity, BLOCKS, Block, IpamError, IpamKey},
    model::{self, IpPoolSpec, Kind, ModelError, NodeSpec, Object, Resource, WorkloadEndpointSpec},
};

/// What kind of entry a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A v3 resource.
    Resource(Kind),
    /// An IPv4 IPAM block.
    IpamBlock,
    /// A node's affinity to an IPv4 block.
    BlockAffinity,
    /// A key that is not UTF-8 (never held: only counted as malformed).
    NonUtf8Key,
}

impl EntryKind {
    /// The kind of entry `key` holds; `None` for a key the cache ignores.
    pub fn of_key(key: &str) -> Option<Self> {
        if let Some((kind, _, _)) = model::parse_key(key) {
            return Some(EntryKind::Resource(kind));
        }
        Some(match IpamKey::parse(key)? {
            IpamKey::Block { .. } => EntryKind::IpamBlock,
            IpamKey::Affinity { .. } => EntryKind::BlockAffinity,
        })
    }

    /// Calico's name of the kind (`WorkloadEndpoint`, `IPAMBlock`, `BlockAffinity`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Resource(kind) => kind.as_str(),
            EntryKind::IpamBlock => "IPAMBlock",
            EntryKind::BlockAffinity => "BlockAffinity",
            EntryKind::NonUtf8Key => "NonUTF8Key",
        }
    }

    /// The prefix every key of this kind starts with.
    fn prefix(self) -> String {
        match self {
            EntryKind::Resource(kind) => model::prefix_of(kind, None),
            EntryKind::IpamBlock => BLOCKS.into(),
            EntryKind::BlockAffinity => AFFINITIES.into(),
            // Matches every key; no entry has this kind.
            EntryKind::NonUtf8Key => String::new(),
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed value.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "entries are stored behind an Arc; boxing would add a second indirection"
)]
pub enum Entry {
    Resource(Resource),
    Block(Block),
    Affinity(Affinity),
}

/// Why a value was skipped.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The value's kind, namespace or name is not the key's.
    #[error("{what} does not match the key")]
    KeyMismatch { what: String },
}

impl Entry {
    /// Parses the value stored at `key`; `None` when the cache ignores the key.
    pub fn parse(key: &str, value: &[u8]) -> Option<Result<Entry, EntryError>> {
        if let Some((kind, namespace, name)) = model::parse_key(key) {
            return Some(parse_resource(key, value, kind, namespace, &name));
        }
        Some(match IpamKey::parse(key)? {
            IpamKey::Block { .. } => Block::from_etcd(key, value)
                .map(Entry::Block)
                .map_err(EntryError::from),
            IpamKey::Affinity { .. } => Affinity::from_etcd(key, value)
                .map(Entry::Affinity)
                .map_err(EntryError::from),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            Entry::Resource(resource) => EntryKind::Resource(resource.kind()),
            Entry::Block(_) => EntryKind::IpamBlock,
            Entry::Affinity(_) => EntryKind::BlockAffinity,
        }
    }

    pub fn as_resource(&self) -> Option<&Resource> {
        match self {
            Entry::Resource(resource) => Some(resource),
            _ => None,
        }
    }

    pub fn as_block(&self) -> Option<&Block> {
        match self {
            Entry::Block(block) => Some(block),
            _ => None,
        }
    }

    pub fn as_affinity(&self) -> Option<&Affinity> {
        match self {
            Entry::Affinity(affinity) => Some(affinity),
            _ => None,
        }
    }
}

fn parse_resource(
    key: &str,
    value: &[u8],
    kind: Kind,
    namespace: Option<String>,
    name: &str,
) -> Result<Entry, EntryError> {
    let resource = Resource::from_etcd(key, value).map_err(|e| EntryError::Model(Box::new(e)))?;
    let mismatch = |what: String| Err(EntryError::KeyMismatch { what });
    if resource.kind() != kind {
        return mismatch(format!("kind {}", resource.kind()));
    }
    if resource.name() != name {
        return mismatch(format!("metadata.name {:?}", resource.name()));
    }
    if kind.namespaced() && resource.namespace() != namespace.as_deref() {
        return mismatch(format!(
            "metadata.namespace {:?}",
            resource.namespace().unwrap_or_default()
        ));
    }
    Ok(Entry::Resource(resource))
}

/// A key whose value was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub kind: EntryKind,
    /// The revision of the skipped value.
    pub revision: i64,
    pub reason: String,
}

/// Malformed values of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MalformedCount {
    /// Keys whose value is skipped now.
    pub current: u64,
    /// Malformed values seen since the cache was created (each value counted once).
    pub total: u64,
}

/// What one key went through in an update: `old` before, `new` after (`None`: absent).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub key: String,
    pub kind: EntryKind,
    pub old: Option<Arc<Entry>>,
    pub new: Option<Arc<Entry>>,
}

/// The result of [`Store::apply`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The revision the cache is at now.
    pub revision: i64,
    /// Whether the update was a full listing.
    pub resync: bool,
    /// Every key whose entry changed, once, in key order.
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug)]
struct Stored {
    revision: i64,
    /// The revision that created the key.
    created: i64,
    entry: Arc<Entry>,
}

/// The parsed cache; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Store {
    entries: BTreeMap<String, Stored>,
    malformed: BTreeMap<String, Malformed>,
    malformed_total: BTreeMap<EntryKind, u64>,
    /// Keys that are not UTF-8, with the revision of their value.
    non_utf8: BTreeMap<Vec<u8>, i64>,
    /// Those known before the last listing (a value listed again is not counted again).
    non_utf8_before: BTreeMap<Vec<u8>, i64>,
    revision: i64,
    synced: bool,
}

/// Changes being collected, folded per key.
#[derive(Default)]
struct Pending(BTreeMap<String, Change>);

fn same(a: &Option<Arc<Entry>>, b: &Option<Arc<Entry>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

impl Pending {
    fn record(
        &mut self,
        key: &str,
        kind: EntryKind,
        old: Option<Arc<Entry>>,
        new: Option<Arc<Entry>>,
    ) {
        match self.0.entry(key.to_owned()) {
            btree_map::Entry::Occupied(mut slot) => {
                slot.get_mut().new = new;
                if same(&slot.get().old, &slot.get().new) {
                    slot.remove();
                }
            }
            btree_map::Entry::Vacant(slot) => {
                if !same(&old, &new) {
                    slot.insert(Change {
                        key: key.to_owned(),
                        kind,
                        old,
                        new,
                    });
                }
            }
        }
    }
}

impl Store {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update from the syncer and returns what changed.
    pub fn apply(&mut self, update: Update) -> Applied {
        let mut pending = Pending::default();
        let resync = matches!(update, Update::Snapshot { .. });
        match update {
            Update::Snapshot { revision, kvs } => {
                let listed: BTreeSet<String> = kvs.iter().map(|kv| kv.key.clone()).collect();
                for kv in kvs {
                    self.put(kv, true, &mut pending);
                }
                let gone: Vec<String> = self
                    .entries
                    .keys()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.remove(&key, &mut pending);
                }
                self.malformed.retain(|key, _| listed.contains(key));
                // The listing's keys that are not UTF-8 follow as events.
                self.non_utf8_before = std::mem::take(&mut self.non_utf8);
                self.revision = revision;
                self.synced = true;
            }
            Update::Events { revision, events } => {
                for event in events {
                    match event {
                        Event::Put(kv) => self.put(kv, false, &mut pending),
                        Event::Delete { key, revision } => {
                            self.delete(&key, revision, &mut pending);
                        }
                        Event::NonUtf8 {
                            key,
                            revision,
                            deleted,
                        } => self.non_utf8(key, revision, deleted),
                    }
                }
                self.revision = self.revision.max(revision);
            }
        }
        Applied {
            revision: self.revision,
            resync,
            changes: pending.0.into_values().collect(),
        }
    }

    /// Stores one value. In a listing a value at another revision than the stored one replaces
    /// it (the listing is the truth); from the watch only a newer one does.
    fn put(&mut self, kv: KeyValue, listing: bool, pending: &mut Pending) {
        let Some(kind) = EntryKind::of_key(&kv.key) else {
            return;
        };
        let known = self
            .entries
            .get(&kv.key)
            .map(|stored| stored.revision)
            .or_else(|| self.malformed.get(&kv.key).map(|m| m.revision));
        if known.is_some_and(|known| kv.revision == known || (!listing && kv.revision < known)) {
            return;
        }
        let key = kv.key;
        match Entry::parse(&key, &kv.value) {
            None => {}
            Some(Ok(entry)) => {
                if self.malformed.remove(&key).is_some() {
                    info!(%key, "datastore value valid again; applied");
                }
                let new = Arc::new(entry);
                let old = self.entries.insert(
                    key.clone(),
                    Stored {
                        revision: kv.revision,
                        created: kv.created,
                        entry: new.clone(),
                    },
                );
                pending.record(&key, kind, old.map(|s| s.entry), Some(new));
            }
            Some(Err(error)) => {
                let reason = error.to_string();
                *self.malformed_total.entry(kind).or_default() += 1;
                match self.entries.remove(&key) {
                    Some(old) => {
                        warn!(%key, %kind, %reason, "malformed datastore value skipped; the previous valid value is removed");
                        pending.record(&key, kind, Some(old.entry), None);
                    }
                    None => warn!(%key, %kind, %reason, "malformed datastore value skipped"),
                }
                self.malformed.insert(
                    key,
                    Malformed {
                        kind,
                        revision: kv.revision,
                        reason,
                    },
                );
            }
        }
    }

    /// Counts and logs a value at a key that is not UTF-8 (once per value), or forgets it.
    fn non_utf8(&mut self, key: Vec<u8>, revision: i64, deleted: bool) {
        if deleted {
            self.non_utf8.remove(&key);
            return;
        }
        let known = self.non_utf8.insert(key.clone(), revision);
        let known = known.or_else(|| self.non_utf8_before.remove(&key));
        if known == Some(revision) {
            return;
        }
        *self
            .malformed_total
            .entry(EntryKind::NonUtf8Key)
            .or_default() += 1;
        warn!(key = %key.escape_ascii(), revision, "datastore key that is not UTF-8 skipped");
    }

    fn delete(&mut self, key: &str, revision: i64, pending: &mut Pending) {
        if self
            .entries
            .get(key)
            .is_some_and(|s| s.revision >= revision)
        {
            return;
        }
        self.remove(key, pending);
        if self.malformed.remove(key).is_some() {
            debug!(%key, "malformed datastore value deleted");
        }
    }

    fn remove(&mut self, key: &str, pending: &mut Pending) {
        if let Some(old) = self.entries.remove(key) {
            pending.record(key, old.entry.kind(), Some(old.entry), None);
        }
    }

    /// The entry at `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).map(|stored| stored.entry.as_ref())
    }

    /// The entry at `key`, shared.
    pub fn get_shared(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key).map(|stored| stored.entry.clone())
    }

    /// The revision of the value at `key`.
    pub fn revision_of(&self, key: &str) -> Option<i64> {
        self.entries.get(key).map(|stored| stored.revision)
    }

    /// The revision that created `key` (etcd's `create_revision`).
    pub fn created_revision(&self, key: &str) -> Option<i64> {
        self.entries.get(key).map(|stored| stored.created)
    }

    /// Every entry of `kind`, in key order.
    pub fn entries(&self, kind: EntryKind) -> impl Iterator<Item = (&str, &Entry)> + '_ {
        let prefix = kind.prefix();
        self.entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix.as_str()))
            .filter(move |(_, stored)| stored.entry.kind() == kind)
            .map(|(key, stored)| (key.as_str(), stored.entry.as_ref()))
    }

    /// Every resource of `kind`, in key order.
    pub fn resources(&self, kind: Kind) -> impl Iterator<Item = (&str, &Resource)> + '_ {
        self.entries(EntryKind::Resource(kind))
            .filter_map(|(key, entry)| Some((key, entry.as_resource()?)))
    }

    /// Every WorkloadEndpoint.
    pub fn workload_endpoints(
        &self,
    ) -> impl Iterator<Item = (&str, &Object<WorkloadEndpointSpec>)> + '_ {
        self.resources(Kind::WorkloadEndpoint)
            .filter_map(|(key, resource)| match resource {
                Resource::WorkloadEndpoint(object) => Some((key, object)),
                _ => None,
            })
    }

    /// Every Node.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Object<NodeSpec>)> + '_ {
        self.resources(Kind::Node)
            .filter_map(|(key, resource)| match resource {
                Resource::Node(object) => Some((key, object)),
                _ => None,
            })
    }

    /// Every IPPool.
    pub fn ip_pools(&self) -> impl Iterator<Item = (&str, &Object<IpPoolSpec>)> + '_ {
        self.resources(Kind::IpPool)
            .filter_map(|(key, resource)| match resource {
                Resource::IpPool(object) => Some((key, object)),
                _ => None,
            })
    }

    /// Every IPAM block (including those marked deleted).
    pub fn blocks(&self) -> impl Iterator<Item = (&str, &Block)> + '_ {
        self.entries(EntryKind::IpamBlock)
            .filter_map(|(key, entry)| Some((key, entry.as_block()?)))
    }

    /// Every block affinity.
    pub fn affinities(&self) -> impl Iterator<Item = (&str, &Affinity)> + '_ {
        self.entries(EntryKind::BlockAffinity)
            .filter_map(|(key, entry)| Some((key, entry.as_affinity()?)))
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The revision of the last update applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether a full listing was applied.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The keys whose value is skipped now, with why.
    pub fn malformed(&self) -> impl Iterator<Item = (&str, &Malformed)> + '_ {
        self.malformed.iter().map(|(key, m)| (key.as_str(), m))
    }

    /// Malformed values per kind, now and since the start.
    pub fn malformed_counts(&self) -> BTreeMap<EntryKind, MalformedCount> {
        let mut counts: BTreeMap<EntryKind, MalformedCount> = self
            .malformed_total
            .iter()
            .map(|(kind, total)| {
                (
                    *kind,
                    MalformedCount {
                        current: 0,
                        total: *total,
                    },
                )
            })
            .collect();
        for m in self.malformed.values() {
            counts.entry(m.kind).or_default().current += 1;
        }
        if !self.non_utf8.is_empty() {
            counts.entry(EntryKind::NonUtf8Key).or_default().current += self.non_utf8.len() as u64;
        }
        counts
    }
}

#[cfg(test)]
mod tests;
