//! `appctl up/status/credentials/rollback/down/load`: the platform on a laptop.
