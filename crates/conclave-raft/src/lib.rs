//! conclave's Raft node: openraft wired to conclave's storage and transport.
//!
//! Why this crate exists: it turns "a replicated log" into the two operations the API needs,
//! each with the right guarantees:
//! - [`RaftNode::propose`]: a command is applied exactly once, in log order, after it is
//!   durable on a quorum. Concurrent proposals are grouped by the [`batcher`] into one log
//!   entry, so they share one append and one fsync (group commit).
//! - [`RaftNode::read_barrier`]: after it returns, the local state reflects every write
//!   acknowledged before the call started (linearizable reads). Concurrent callers share one
//!   leadership confirmation (the [`read_barrier`] coalescer).
//!
//! Architecture invariant: this crate knows nothing about HTTP or gossip.

// openraft's trait signatures fix the error type (StorageError, RaftError); boxing it
// would only add conversions at every call.
#![allow(clippy::result_large_err)]

mod admission;
pub mod batcher;
mod cluster;
mod error;
mod failover;
pub mod formation;
mod forward;
pub mod fuzzing;
mod leadership;
mod leases;
mod maintain;
mod naming;
pub mod network;
mod notes;
mod policy;
pub mod preview;
mod quorum;
mod reachability;
pub mod read_barrier;
mod refusals;
pub mod rpc;
mod server;
pub mod transport;
mod tuning;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use conclave_state::{Command, Outcome};
use conclave_storage::{
    LogStats, LogStore, NodeId, NodeInfo, StateHandle, StateMachineStore, TypeConfig,
};
use conclave_types::Secret;
use openraft::error::{InitializeError, RaftError};
use openraft::{Raft, RaftMetrics};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use batcher::BatchStats;
pub use error::{ConsensusError, RejectReason, StartError, VoterExit};
pub(crate) use error::{map_check_leader_error, map_write_error};
pub use formation::AdoptError;
pub use transport::{Credentials, Timings};
pub use tuning::RaftTuning;

use crate::network::Peers;
use crate::rpc::{LeaderReply, LeaderRequest, NodeReport};
use crate::transport::Pool;

/// What a node checks in a command a peer forwarded, before it proposes (or forwards) it:
/// the rules the node where the command entered applied (sizes, reserved keys, names,
/// document validation), so that a peer speaking node RPC directly gets no further than a
/// client of the HTTP API. Commands only a leader proposes itself are refused before this.
/// The agent sets it (`conclave-coord` implements it); without one, only that is checked.
pub trait ProposalGate: Send + Sync {
    fn admit(&self, command: &Command) -> Result<(), RejectReason>;
}

/// Everything [`RaftNode::start`] needs besides the stores and the listener.
#[derive(Clone)]
pub struct NodeOptions {
    pub node_id: NodeId,
    /// None for a node that will join a cluster and adopt its id.
    pub cluster_id: Option<String>,
    /// The join secret; required on every node RPC connection when set.
    pub cluster_token: Option<Secret>,
    pub tuning: RaftTuning,
    /// Where the identity file lives (a joining node records its cluster there).
    pub data_dir: PathBuf,
    /// How this node is reached, as recorded in the membership.
    pub info: NodeInfo,
    /// Its readable name (`--node-name`), recorded in the replicated state.
    pub name: String,
    /// `name` was configured rather than made from the hostname (see `naming`).
    pub name_given: bool,
    /// `--cluster-name`: a joiner configured with another is refused.
    pub cluster_name: Option<String>,
    /// Voters the leader promotes learners towards.
    pub voters_wanted: usize,
    /// Set while waiting to form a cluster with `--bootstrap-expect`.
    pub bootstrap_expect: Option<u32>,
    pub proposal_gate: Option<Arc<dyn ProposalGate>>,
}

/// A running Raft member: consensus, local state, the RPC server and request forwarding.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft<TypeConfig>,
    state: StateHandle,
    proposals: batcher::Batcher,
    reads: read_barrier::ReadBarrier,
    log_stats: Arc<LogStats>,
    log: LogStore,
    creds: Arc<Credentials>,
    pool: Pool,
    peers: Arc<Peers>,
    tuning: RaftTuning,
    data_dir: PathBuf,
    info: RwLock<NodeInfo>,
    name: String,
    name_given: bool,
    cluster_name: Option<String>,
    voters_wanted: usize,
    bootstrap_expect: Option<u32>,
    removed: watch::Sender<Option<String>>,
    lag: cluster::LagTracker,
    /// Set from the start of a planned stop ([`RaftNode::step_down`]) on: this node takes no
    /// new proposals, as leader or as a hop (they wait for the next leader, as during an
    /// election), so none is cut off by the handover or by the stop that follows.
    stepping_down: std::sync::atomic::AtomicBool,
    /// Raised while this leader hands leadership over: new proposals wait for the next
    /// leader (they are not refused for good: if the handover fails, they come back here).
    handing_over: std::sync::atomic::AtomicBool,
    /// The term this node leads in, when it was first seen leading it (checked once a
    /// heartbeat, on every read index, quorum check and handover, so late by up to one
    /// heartbeat), and its last log index then (see [`leadership::Leading`]).
    leading_since: std::sync::Mutex<Option<leadership::Leading>>,
    /// Held for each membership change: openraft takes one at a time.
    membership_changes: tokio::sync::Mutex<()>,
    /// When this node last received an append (or heartbeat) from a leader, as milliseconds
    /// since `started`.
    leader_contact_ms: AtomicU64,
    /// [`RaftNode::quorum_lost`]'s last answer and when it was worked out (see `quorum`).
    quorum: quorum::Cached,
    started: Instant,
    /// Node-RPC messages refused (counted; logged once a minute per peer and kind).
    refusals: refusals::Refusals,
    proposal_gate: Option<Arc<dyn ProposalGate>>,
}

impl RaftNode {
    /// Start Raft over already opened stores, serve node RPC on `rpc_listener`, and run the
    /// background duties (address book, promotions, announcing a new address).
    pub async fn start(
        options: NodeOptions,
        log: LogStore,
        sm: StateMachineStore,
        rpc_listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let config = Arc::new(options.tuning.openraft_config()?);
        let creds = Arc::new(Credentials::new(
            options.node_id,
            options.cluster_id.clone(),
            options.cluster_token.as_ref().map(Secret::expose),
            options.tuning.timings(),
        ));
        let peers = Arc::new(Peers::default());
        let network = network::NetworkFactory {
            creds: creds.clone(),
            peers: peers.clone(),
            min_append_timeout: Duration::from_millis(options.tuning.election_timeout_max_ms),
        };
        let state = sm.handle();
        let log_stats = log.stats();
        let log_handle = log.clone();
        let raft = Raft::new(options.node_id, config, network, log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let proposals = batcher::Batcher::spawn(
            raft.clone(),
            state.clone(),
            options.tuning.max_batch_commands,
        );
        let id = options.node_id;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            // Each read round asks the leader (this node or another) for a read index.
            let reads = read_barrier::ReadBarrier::spawn(Box::new(move || {
                let weak = weak.clone();
                Box::pin(async move {
                    let Some(inner) = weak.upgrade() else {
                        return Err(ConsensusError::Unavailable(
                            "the node is shutting down".into(),
                        ));
                    };
                    match (RaftNode { id, inner })
                        .leader_call(LeaderRequest::ReadIndex, 0)
                        .await?
                    {
                        LeaderReply::ReadIndex(i) => Ok(i),
                        other => Err(unexpected_reply(&other)),
                    }
                })
            }));
            Inner {
                raft,
                state,
                proposals,
                reads,
                log_stats,
                log: log_handle,
                pool: Pool::new(creds.clone()),
                creds,
                peers,
                tuning: options.tuning,
                data_dir: options.data_dir,
                info: RwLock::new(options.info),
                name: options.name,
                name_given: options.name_given,
                cluster_name: options.cluster_name,
                voters_wanted: options.voters_wanted.max(1),
                bootstrap_expect: options.bootstrap_expect,
                proposal_gate: options.proposal_gate.clone(),
                removed: watch::channel(None).0,
                lag: cluster::LagTracker::default(),
                membership_changes: tokio::sync::Mutex::new(()),
                leader_contact_ms: AtomicU64::new(0),
                quorum: quorum::Cached::default(),
                stepping_down: std::sync::atomic::AtomicBool::new(false),
                handing_over: std::sync::atomic::AtomicBool::new(false),
                leading_since: std::sync::Mutex::new(None),
                started: Instant::now(),
                refusals: Default::default(),
            }
        });
        let node = RaftNode { id, inner };
        tokio::spawn(server::serve(rpc_listener, node.clone(), shutdown.clone()));
        tokio::spawn(failover::watch_leader(node.clone(), shutdown.clone()));
        tokio::spawn(leases::expire_leases(node.clone(), shutdown.clone()));
        tokio::spawn(notes::note_leadership(node.clone(), shutdown.clone()));
        tokio::spawn(maintain::maintain(node.clone(), shutdown));
        Ok(node)
    }

    /// Whether this node holds a membership (it formed or joined a cluster).
    pub async fn is_initialized(&self) -> bool {
        self.inner.raft.is_initialized().await.unwrap_or(false)
    }

    /// Form a cluster of exactly `members`, unless this node already belongs to one (then
    /// nothing happens). Every initial member may call this with the same map.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<(), StartError> {
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Raft(e.to_string())),
        }
    }

    /// Make this node the single voter of a new cluster (no-op on a restart).
    pub async fn initialize_single(&self) -> Result<(), StartError> {
        let me = self.info();
        self.initialize(BTreeMap::from([(self.id, me)])).await
    }

    /// Replicate and apply `command` (on the leader, wherever that is); returns its outcome
    /// once durable on a quorum.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ConsensusError> {
        match self.leader_call(LeaderRequest::Propose(command), 0).await? {
            LeaderReply::Outcome(Outcome::Refused { refusal, .. }) => {
                Err(RejectReason::Refused { refusal }.into())
            }
            LeaderReply::Outcome(o) => Ok(o),
            other => Err(unexpected_reply(&other)),
        }
    }

    /// Wait until the local state is at least as new as every write acknowledged before now.
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        let index = self.reads().read_index().await?;
        self.wait_applied(index).await
    }

    fn reads(&self) -> &read_barrier::ReadBarrier {
        &self.inner.reads
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ConsensusError> {
        let mut rx = self.inner.state.applied_index();
        let deadline = Instant::now() + self.request_timeout();
        loop {
            if *rx.borrow_and_update() >= index {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ConsensusError::Unavailable(
                        "the node is shutting down".into(),
                    ));
                }
                Err(_) => {
                    return Err(ConsensusError::Unavailable(format!(
                        "this node has not applied index {index} within {:?}; it is catching up",
                        self.request_timeout()
                    )));
                }
            }
        }
    }

    /// How long a request may wait for a leader (elections included) before failing.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.tuning.election_timeout_max_ms * 4)
    }

    /// Run `req` on the leader: here if this node leads, else forwarded to it. Waits out
    /// elections (up to [`Self::request_timeout`]) and retries whenever the request certainly
    /// did not take effect; an ambiguous failure is reported as `Indeterminate` (the rules
    /// are [`forward`]'s).
    pub(crate) async fn leader_call(
        &self,
        req: LeaderRequest,
        hops: u8,
    ) -> Result<LeaderReply, ConsensusError> {
        forward::leader_call(self, req, hops, self.request_timeout()).await
    }

    /// A request from another node: serve it if this node leads, else forward it once more.
    pub(crate) async fn serve_peer_request(
        &self,
        from: NodeId,
        req: LeaderRequest,
        hops: u8,
    ) -> Result<LeaderReply, ConsensusError> {
        if matches!(req, LeaderRequest::ReadIndex) {
            // Coalesce the followers' read-index requests into this node's rounds.
            return self.reads().read_index().await.map(LeaderReply::ReadIndex);
        }
        if let LeaderRequest::Propose(command) = &req {
            // Stopping: forwarded on from here, it could be cut off by the stop.
            self.refuse_if_stopping()?;
            self.admit_forwarded(from, command)?;
        }
        self.leader_call(req, hops).await
    }

    /// A peer's proposal passes only what the HTTP entry point would have let through.
    fn admit_forwarded(&self, from: NodeId, command: &Command) -> Result<(), ConsensusError> {
        let checked = if command.is_leader_only() {
            Err(RejectReason::Inadmissible {
                reason: "only the leader stamps its clock, expires leases and names nodes".into(),
            })
        } else {
            match &self.inner.proposal_gate {
                Some(gate) => gate.admit(command),
                None => Ok(()),
            }
        };
        checked.map_err(|reason| {
            self.inner.refusals.record(from, "propose", &reason);
            reason.into()
        })
    }

    /// A proposal arriving at a node that is stopping ([`RaftNode::step_down`]) or handing
    /// leadership over is refused before anything was done with it: the caller waits for
    /// the next leader and sends it there, as during an election.
    fn refuse_if_stopping(&self) -> Result<(), ConsensusError> {
        if self.inner.stepping_down.load(Ordering::SeqCst)
            || self.inner.handing_over.load(Ordering::SeqCst)
        {
            return Err(ConsensusError::NotLeader {
                leader_id: None,
                leader: None,
            });
        }
        Ok(())
    }

    /// Serve a leader request on this node, which believes it leads. A leader cut off from
    /// its quorum takes nothing new and ends what it was waiting on (see [`Self::quorum_lost`]):
    /// a write or membership change that may have been appended as indeterminate, a read
    /// index as `NoQuorum` (a read changes nothing, so it is safe to retry elsewhere).
    async fn serve_leader(&self, req: LeaderRequest) -> Result<LeaderReply, ConsensusError> {
        if !matches!(req, LeaderRequest::Status) {
            self.refuse_without_quorum()?;
        }
        match req {
            LeaderRequest::Propose(cmd) => {
                // Counted before the check: see `step_down`.
                let _in_flight = self.inner.proposals.enter();
                self.refuse_if_stopping()?;
                let proposal = self.inner.proposals.propose(cmd);
                self.until_quorum_lost(proposal, |silent| {
                    quorum::lost_in_flight("the write", "it may have been appended", silent)
                })
                .await
                .map(LeaderReply::Outcome)
            }
            LeaderRequest::ReadIndex => {
                let check = async {
                    self.inner
                        .raft
                        .get_read_log_id()
                        .await
                        .map_err(map_check_leader_error)
                };
                let (read_log_id, _) = self
                    .until_quorum_lost(check, |silent| self.no_quorum(silent))
                    .await?;
                let floor = self
                    .note_leadership(&self.inner.raft.metrics().borrow())
                    .map_or(0, |l| l.log_floor);
                Ok(LeaderReply::ReadIndex(
                    read_log_id.map_or(0, |l| l.index).max(floor),
                ))
            }
            // A transfer stops this node's heartbeats on purpose, so its quorum goes silent
            // while it runs; it has its own deadline.
            LeaderRequest::Status | LeaderRequest::TransferLeader { .. } => {
                self.serve_membership(req).await
            }
            other => {
                let change = self.serve_membership(other);
                self.until_quorum_lost(change, |silent| {
                    quorum::lost_in_flight(
                        "the membership change",
                        "see `conclave status` once a leader is back",
                        silent,
                    )
                })
                .await
            }
        }
    }

    pub fn state(&self) -> &StateHandle {
        &self.inner.state
    }

    /// Note that a leader's append (or heartbeat) arrived.
    pub(crate) fn heard_from_leader(&self) {
        let now = self.inner.started.elapsed().as_millis() as u64;
        self.inner
            .leader_contact_ms
            .fetch_max(now, Ordering::Relaxed);
    }

    /// Whether a leader's append arrived within `window` (counting from start-up).
    pub(crate) fn leader_heard_within(&self, window: Duration) -> bool {
        let last = Duration::from_millis(self.inner.leader_contact_ms.load(Ordering::Relaxed));
        self.inner.started.elapsed().saturating_sub(last) < window
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, NodeInfo> {
        self.inner.raft.metrics().borrow().clone()
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    pub fn credentials(&self) -> &Credentials {
        &self.inner.creds
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.inner.creds.cluster_id()
    }

    /// How this node is reached, as it announces itself.
    pub fn info(&self) -> NodeInfo {
        self.inner
            .info
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `id` is in this node's effective membership (voter or learner).
    pub(crate) fn is_member(&self, id: NodeId) -> bool {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }

    /// Node-RPC messages this node refused since it started (strangers, impersonation,
    /// absurd terms, unverified removals, commands a peer may not propose).
    pub fn refused_messages(&self) -> u64 {
        self.inner.refusals.total()
    }

    pub fn log_stats(&self) -> &LogStats {
        &self.inner.log_stats
    }

    pub fn batch_stats(&self) -> &BatchStats {
        self.inner.proposals.stats()
    }

    /// The highest log index known to be committed.
    pub fn committed_index(&self) -> Option<u64> {
        self.inner.log.committed_index()
    }

    /// First and last log index held on disk.
    pub fn log_bounds(&self) -> (u64, Option<u64>) {
        self.inner.log.first_and_last_index()
    }

    /// Resolves when this node can no longer serve as a member: it was removed (confirmed by
    /// the members), or Raft stopped on a fatal error (storage failed, e.g. a full disk).
    /// The agent then leaves gossip and exits non-zero, so a supervisor restarts or alerts
    /// instead of keeping a process that advertises itself alive.
    pub async fn fatal(&self) -> String {
        let mut removed = self.inner.removed.subscribe();
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Some(why) = removed.borrow_and_update().clone() {
                return why;
            }
            if let Err(e) = &metrics.borrow_and_update().running_state {
                return format!("Raft stopped on a fatal error: {e}");
            }
            tokio::select! {
                r = removed.changed() => if r.is_err() {
                    return "Raft stopped".into();
                },
                r = metrics.changed() => if r.is_err() {
                    return "Raft stopped".into();
                },
            }
        }
    }

    /// Why this node is no longer a member, once it has been removed.
    pub fn removed(&self) -> Option<String> {
        self.inner.removed.borrow().clone()
    }

    fn peer_addr(&self, id: NodeId) -> Option<String> {
        self.inner.peers.addr(id).or_else(|| {
            self.metrics()
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.rpc_addr.clone())
                .filter(|a| !a.is_empty())
        })
    }

    /// What this node knows, for [`RpcRequest::Info`].
    pub fn report(&self) -> NodeReport {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        NodeReport {
            node_id: self.id,
            cluster_id: self.cluster_id(),
            cluster_name: self.cluster_name().map(str::to_owned),
            initialized: membership.nodes().next().is_some(),
            bootstrap_expect: self.inner.bootstrap_expect,
            info: self.info(),
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            members: membership
                .nodes()
                .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
                .collect(),
        }
    }

    /// Stop Raft (replication, elections, the state machine worker).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
    }
}

fn unexpected_reply(reply: &LeaderReply) -> ConsensusError {
    ConsensusError::Unavailable(format!("unexpected reply from the leader: {reply:?}"))
}
