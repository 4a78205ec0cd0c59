//! asl-subhost (being built).
