//! asl-fs (being built).
