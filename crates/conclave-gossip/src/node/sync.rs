//! Advert anti-entropy: a node compares advert versions with one random member now and
//! then, so an advert whose broadcast or push was lost still arrives.

use rand_foca::RngExt;

use super::{FRAME_ADVERTS, FRAME_DIGEST, MAX_DIGEST_ENTRY, Node, SYNC_EVERY_MS, SYNC_SCALE};
use crate::adverts::Advert;

impl Node {
    /// Send the advert versions this node holds to one random member, which answers with
    /// the adverts it holds newer: an advert whose broadcast or push was lost (loss, a
    /// member that was briefly away) arrives within a sync period instead of never.
    pub(super) fn sync_adverts(&mut self) {
        let n = self.foca.num_members();
        let scale = (n / SYNC_SCALE).max(1) as u64;
        // Jittered, so members do not sync in lockstep.
        let jitter = self.rng.random_range(0..SYNC_EVERY_MS / 2);
        self.next_sync_ms = self.now_ms + SYNC_EVERY_MS * scale + jitter;
        if n == 0 {
            return;
        }
        let pick = self.rng.random_range(0..n);
        let Some(to) = self.foca.iter_members().nth(pick).map(|m| m.id().addr) else {
            return;
        };
        let digest: Vec<(u64, u64)> = {
            let store = self.adverts.lock();
            self.foca
                .iter_members()
                .map(|m| m.id().node_id)
                .chain(std::iter::once(self.advert.node_id))
                .map(|id| (id, store.get(id).map_or(0, |a| a.version)))
                .collect()
        };
        let per_datagram = (self.config.max_payload / MAX_DIGEST_ENTRY).max(1);
        for chunk in digest.chunks(per_datagram) {
            let body = postcard::to_stdvec(chunk).unwrap_or_default();
            self.seal(FRAME_DIGEST, to, &body);
        }
    }

    /// The adverts `digest` shows its sender lacks or holds older, sent back; and this
    /// node's own digest if the sender holds newer ones, so it pushes them in turn.
    pub(super) fn answer_digest(&mut self, sender: u64, digest: &[(u64, u64)]) {
        let Some(to) = self
            .foca
            .iter_members()
            .find(|m| m.id().node_id == sender)
            .map(|m| m.id().addr)
        else {
            return;
        };
        let (newer_here, newer_there) = {
            let store = self.adverts.lock();
            let mut newer_here = Vec::new();
            let mut newer_there = Vec::new();
            for &(id, version) in digest {
                match store.get(id) {
                    Some(a) if a.version > version => newer_here.push(a.clone()),
                    Some(a) if a.version < version => newer_there.push((id, a.version)),
                    None if version > 0 => newer_there.push((id, 0)),
                    _ => {}
                }
            }
            (newer_here, newer_there)
        };
        let mut batch: Vec<Advert> = Vec::new();
        let mut size = 0;
        for advert in newer_here {
            let len = advert.encode().len();
            if !batch.is_empty() && size + len > self.config.max_payload {
                let body = postcard::to_stdvec(&batch).unwrap_or_default();
                self.seal(FRAME_ADVERTS, to, &body);
                batch.clear();
                size = 0;
            }
            size += len;
            batch.push(advert);
        }
        if !batch.is_empty() {
            let body = postcard::to_stdvec(&batch).unwrap_or_default();
            self.seal(FRAME_ADVERTS, to, &body);
        }
        if !newer_there.is_empty() {
            let per_datagram = (self.config.max_payload / MAX_DIGEST_ENTRY).max(1);
            for chunk in newer_there.chunks(per_datagram) {
                let body = postcard::to_stdvec(chunk).unwrap_or_default();
                self.seal(FRAME_DIGEST, to, &body);
            }
        }
    }
}
