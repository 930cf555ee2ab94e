//! # scimgate
//!
//! The service: the SCIM API an identity provider talks to, the management API the app talks
//! to, and the operations endpoints, over a [`scimgate_store::Store`].

pub mod app;
pub mod cli;
pub mod config;
pub mod events;
pub mod management;
pub mod mapping_worker;
pub mod ops;
pub mod request_log;
pub mod retention;
pub mod scim;
pub mod secrets;
pub mod setup;
pub mod webhooks;

/// The README's Rust snippets, compiled and run as doctests so they stay correct.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeSnippets;
