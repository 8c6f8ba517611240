//! A C300X simulator: flexisip (registrar/proxy) plus the unit's answering side, following
//! c300x-protocol.md including its quirks. Used by the tests, the benchmarks and `demo`.

pub mod media;
pub mod stats;
