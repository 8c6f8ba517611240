//! Media processing between the intercom and the servers: transcoding (FFmpeg, in-process).
//! No sockets and no protocol framing here (that is `proto/`).

pub mod hub;
pub mod jpeg;
pub mod talk;
pub mod transcode;

use std::sync::Once;

use ffmpeg_next as ffmpeg;

/// Initialises FFmpeg once per process and keeps its own logging to errors; safe to call often.
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg::init() {
            tracing::warn!(error = %e, "ffmpeg init");
        }
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    });
}
