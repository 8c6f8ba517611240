//! The simulator's SIP side: flexisip's registrar/proxy and the unit's user agent in one.
//! `transport` reads the sockets, `core` owns the state; `view` and `ring` are the two call kinds.

mod auth;
pub(crate) mod core;
pub mod message;
pub mod ring;
pub mod transport;
pub(crate) mod view;
