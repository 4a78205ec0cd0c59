//! Tools of the subhost part (not built yet).

use super::Tool;

pub const TOOLS: &[Tool] = &[];
