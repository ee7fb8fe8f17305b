//! The cluster topology built from real local processes, for tests and for people to explore.
