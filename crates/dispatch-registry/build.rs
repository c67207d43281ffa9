//! Rebuilds the crate when a migration is added, removed or edited, so that
//! `sqlx::migrate!` always embeds the current set.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
