//! Deployment: the systemd unit, the nginx site and deploy.sh, tested for real.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod nginx;
mod script;
mod support;
mod systemd;
