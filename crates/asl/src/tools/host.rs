//! Tools of the host part (not built yet).

use super::Tool;

pub const TOOLS: &[Tool] = &[];
