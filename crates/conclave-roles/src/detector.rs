//! Split-brain detection for roles, from what live nodes claim over gossip.
//!
//! Leases make two holders impossible as long as every holder notices the end of its lease
//! in time. A holder that was frozen (a long GC pause, a stopped VM) may wake up still
//! believing it holds the role. Every node advertises the roles it believes it holds with
//! the epoch; two live claimants of one role are an alert, and the claimant with the older
//! epoch must give the role up at once (its epoch is stale by definition: a newer epoch is
//! only ever granted after the older lease ended).

use serde::Serialize;

/// A live node's claim: it believes it holds the role with this epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Claim {
    pub node_id: u64,
    pub epoch: u64,
}

/// What the claims of one role say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// More than one live node claims the role.
    pub split_brain: bool,
    /// The claim with the newest epoch, if any.
    pub newest: Option<Claim>,
    /// Claims older than the newest: they must release.
    pub stale: Vec<Claim>,
}

pub fn judge(claims: &[Claim]) -> Verdict {
    let newest = claims.iter().copied().max_by_key(|c| (c.epoch, c.node_id));
    let stale = claims
        .iter()
        .copied()
        .filter(|c| newest.is_some_and(|n| c.epoch < n.epoch))
        .collect();
    Verdict {
        split_brain: claims.len() > 1,
        newest,
        stale,
    }
}

/// Whether `me` (holding `my_epoch`) must release because of the other claims.
pub fn must_release(me: u64, my_epoch: u64, claims: &[Claim]) -> bool {
    claims.iter().any(|c| c.node_id != me && c.epoch > my_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_epoch_is_stale() {
        let a = Claim {
            node_id: 1,
            epoch: 4,
        };
        let b = Claim {
            node_id: 2,
            epoch: 5,
        };
        let v = judge(&[a, b]);
        assert!(v.split_brain);
        assert_eq!(v.newest, Some(b));
        assert_eq!(v.stale, vec![a]);
        assert!(must_release(1, 4, &[a, b]));
        assert!(!must_release(2, 5, &[a, b]));
        let v = judge(&[b]);
        assert!(!v.split_brain && v.stale.is_empty());
        assert!(!judge(&[]).split_brain);
    }
}
