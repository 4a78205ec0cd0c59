//! Stores in an S3 bucket: a SigV4 client ([`client`]), the store's storage seam on it
//! ([`S3Storage`]), and the writer lease that keeps two servers from writing one store at
//! once ([`lease`]), and a cache of sealed blocks' pages ([`pages`]).

pub mod client;
pub mod lease;
pub mod pages;
pub mod sigv4;
pub mod storage;

pub use client::Endpoint;
pub use lease::LeaseParams;
pub use sigv4::Credentials;
pub use storage::{S3Location, S3Storage};
