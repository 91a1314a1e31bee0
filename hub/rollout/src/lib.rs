//! Gray-release rollout controller (see the crate description).
