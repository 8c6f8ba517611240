//! RTP/RTCP packet helpers (RFC 3550, RFC 4585).
