//! The doorbell moment, bridge side (issue 16): `bell` follows each ring through the bridge
//! (its panel, the hub's preview, answer / hang up / reject, how it ended) and announces it;
//! `rules` holds its pure judgements; `snapshot` picks and encodes the first decodable frame,
//! `clip` writes H.264 + AAC as MP4, `history` names, lists and prunes what rings leave on disk,
//! and `recorder` runs them for each ring without ever blocking the hub. Which frames a ring
//! has is the hub's business (its ring preview, `media::hub`).

pub mod bell;
pub mod clip;
pub mod history;
pub mod recorder;
pub mod rules;
pub mod snapshot;

pub use bell::{Doorbell, DoorbellError, DoorbellEvent, DoorbellSettings, RingInfo};
pub use history::{RingId, RingOutcome, RingRecord};
pub use recorder::{RecorderEvent, RecorderSettings, RingFeed, RingRecorder, RingStart};
