//! asl-store (being built).
