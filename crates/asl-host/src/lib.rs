//! asl-host (being built).
