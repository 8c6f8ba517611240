//! H.264 over RTP (RFC 6184).
