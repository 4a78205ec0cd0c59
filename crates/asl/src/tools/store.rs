//! Tools of the store part (not built yet).

use super::Tool;

pub const TOOLS: &[Tool] = &[];
