//! RTSP pull input (being written).
