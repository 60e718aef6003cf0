//! Cluster mode: every node finds any stream of the cluster through a directory kept in
//! Redis, pulls it from its owner over WebRTC when a viewer asks, and sends viewers to nodes
//! with room when it is full.
//!
//! - [`directory`]: what is stored in Redis and the commands that change it (leases with
//!   `SET NX PX`, compare-and-renew and compare-and-delete scripts, pub/sub events).
//! - [`node`]: this node's part: registering local publishers, renewing leases, publishing its
//!   load, following the other nodes' events, origin lookups for pulls, viewer steering.

pub mod directory;
pub mod node;

pub use directory::{NodeLoad, StreamEntry};
pub use node::{Cluster, ClusterView, NodeView, Steering, StreamView};
