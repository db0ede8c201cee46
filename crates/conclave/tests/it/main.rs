//! Integration tests: the real `conclave` binary, real sockets, real disk.
//! One test binary (see ARCHITECTURE.md, "Testing"); modules by area.

mod support;

mod acl;
mod api;
mod audit;
mod bad_input;
mod cli;
mod cluster;
mod compose;
mod config;
mod config_seed;
mod configmap;
mod dashboard;
mod dashboard_api;
mod durability;
mod elections;
mod fake_kube;
mod fixes;
mod gossip;
mod gossip_keys;
mod handover;
mod image;
mod ipam;
mod kubernetes;
mod leaks;
mod member_events;
mod metrics;
mod names;
mod openapi;
mod recovery;
mod reload;
mod request_id;
mod role_overlap;
mod roles;
mod seams;
mod shell;
mod telemetry;
mod tls;
mod trust;
mod watch;
