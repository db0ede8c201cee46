//! What each node advertises (role, addresses, tags, health, applied configuration): a small
//! key/value map per node with a version, spread as a foca custom broadcast.
//!
//! Why whole maps with versions, not key deltas: an advert is a few hundred bytes and changes
//! rarely, so sending it whole costs little and a receiver needs no history to apply it: a
//! higher version replaces a lower one, and a newer version of the same node's advert
//! stops the older one spreading (`Invalidates`). A node that joins late gets every advert
//! pushed to it directly when it is first seen (`Node`), not from the broadcasts it missed.

use std::collections::{BTreeMap, HashMap};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use crate::Peer;

/// One node's advertised state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub node_id: u64,
    /// Grows with each change by its node (a restarted node starts above its last one:
    /// the caller seeds it from the clock).
    pub version: u64,
    pub entries: BTreeMap<String, String>,
}

impl Advert {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of integers and strings always encodes.
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// The key of an advert in foca's broadcast queue: a newer version of the same node's
/// advert replaces an older one still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertKey {
    node_id: u64,
    version: u64,
}

impl Invalidates for AdvertKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node_id == other.node_id && self.version >= other.version
    }
}

/// A broadcast that did not decode.
#[derive(Debug, thiserror::Error)]
#[error("an advert does not decode: {0}")]
pub struct BadAdvert(#[from] postcard::Error);

/// Every advert this node knows, newest version per node.
#[derive(Debug, Default)]
pub struct Adverts {
    by_node: HashMap<u64, Advert>,
    /// Nodes whose advert changed since [`Adverts::take_changed`].
    changed: Vec<u64>,
}

impl Adverts {
    pub fn get(&self, node_id: u64) -> Option<&Advert> {
        self.by_node.get(&node_id)
    }

    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Advert> {
        self.by_node.values()
    }

    /// Keep `advert` if it is newer than the one held; whether it was.
    pub fn offer(&mut self, advert: Advert) -> bool {
        let newer = self
            .by_node
            .get(&advert.node_id)
            .is_none_or(|held| advert.version > held.version);
        if newer {
            self.changed.push(advert.node_id);
            self.by_node.insert(advert.node_id, advert);
        }
        newer
    }

    /// Forget a node's advert (it was reaped).
    pub fn forget(&mut self, node_id: u64) {
        self.by_node.remove(&node_id);
    }

    /// The nodes whose advert changed since the last call, each once.
    pub fn take_changed(&mut self) -> Vec<u64> {
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        changed
    }
}

impl BroadcastHandler<Peer> for Adverts {
    type Key = AdvertKey;
    type Error = BadAdvert;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&Peer>,
    ) -> Result<Option<Self::Key>, Self::Error> {
        let advert: Advert = postcard::from_bytes(data)?;
        let key = AdvertKey {
            node_id: advert.node_id,
            version: advert.version,
        };
        // Spread it on only while it is news here.
        Ok(self.offer(advert).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(node_id: u64, version: u64, role: &str) -> Advert {
        Advert {
            node_id,
            version,
            entries: BTreeMap::from([("role".to_owned(), role.to_owned())]),
        }
    }

    #[test]
    fn a_newer_version_replaces_an_older_one_and_stops_it_spreading() {
        let mut a = Adverts::default();
        let v2 = advert(1, 2, "voter").encode();
        let v1 = advert(1, 1, "client").encode();
        assert!(a.receive_item(&v2, None).unwrap().is_some());
        assert!(
            a.receive_item(&v2, None).unwrap().is_none(),
            "no longer news"
        );
        assert!(a.receive_item(&v1, None).unwrap().is_none(), "older");
        assert_eq!(a.get(1).unwrap().entries["role"], "voter");
        assert_eq!(a.take_changed(), vec![1]);
        assert!(a.take_changed().is_empty());
        let k = |version| AdvertKey {
            node_id: 1,
            version,
        };
        assert!(k(2).invalidates(&k(1)) && !k(1).invalidates(&k(2)));
        assert!(a.receive_item(b"\xff\xff", None).is_err());
    }

    #[test]
    fn adverts_round_trip_empty_and_full() {
        for a in [Advert::default(), advert(u64::MAX, 9, "voter")] {
            assert_eq!(postcard::from_bytes::<Advert>(&a.encode()).unwrap(), a);
        }
    }
}
