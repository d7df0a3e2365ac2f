//! Demo origin (being written).
