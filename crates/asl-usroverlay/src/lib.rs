//! asl-usroverlay (being built).
