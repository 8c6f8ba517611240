//! c300x-bridge: a BTicino Classe 300X (C300X) video intercom as Home Assistant entities.
//! The map of the crate lives in ARCHITECTURE.md; this file only declares the modules.

pub mod app;
pub mod config;
pub mod doorbell;
#[doc(hidden)]
pub mod fuzz;
pub mod homeassistant;
pub mod intercom;
pub mod media;
pub mod mqtt;
pub mod proto;
pub mod servers;
pub mod sim;
