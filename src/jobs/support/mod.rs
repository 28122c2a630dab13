//! What several jobs share: recorded runs and resumable pages.

pub mod paging;
pub mod render;
pub mod runs;
pub mod workflow;
