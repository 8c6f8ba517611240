//! The doorbell moment, bridge side (issue 16): the ring's picture, its clip and the ring history.
//! `snapshot` picks and encodes the first decodable frame, `clip` writes H.264 + AAC as MP4,
//! `history` names, lists and prunes what rings leave on disk, and `recorder` runs them for each
//! ring without ever blocking the hub. Which frames a ring has is the hub's business (phase 2).

pub mod clip;
pub mod history;
pub mod recorder;
pub mod snapshot;

pub use history::{RingId, RingOutcome, RingRecord};
pub use recorder::{RecorderEvent, RecorderSettings, RingFeed, RingRecorder, RingStart};
