//! How a request reaches the leader: here if this node leads, else forwarded to the node it
//! believes leads (at most two hops), waiting out elections until a deadline.
//!
//! The rules, which decide whether a client may retry safely:
//! - a request that certainly did not arrive (no connection, a refused handshake, an answer
//!   "not the leader") is sent again once a leader is known, and at the deadline fails as
//!   `NotLeader` (503 `no_leader`): never as indeterminate;
//! - a request that may have arrived but got no reply is `Indeterminate` unless repeating it
//!   is harmless (reads, status);
//! - a removed node refuses at once.
//!
//! The loop runs against [`LeaderPath`], which [`crate::RaftNode`] implements over openraft's
//! metrics and the node-RPC pool; the tests below drive it over an in-memory network that
//! changes leaders and loses messages on cue, with no process or socket.

use std::future::Future;
use std::time::{Duration, Instant};

use conclave_storage::NodeId;

use crate::policy::{self, ForwardFailure};
use crate::rpc::{LeaderReply, LeaderRequest, RpcRequest, RpcResponse};
use crate::transport::CallError;
use crate::{ConsensusError, RejectReason};

/// The most times a request is passed on (follower → believed leader → its leader).
pub(crate) const MAX_HOPS: u8 = 2;

/// What the forwarding loop needs from a node.
pub(crate) trait LeaderPath: Sync {
    fn me(&self) -> NodeId;
    /// Why this node is no longer a member, if it was removed.
    fn removed(&self) -> Option<String>;
    /// The leader this node currently knows of.
    fn leader(&self) -> Option<NodeId>;
    fn peer_addr(&self, id: NodeId) -> Option<String>;
    /// Serve `req` here, as the leader.
    fn serve_here(
        &self,
        req: LeaderRequest,
    ) -> impl Future<Output = Result<LeaderReply, ConsensusError>> + Send;
    /// Send `rpc` to `addr` and wait up to `timeout` for the reply (the transport retries a
    /// broken pooled connection itself only when `idempotent`).
    fn send(
        &self,
        addr: &str,
        rpc: &RpcRequest,
        timeout: Duration,
        idempotent: bool,
    ) -> impl Future<Output = Result<RpcResponse, CallError>> + Send;
    /// How long an answer from a replaced leader may still be on its way (a heartbeat).
    fn answer_grace(&self) -> Duration;
    /// The leader this node knows of one poll interval (a heartbeat) from now.
    fn leader_later(&self) -> impl Future<Output = Option<NodeId>> + Send;
    /// Return when the known leader differs from `seen`, after a short poll interval, or at
    /// the deadline.
    fn wait_leader_change(
        &self,
        seen: Option<NodeId>,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send;
}

/// Run `req` on the leader, waiting out elections for up to `timeout`.
pub(crate) async fn leader_call<P: LeaderPath>(
    path: &P,
    req: LeaderRequest,
    hops: u8,
    timeout: Duration,
) -> Result<LeaderReply, ConsensusError> {
    let deadline = Instant::now() + timeout;
    let mut last_leader = None;
    // A leader elsewhere that answered "no quorum": nothing was done, and a new leader may
    // be elected meanwhile, so it is asked again (or the new one), and this is the answer
    // at the deadline.
    let mut no_quorum = None;
    loop {
        if let Some(why) = path.removed() {
            return Err(RejectReason::Removed { why }.into());
        }
        let leader = path.leader();
        last_leader = leader.or(last_leader);
        let here = leader == Some(path.me());
        let outcome = match leader {
            Some(l) if l == path.me() => Some(path.serve_here(req.clone()).await),
            Some(l) if hops < MAX_HOPS => match path.peer_addr(l) {
                Some(addr) => forward(path, l, &addr, &req, hops + 1, deadline).await,
                None => None,
            },
            _ => None,
        };
        match outcome {
            Some(Err(ConsensusError::NotLeader { .. })) | None => {}
            Some(Err(e @ ConsensusError::NoQuorum { .. })) if !here => no_quorum = Some(e),
            Some(result) => return result,
        }
        if Instant::now() >= deadline {
            return Err(no_quorum.unwrap_or(ConsensusError::NotLeader {
                leader_id: last_leader,
                leader: None,
            }));
        }
        path.wait_leader_change(leader, deadline).await;
    }
}

/// Forward to `leader` at `addr`. `None` means "certainly not applied; look for the leader
/// again". A write or read index in flight to a leader that this node sees replaced, and
/// that still has not answered one heartbeat later (one cut off or frozen answers nothing;
/// one that handed over answers at once), is given up instead of waiting for the deadline:
/// a read index is asked from the new leader, a write ends as indeterminate (the old leader
/// may have appended it). Membership requests and transfers wait for their answer: a
/// change of leader is what a transfer is for.
async fn forward<P: LeaderPath>(
    path: &P,
    leader: NodeId,
    addr: &str,
    req: &LeaderRequest,
    hops: u8,
    deadline: Instant,
) -> Option<Result<LeaderReply, ConsensusError>> {
    let rpc = RpcRequest::Leader {
        req: req.clone(),
        hops,
    };
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let gives_up = matches!(req, LeaderRequest::Propose(_) | LeaderRequest::ReadIndex);
    let replaced = async {
        if !gives_up {
            return std::future::pending::<()>().await;
        }
        // Polled once a heartbeat: most requests are answered long before the first look,
        // and none wakes on every change of the node's metrics.
        loop {
            if path.leader_later().await.is_some_and(|l| l != leader) {
                // Room for an answer already on its way.
                tokio::time::sleep(path.answer_grace()).await;
                return;
            }
            if Instant::now() >= deadline {
                // The send's own timeout ends it.
                std::future::pending::<()>().await;
            }
        }
    };
    let sent = tokio::select! {
        biased;
        sent = path.send(addr, &rpc, timeout, req.idempotent()) => sent,
        () = replaced => {
            let now = path.leader();
            tracing::debug!(leader, ?now, "the leader changed while a request was in flight to it");
            return match policy::forward_failure(true, req.idempotent()) {
                ForwardFailure::Retry => None,
                ForwardFailure::Indeterminate => Some(Err(ConsensusError::Indeterminate(format!(
                    "node {leader} was replaced as leader while the request was in flight to it"
                )))),
            };
        }
    };
    match sent {
        Ok(RpcResponse::Leader(r)) => Some(r),
        Ok(RpcResponse::NotAllowed(why)) => Some(Err(ConsensusError::Unavailable(why))),
        Ok(_) => Some(Err(ConsensusError::Unavailable(
            "the leader answered with the wrong message type".into(),
        ))),
        Err(e) => match policy::forward_failure(!e.not_sent(), req.idempotent()) {
            ForwardFailure::Retry => {
                tracing::debug!(%addr, error = %e, "forwarding failed; looking for the leader again");
                None
            }
            ForwardFailure::Indeterminate => {
                Some(Err(ConsensusError::Indeterminate(e.to_string())))
            }
        },
    }
}

/// The forwarding loop's view of this node: openraft's metrics and the node-RPC pool.
impl LeaderPath for crate::RaftNode {
    fn me(&self) -> NodeId {
        self.id
    }

    fn removed(&self) -> Option<String> {
        crate::RaftNode::removed(self)
    }

    fn leader(&self) -> Option<NodeId> {
        self.metrics().current_leader
    }

    fn peer_addr(&self, id: NodeId) -> Option<String> {
        crate::RaftNode::peer_addr(self, id)
    }

    async fn serve_here(&self, req: LeaderRequest) -> Result<LeaderReply, ConsensusError> {
        self.serve_leader(req).await
    }

    async fn send(
        &self,
        addr: &str,
        rpc: &RpcRequest,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<RpcResponse, CallError> {
        self.inner.pool.call(addr, rpc, timeout, idempotent).await
    }

    fn answer_grace(&self) -> Duration {
        Duration::from_millis(self.inner.tuning.heartbeat_ms)
    }

    async fn leader_later(&self) -> Option<NodeId> {
        tokio::time::sleep(Duration::from_millis(self.inner.tuning.heartbeat_ms)).await;
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Sleep until the known leader differs from `seen`, a short poll interval passes, or
    /// the deadline.
    async fn wait_leader_change(&self, seen: Option<NodeId>, deadline: Instant) {
        let mut rx = self.inner.raft.metrics();
        let poll = Instant::now() + Duration::from_millis(50);
        let until = poll.min(deadline);
        let _ = tokio::time::timeout_at(until.into(), async {
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                if rx.borrow().current_leader != seen {
                    return;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    //! An in-memory network: node 1 is "here", nodes 2 and 3 are peers at `n2`, `n3`. Each
    //! test scripts who leads (changing on every wait) and what each send meets.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use conclave_state::{Command, Outcome};

    use crate::rpc::Transferred;

    use super::*;

    /// What one send to a peer meets.
    enum Wire {
        /// The peer answers this.
        Reply(Result<LeaderReply, ConsensusError>),
        /// No connection: nothing was sent.
        Refused,
        /// The handshake was refused: nothing was sent.
        HandshakeRefused,
        /// Sent, but the connection broke before a reply.
        Lost,
        /// Sent, and no reply ever comes (the peer is cut off or frozen).
        Silent,
        /// Sent, and the reply comes after this long.
        Late(Duration, Result<LeaderReply, ConsensusError>),
    }

    struct Net {
        /// Who leads now; the front is dropped on every wait (the next leader).
        leaders: Mutex<VecDeque<Option<NodeId>>>,
        wire: Mutex<VecDeque<Wire>>,
        removed: Option<String>,
        sent: Mutex<Vec<(String, u8)>>,
        served_here: Mutex<u32>,
    }

    impl Net {
        fn new(leaders: &[Option<NodeId>], wire: Vec<Wire>) -> Self {
            Self {
                leaders: Mutex::new(leaders.iter().copied().collect()),
                wire: Mutex::new(wire.into()),
                removed: None,
                sent: Mutex::new(Vec::new()),
                served_here: Mutex::new(0),
            }
        }

        fn sent(&self) -> Vec<(String, u8)> {
            self.sent.lock().unwrap().clone()
        }
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    impl LeaderPath for Net {
        fn me(&self) -> NodeId {
            1
        }
        fn removed(&self) -> Option<String> {
            self.removed.clone()
        }
        fn leader(&self) -> Option<NodeId> {
            self.leaders.lock().unwrap().front().copied().flatten()
        }
        fn peer_addr(&self, id: NodeId) -> Option<String> {
            (id != 9).then(|| format!("n{id}"))
        }
        async fn serve_here(&self, _req: LeaderRequest) -> Result<LeaderReply, ConsensusError> {
            *self.served_here.lock().unwrap() += 1;
            Ok(LeaderReply::ReadIndex(7))
        }
        async fn send(
            &self,
            addr: &str,
            rpc: &RpcRequest,
            _timeout: Duration,
            _idempotent: bool,
        ) -> Result<RpcResponse, CallError> {
            let hops = match rpc {
                RpcRequest::Leader { hops, .. } => *hops,
                _ => 0,
            };
            self.sent.lock().unwrap().push((addr.to_owned(), hops));
            let next = self.wire.lock().unwrap().pop_front();
            match next.unwrap_or(Wire::Refused) {
                Wire::Reply(r) => Ok(RpcResponse::Leader(r)),
                Wire::Refused => Err(CallError::Unreachable {
                    addr: addr.to_owned(),
                    source: io(std::io::ErrorKind::ConnectionRefused),
                }),
                Wire::HandshakeRefused => Err(CallError::Refused("wrong cluster token".into())),
                Wire::Lost => Err(CallError::Lost {
                    addr: addr.to_owned(),
                    source: io(std::io::ErrorKind::ConnectionReset),
                }),
                Wire::Silent => std::future::pending().await,
                Wire::Late(after, r) => {
                    tokio::time::sleep(after).await;
                    Ok(RpcResponse::Leader(r))
                }
            }
        }
        fn answer_grace(&self) -> Duration {
            Duration::from_millis(5)
        }
        async fn leader_later(&self) -> Option<NodeId> {
            // Time passes: the next leader in the script takes over.
            self.wait_leader_change(None, Instant::now()).await;
            self.leader()
        }
        async fn wait_leader_change(&self, _seen: Option<NodeId>, _deadline: Instant) {
            {
                let mut leaders = self.leaders.lock().unwrap();
                if leaders.len() > 1 {
                    leaders.pop_front();
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn propose() -> LeaderRequest {
        LeaderRequest::Propose(Command::Put {
            key: "k".into(),
            value: b"v".to_vec(),
            expected: None,
        })
    }

    fn applied() -> Wire {
        Wire::Reply(Ok(LeaderReply::Outcome(Outcome::Put { revision: 5 })))
    }

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_write_not_sent_is_sent_again_to_the_next_leader() {
        // Leader 2 refuses the connection (it crashed); node 3 is elected and applies it.
        let net = Net::new(&[Some(2), Some(3)], vec![Wire::Refused, applied()]);
        let reply = leader_call(&net, propose(), 0, TIMEOUT).await.unwrap();
        assert_eq!(reply, LeaderReply::Outcome(Outcome::Put { revision: 5 }));
        assert_eq!(net.sent(), vec![("n2".into(), 1), ("n3".into(), 1)]);
    }

    #[tokio::test]
    async fn a_refused_handshake_is_never_indeterminate() {
        // Every send fails in the handshake: at the deadline, no_leader (safe to retry).
        let net = Net::new(
            &[Some(2)],
            (0..500).map(|_| Wire::HandshakeRefused).collect(),
        );
        let e = leader_call(&net, propose(), 0, TIMEOUT).await.unwrap_err();
        assert!(
            matches!(
                e,
                ConsensusError::NotLeader {
                    leader_id: Some(2),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(net.sent().len() > 1, "it was not retried");
    }

    #[tokio::test]
    async fn a_write_lost_after_sending_is_indeterminate_and_not_repeated() {
        let net = Net::new(&[Some(2), Some(3)], vec![Wire::Lost, applied()]);
        let e = leader_call(&net, propose(), 0, TIMEOUT).await.unwrap_err();
        assert!(matches!(e, ConsensusError::Indeterminate(_)), "{e:?}");
        assert_eq!(
            net.sent().len(),
            1,
            "a write that may have applied was sent twice"
        );
    }

    #[tokio::test]
    async fn a_read_lost_after_sending_is_asked_again() {
        let net = Net::new(
            &[Some(2), Some(3)],
            vec![Wire::Lost, Wire::Reply(Ok(LeaderReply::ReadIndex(9)))],
        );
        let reply = leader_call(&net, LeaderRequest::ReadIndex, 0, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reply, LeaderReply::ReadIndex(9));
        assert_eq!(net.sent().len(), 2);
    }

    #[tokio::test]
    async fn a_leader_that_stepped_down_sends_the_write_on_to_its_successor() {
        let not_leader = Wire::Reply(Err(ConsensusError::NotLeader {
            leader_id: None,
            leader: None,
        }));
        let net = Net::new(&[Some(2), Some(3)], vec![not_leader, applied()]);
        leader_call(&net, propose(), 0, TIMEOUT).await.unwrap();
        assert_eq!(net.sent(), vec![("n2".into(), 1), ("n3".into(), 1)]);
    }

    #[tokio::test]
    async fn without_a_leader_the_request_waits_for_one_then_serves_here() {
        let net = Net::new(&[None, None, Some(1)], vec![]);
        assert_eq!(
            leader_call(&net, LeaderRequest::ReadIndex, 0, TIMEOUT)
                .await
                .unwrap(),
            LeaderReply::ReadIndex(7)
        );
        assert!(net.sent().is_empty());
        assert_eq!(*net.served_here.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_request_is_passed_on_at_most_twice() {
        // Arriving with two hops already, it is not forwarded again: no_leader at the end.
        let net = Net::new(&[Some(2)], vec![applied()]);
        let e = leader_call(&net, propose(), MAX_HOPS, TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(e, ConsensusError::NotLeader { .. }), "{e:?}");
        assert!(net.sent().is_empty());
    }

    #[tokio::test]
    async fn a_leader_without_a_known_address_is_waited_for() {
        let net = Net::new(&[Some(9), Some(2)], vec![applied()]);
        leader_call(&net, propose(), 0, TIMEOUT).await.unwrap();
        assert_eq!(net.sent(), vec![("n2".into(), 1)]);
    }

    #[tokio::test]
    async fn a_removed_node_refuses_at_once() {
        let mut net = Net::new(&[Some(2)], vec![applied()]);
        net.removed = Some("removed by node 2".into());
        let e = leader_call(&net, propose(), 0, TIMEOUT).await.unwrap_err();
        assert!(
            matches!(e, ConsensusError::Rejected(RejectReason::Removed { .. })),
            "{e:?}"
        );
        assert!(net.sent().is_empty());
    }

    #[tokio::test]
    async fn a_request_in_flight_to_a_replaced_leader_is_given_up_a_heartbeat_later() {
        // Node 2 leads, the request goes to it and no answer comes; then node 3 leads.
        let started = Instant::now();
        let net = Net::new(
            &[Some(2), Some(3)],
            vec![Wire::Silent, Wire::Reply(Ok(LeaderReply::ReadIndex(9)))],
        );
        let read = leader_call(&net, LeaderRequest::ReadIndex, 0, Duration::from_secs(30)).await;
        assert_eq!(
            read,
            Ok(LeaderReply::ReadIndex(9)),
            "a read goes on to the new leader"
        );
        assert_eq!(net.sent(), vec![("n2".into(), 1), ("n3".into(), 1)]);

        let net = Net::new(&[Some(2), Some(3)], vec![Wire::Silent, applied()]);
        let write = leader_call(&net, propose(), 0, Duration::from_secs(30)).await;
        assert!(
            matches!(write, Err(ConsensusError::Indeterminate(ref why)) if why.contains("replaced")),
            "a write may have been appended by the old leader: {write:?}"
        );
        assert_eq!(net.sent().len(), 1, "and is not sent again");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_replaced_leader_that_answers_is_heard_out() {
        // The answer to a write is on its way when the new leader is seen (a handover):
        // within the grace it counts.
        let net = Net::new(
            &[Some(2), Some(3)],
            vec![Wire::Late(
                Duration::from_millis(1),
                Ok(LeaderReply::Outcome(Outcome::Put { revision: 5 })),
            )],
        );
        let write = leader_call(&net, propose(), 0, Duration::from_secs(30)).await;
        assert_eq!(
            write,
            Ok(LeaderReply::Outcome(Outcome::Put { revision: 5 }))
        );
        // A transfer changes the leader by design: its answer is awaited however late.
        let moved = Transferred {
            previous_leader: 2,
            leader_id: 3,
            term: 4,
        };
        let net = Net::new(
            &[Some(2), Some(3)],
            vec![Wire::Late(
                Duration::from_millis(200),
                Ok(LeaderReply::Transferred(moved.clone())),
            )],
        );
        let transfer = LeaderRequest::TransferLeader { to: Some(3) };
        let answer = leader_call(&net, transfer, 0, Duration::from_secs(30)).await;
        assert_eq!(answer, Ok(LeaderReply::Transferred(moved)));
    }

    #[tokio::test]
    async fn a_leader_elsewhere_without_quorum_is_asked_again_until_another_leads() {
        let no_quorum = || {
            Wire::Reply(Err(ConsensusError::NoQuorum {
                leader_id: 2,
                silent_ms: Some(700),
            }))
        };
        // Node 2 has lost its quorum; node 3 is elected meanwhile and takes the write.
        let net = Net::new(&[Some(2), Some(3)], vec![no_quorum(), applied()]);
        let write = leader_call(&net, propose(), 0, Duration::from_secs(30)).await;
        assert_eq!(
            write,
            Ok(LeaderReply::Outcome(Outcome::Put { revision: 5 }))
        );
        // No other leader comes: at the deadline the answer is node 2's "no quorum".
        let net = Net::new(&[Some(2)], (0..1_000).map(|_| no_quorum()).collect());
        let write = leader_call(&net, propose(), 0, Duration::from_millis(30)).await;
        assert!(
            matches!(write, Err(ConsensusError::NoQuorum { leader_id: 2, .. })),
            "{write:?}"
        );
    }
}
