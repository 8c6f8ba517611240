//! The only door to the C300X: SIP signalling (`sip`, the one place rsipstack is used) and the
//! per-call media sockets (`media`). Everything else in the bridge talks to these handles.

pub mod media;
pub mod sip;
