//! Tools of the usroverlay part (not built yet).

use super::Tool;

pub const TOOLS: &[Tool] = &[];
