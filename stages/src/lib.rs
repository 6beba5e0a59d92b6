//! SOMA stage kinds.
