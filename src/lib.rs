//! Switchyard: a live-media gateway. See ARCHITECTURE.md for the layout.

pub mod bus;
