//! Rebuild when a migration is added: `sqlx::migrate!` only tracks the files
//! that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
