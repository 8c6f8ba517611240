//! The simulator's SIP side: flexisip's registrar/proxy and the unit's user agent in one.
//! `transport` reads the sockets, `core` owns the state; `view` and `ring` are the two call kinds
//! (`early` handles the responses to a ring, early media included); `own` the OWN frames the
//! unit executes from a MESSAGE.

mod auth;
pub(crate) mod core;
mod early;
pub mod message;
mod own;
pub mod ring;
pub mod transport;
pub(crate) mod view;
